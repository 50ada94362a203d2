"""Export runs and the files they sent (read-only), with "Send again"; the full syncs that ran exports in full."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from config.adminkit import (
    AuditRecordAdmin,
    ReadOnlyInline,
    changelist_link,
    permission_check,
)
from impex.admin.export_views import EXPORT_PERMISSION
from impex.choices import (
    ExportRunStatus,
)
from impex.models import (
    ExportRun,
    ExportRunEvent,
    FullSync,
    SentFile,
)
from impex.services.export_runs import export_resend


class ExportRunEventInline(ReadOnlyInline):
    model = ExportRunEvent
    fields = ("at", "level", "status", "message", "worker")
    readonly_fields = fields
    show_change_link = False
    verbose_name = "event"
    verbose_name_plural = "log"


class SentFileInline(ReadOnlyInline):
    model = SentFile
    fields = ("name", "path", "rows", "size", "sha256", "sent_at")
    readonly_fields = fields
    verbose_name_plural = "file sent"


@admin.register(ExportRun)
class ExportRunAdmin(AuditRecordAdmin):
    """Runs of export groups (scheduled, started in the admin, files sent again): read-only, with their log."""

    list_display = ("__str__", "group", "trigger", "status", "created_by", "started_at", "finished_at", "rows")
    list_filter = ("status", "trigger", "group")
    list_select_related = ("group",)
    search_fields = ("=id", "group__code", "created_by")
    date_hierarchy = "created_at"
    fields = (
        "group",
        "trigger",
        "full_sync",
        "status",
        "resend_of",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "destination",
        "since",
        "watermark",
        "rows",
        "worker",
        "error",
    )
    readonly_fields = fields
    inlines = (SentFileInline, ExportRunEventInline)


@admin.register(SentFile)
class SentFileAdmin(AuditRecordAdmin):
    """Files the export runs sent: read-only; "Send again" puts the hub's copy in the destination again."""

    actions = ("send_again",)
    list_display = ("name", "group", "run", "rows", "size", "sent_at", "location", "resent_from")
    list_filter = ("group", "sent_at")
    list_select_related = ("group", "run", "run__resend_of")
    search_fields = ("name", "sha256", "group__code")
    date_hierarchy = "sent_at"
    fields = ("name", "group", "run", "location", "path", "copy_path", "rows", "size", "sha256", "sent_at")
    readonly_fields = fields
    has_export_data_permission = permission_check(EXPORT_PERMISSION)

    @admin.display(description="sent again from")
    def resent_from(self, obj):
        original = obj.run.resend_of
        if original is None:
            return "-"
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:impex_sentfile_change", args=[original.pk]), original.name
        )

    @admin.action(description="Send again (the same file, to where it was sent)", permissions=["export_data"])
    def send_again(self, request, queryset):
        by = request.user.get_username()
        for sent in queryset.order_by("sent_at", "pk"):
            run = export_resend(sent_file_id=sent.pk, by=by)
            if run.status == ExportRunStatus.COMPLETED:
                again = run.sent_files.get()
                self.message_user(request, f"Sent {sent.name} again: {again.path}.", messages.SUCCESS)
            else:
                self.message_user(
                    request, f"{sent.name} was not sent again (export run #{run.pk}): {run.error}", messages.ERROR
                )


@admin.register(FullSync)
class FullSyncAdmin(AuditRecordAdmin):
    """Each "Trigger a data sync" (API or admin): the exports it ran in full, and when the last of them was done."""

    list_display = ("__str__", "connection", "entity", "created_by", "created_at", "finished_at", "exports")
    list_filter = ("entity", "connection")
    list_select_related = ("connection",)
    search_fields = ("=id", "connection__code", "created_by")
    date_hierarchy = "created_at"
    fields = ("connection", "entity", "created_by", "created_at", "finished_at", "exports", "runs")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="exports run in full")
    def exports(self, obj):
        return ", ".join(group.code for group in obj.groups.all()) or "-"

    @admin.display(description="runs")
    def runs(self, obj):
        return changelist_link(ExportRun, "its export runs", full_sync__id__exact=obj.pk)
