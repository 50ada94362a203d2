"""Outbound webhooks: the subscriptions, each event's delivery to a subscriber, and each attempt of it."""

import uuid

from django.db import models
from django.utils import timezone

from impex.choices import (
    DeliveryStatus,
    WebhookEvent,
)
from impex.models.work import LeasedWork


class WebhookSubscription(models.Model):
    """An outbound webhook: which events go to which URL, signed with which secret (SPEC section 10)."""

    # SPEC 13: set with impex.change_locations only (config.adminkit.LocationFieldsAdminMixin).
    LOCATION_FIELDS = ("url",)

    code = models.SlugField(max_length=100, unique=True)
    url = models.URLField(
        max_length=2000,
        help_text="Where events are POSTed (http:// or https://): a public address, unless the host is listed in "
        "IMPEX_ALLOWED_HOSTS_OUTBOUND.",
    )
    events = models.JSONField(default=list, help_text="customer.created, customer.updated, file.imported.")
    secret = models.CharField(
        max_length=200, blank=True, default="", help_text="The key of the X-Signature HMAC-SHA256 of each body."
    )
    enabled = models.BooleanField(default=True)
    timeout_seconds = models.PositiveIntegerField(default=10, help_text="Give up waiting for an answer after this.")
    max_attempts = models.PositiveIntegerField(
        default=10, help_text="Tries before a delivery shows as failed (back-off 1, 2, 4 ... minutes, at most 60)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        verbose_name = "webhook subscription"

    def __str__(self):
        return self.code


class WebhookDelivery(LeasedWork):
    """One event on its way to one subscriber: the body is fixed when the event happens, then sent until it lands."""

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40, choices=WebhookEvent.choices)
    # Sent as X-Event-Id, the same on every attempt, so a receiver can drop repeats.
    event_id = models.UUIDField(default=uuid.uuid4, editable=False)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhookdelivery_due")]

    def __str__(self):
        return f"{self.event} → {self.subscription_id} ({self.event_id})"


class WebhookAttempt(models.Model):
    """One POST of a delivery and what came back."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField(default=timezone.now)
    worker = models.CharField(max_length=200, blank=True, default="")
    ok = models.BooleanField(default=False)
    http_status = models.PositiveIntegerField(null=True, blank=True)
    response = models.TextField(
        blank=True, default="", help_text="The start of the receiver's answer (for who may change the subscription)."
    )
    message = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self):
        return f"{self.delivery_id} #{self.number}"
