"""Choices of the order domain."""

from django.db import models


class OrderState(models.TextChoices):
    NEW = "new"
    CONFIRMED = "confirmed"
    ON_HOLD = "on_hold"
    EXPORTED = "exported"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
