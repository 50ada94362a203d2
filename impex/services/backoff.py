"""The one back-off of everything the hub tries again: exporters, single-record updates, outbound webhooks."""

from datetime import timedelta

MAX_BACKOFF_MINUTES = 60


def backoff(attempt: int) -> timedelta:
    """Return how long to wait after the attempt-th failure: 1, 2, 4, 8 ... minutes, at most an hour."""
    return timedelta(minutes=min(2 ** (max(attempt, 1) - 1), MAX_BACKOFF_MINUTES))
