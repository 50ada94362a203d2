"""What impex_purge deletes of syncapp's history (registered with impex.registry.purger_register)."""

from datetime import datetime

from impex.services.purge import delete_in_batches
from syncapp.choices import RecordEventStatus
from syncapp.models import RecordEvent


def record_events_purge(*, before: datetime, dry_run: bool, batch: int) -> int:
    """Delete (dry_run: count) the single-record updates applied before then; failed and pending ones stay."""
    done = RecordEvent.objects.filter(
        status__in=[RecordEventStatus.APPLIED, RecordEventStatus.UNCHANGED], applied_at__lt=before
    )
    return done.count() if dry_run else delete_in_batches(done, batch=batch)
