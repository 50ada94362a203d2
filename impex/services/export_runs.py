"""Scheduled exports of export groups: runs, the watermark, and the files sent (written by the export helper)."""

from collections.abc import Iterator


def export_schedules_wanted() -> Iterator:
    """Yield the schedules of the export groups that have one (none until scheduled exports exist)."""
    return iter(())
