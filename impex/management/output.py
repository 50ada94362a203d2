"""Shared output of the impex commands: every command can end with one JSON line."""

import json
import sys

from django.template.defaultfilters import pluralize

from impex.choices import FileStatus, JobStatus

COUNTS = ("created", "updated", "unchanged", "retired", "failed")


def print_json(command, payload: dict) -> None:
    """Print one JSON object as the last line of output."""
    command.stdout.write(json.dumps(payload, default=str, ensure_ascii=False))


def report_files(command, files: list[dict], *, messages: dict[str, str] | None = None) -> None:
    """Print what each file of a job did, with its first errors and why it waits."""
    messages = messages or {}
    for f in files:
        counts = ", ".join(f"{f[k]} {k}" for k in COUNTS)
        reason = f": {messages[f['name']]}" if f["status"] == FileStatus.WAITING and messages.get(f["name"]) else ""
        command.stdout.write(f"{f['name']}: {f['status']}{reason} ({f['descriptor'] or '-'}): {counts}")
        for e in f["errors"][:10]:
            where = f"row {e['row']}" if e["row"] is not None else "file"
            column = f", column {e['column']}" if e["column"] else ""
            command.stdout.write(f"  {where}{column}: {e['message']}")
        if len(f["errors"]) > 10:
            command.stdout.write(
                f"  ... {f['failed']} row{pluralize(f['failed'])} refused in all (see the job in the admin)"
            )


def job_succeeded(job, files: list[dict]) -> bool:
    """Tell whether a job's command exits 0: every file imported (row errors or not) or a duplicate."""
    return job.status not in (JobStatus.ERRORED, JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.CANCELLED) and all(
        f["status"] in (FileStatus.IMPORTED, FileStatus.DUPLICATE) for f in files
    )


def exit_with(ok: bool) -> None:
    """End the command with status 1 when it did not succeed (SPEC section 9)."""
    if not ok:
        sys.stdout.flush()
        sys.exit(1)
