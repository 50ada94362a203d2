"""django-q2 tasks of the synced entities: thin adapters that call a service and return a summary."""

from syncapp.record_events import record_events_task


def record_events(ticket: str | None = None) -> str:
    """Apply the single-record updates that are due (the every-minute schedule, and after each POST)."""
    return record_events_task(ticket=ticket)
