"""Outbound webhooks in the admin: subscriptions (where events go), and each delivery with its attempts."""

from django import forms
from django.contrib import admin, messages
from django.template.defaultfilters import pluralize

from config.adminkit import (
    AuditRecordAdmin,
    LocationFieldsAdminMixin,
    ReadOnlyInline,
    WriteOnlySecretAdminMixin,
    WriteOnlySecretForm,
    changelist_link,
    https_formfield,
)
from impex.choices import (
    DeliveryStatus,
    WebhookEvent,
)
from impex.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from impex.services.webhooks import subscription_problems, webhook_retry

# A receiver's answer may tell about the system behind it: shown to who may change where the webhook goes.
ANSWERS_PERMISSION = "impex.change_webhooksubscription"


class WebhookSubscriptionForm(WriteOnlySecretForm):
    """A subscription's events as boxes to tick, its secret write-only, and the same checks as impex_webhook."""

    url = forms.URLField(
        max_length=2000, assume_scheme="https", help_text="Where events are POSTed (http:// or https://)."
    )
    events = forms.MultipleChoiceField(
        choices=WebhookEvent.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="A file of many customers sends one event per batch of ids, not one per customer.",
    )

    class Meta:
        model = WebhookSubscription
        fields = ("code", "url", "events", "secret", "enabled", "timeout_seconds", "max_attempts")
        formfield_callback = https_formfield

    def clean(self):
        cleaned = super().clean()
        saved = self.instance.url if self.instance.pk else None
        # A URL the user sees read-only is the saved one (impex.change_locations).
        url = (cleaned.get("url") or "") if "url" in self.fields else self.instance.url
        for field, message in subscription_problems(
            url=url,
            events=cleaned.get("events") or [],
            timeout_seconds=cleaned.get("timeout_seconds") or 0,
            max_attempts=cleaned.get("max_attempts") or 0,
            saved_url=saved,
        ):
            if field not in self.errors:
                self.add_problem(field, message)
        return cleaned


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(LocationFieldsAdminMixin, WriteOnlySecretAdminMixin, admin.ModelAdmin):
    """Outbound webhooks: where events go. The same as `manage.py impex_webhook`.

    Its URL is set with impex.change_locations only; its secret is never shown.
    """

    form = WebhookSubscriptionForm
    fields = ("code", "url", "events", "secret", "clear_secret", "enabled", "timeout_seconds", "max_attempts")
    list_display = ("code", "url", "events_display", "signed", "enabled", "deliveries_link")
    list_filter = ("enabled",)
    search_fields = ("code", "url")

    @admin.display(description="events")
    def events_display(self, obj):
        return ", ".join(obj.events or [])

    @admin.display(description="signed", boolean=True)
    def signed(self, obj):
        return bool(obj.secret)

    @admin.display(description="deliveries")
    def deliveries_link(self, obj):
        return changelist_link(WebhookDelivery, "deliveries", subscription__id__exact=obj.pk)


class WebhookAttemptInline(ReadOnlyInline):
    """Each POST of a delivery; the receiver's answer only for who may change the subscription (where it goes)."""

    model = WebhookAttempt
    fields = ("number", "at", "ok", "http_status", "response", "message", "duration_ms", "worker")
    readonly_fields = fields
    show_change_link = False
    verbose_name_plural = "attempts (each POST and what came back)"

    def get_fields(self, request, obj=None):
        if request.user.has_perm(ANSWERS_PERMISSION):
            return self.fields
        return tuple(name for name in self.fields if name != "response")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(AuditRecordAdmin):
    """Every event on its way to a subscriber, with each attempt; failed ones can be sent again."""

    list_display = (
        "event",
        "subscription",
        "status",
        "attempts",
        "created_at",
        "delivered_at",
        "next_attempt_at",
        "last_error",
    )
    list_filter = ("status", "event", "subscription")
    search_fields = ("=event_id", "last_error")
    list_select_related = ("subscription",)
    show_full_result_count = False
    fields = (
        "subscription",
        "event",
        "event_id",
        "status",
        "attempts",
        "created_at",
        "next_attempt_at",
        "delivered_at",
        "last_error",
        "payload",
        "claimed_by",
        "lease_until",
    )
    readonly_fields = fields
    inlines = (WebhookAttemptInline,)
    actions = ("retry",)

    def has_retry_permission(self, request):
        return request.user.has_perm("impex.change_webhookdelivery")

    @admin.action(description="Send failed deliveries again (from their first try)", permissions=["retry"])
    def retry(self, request, queryset):
        failed = list(queryset.filter(status=DeliveryStatus.FAILED))
        count = webhook_retry(deliveries=queryset)
        for delivery in failed:  # who sent it again: the delivery's history (the admin log)
            self.log_change(request, delivery, "Sent again from its first try.")
        self.message_user(request, f"{count} deliver{pluralize(count, 'y,ies')} queued again.", messages.SUCCESS)
