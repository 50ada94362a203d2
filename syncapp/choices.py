"""Choices of the synced entities."""

from django.db import models


class SpecialOrderType(models.TextChoices):
    REPAIR = "REPAIR"
    CUSTOM = "CUSTOM"


class SpecialOrderStatus(models.TextChoices):
    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    READY = "READY"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class SpecialOrderEventType(models.TextChoices):
    CREATED = "CREATED"
    SENT_TO_WORKSHOP = "SENT_TO_WORKSHOP"
    RECEIVED_FROM_WORKSHOP = "RECEIVED_FROM_WORKSHOP"
    READY_FOR_PICKUP = "READY_FOR_PICKUP"
    PICKED_UP = "PICKED_UP"
    CANCELLED = "CANCELLED"
    NOTE = "NOTE"


class ProductStatus(models.TextChoices):
    LIVE = "live"
    DISCONTINUED = "discontinued"


class RecordEventStatus(models.TextChoices):
    """Where a single-record update sent over HTTP is (SPEC section 10, POST /api/events/...)."""

    PENDING = "pending"
    RUNNING = "running"
    APPLIED = "applied"
    UNCHANGED = "unchanged", "Applied, nothing changed"
    FAILED = "failed"


# An event in one of these is finished: the next event of its record may go.
RECORD_EVENT_FINISHED = (RecordEventStatus.APPLIED, RecordEventStatus.UNCHANGED, RecordEventStatus.FAILED)
