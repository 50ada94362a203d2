"""django-q2 tasks of the synced entities: thin adapters that call a service and return a summary."""


def record_events() -> str:
    """Apply the single-record updates that are due (the every-minute schedule, and after each POST)."""
    from syncapp.record_events import record_events_pass

    reports = record_events_pass(by="task: record_events")
    return f"{len(reports)} single-record update(s)"
