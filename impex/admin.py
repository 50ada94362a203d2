"""Admin of connections, descriptors and groups, and the read-only record of import jobs, files and errors."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import actions as admin_actions
from django.contrib.admin.utils import unquote
from django.db import transaction
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, format_html

from config.adminkit import (
    INLINE_ROW_LIMIT,
    AuditRecordAdmin,
    CountedDeleteMixin,
    FirstRowsInlineFormSet,
    ReadOnlyInline,
    changelist_link,
    format_duration,
    permission_check,
)
from impex.choices import GroupDirection
from impex.exceptions import ConnectionDeleteRefused
from impex.models import (
    Connection,
    DataDescriptor,
    DataGroup,
    DescriptorColumn,
    ImportChunk,
    ImportedFileName,
    ImportEvent,
    ImportFile,
    ImportJob,
    RowError,
)
from impex.services.connections import connection_delete, connection_delete_check
from impex.services.lifecycle import job_rerun


@admin.register(Connection)
class ConnectionAdmin(CountedDeleteMixin, admin.ModelAdmin):
    """Connections: the form runs Connection.clean(), which holds their rules; deleting goes through the service."""

    list_display = (
        "code",
        "name",
        "convention",
        "company_name",
        "integration_id",
        "inbox",
        "interval_minutes",
        "active",
    )
    list_filter = ("convention", "active")
    search_fields = ("code", "name", "company_name", "integration_id")
    list_per_page = 100
    readonly_fields = ("created_at", "updated_at", "activity")
    actions = ("release_sequence_wait", "delete_selected")

    has_run_import_permission = permission_check("impex.run_import")

    @admin.action(
        description="Release the sequence wait (import waiting files without the missing ones)",
        permissions=["run_import"],
    )
    def release_sequence_wait(self, request, queryset):
        from impex.services.waits import connection_release_wait

        for conn in queryset:
            job = connection_release_wait(connection=conn, created_by=request.user.get_username())
            if job is None:
                self.message_user(request, f"{conn.code}: no file is waiting.", messages.WARNING)
            else:
                self.message_user(
                    request,
                    f"{conn.code}: wait released; import job #{job.pk} is queued to import the waiting files.",
                    messages.SUCCESS,
                )

    @admin.action(permissions=["delete"], description="Delete selected connections")
    def delete_selected(self, request, queryset):
        """Django's delete action, refused as a whole if one of the connections may not be deleted."""
        if not self.may_delete(request, queryset, confirming=not request.POST.get("post")):
            return None
        return admin_actions.delete_selected(self, request, queryset)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None:
            # The admin shows help texts as HTML: the inbox's "IMPEX_ROOT/<code>/inbox" would open a <code> element
            # that turns the rest of the page monospace.
            field.help_text = escape(field.help_text)
        if db_field.name == "next_expected_sequence":
            # The engine moves it while imports run: the page keeps the value it showed, so that a save
            # counts it as changed only if the admin changed it (not because an import moved it meanwhile).
            field.show_hidden_initial = True
        return field

    def save_model(self, request, obj, form, change):
        # Only what the admin changed is written: the rest may have moved since the page was opened.
        if change:
            obj.save(update_fields=[*form.changed_data, "updated_at"])
        else:
            obj.save()

    def delete_view(self, request, object_id, extra_context=None):
        conn = self.get_object(request, unquote(object_id))
        if conn is not None and self.has_delete_permission(request, conn):
            if not self.may_delete(request, [conn], confirming=request.method != "POST"):
                return HttpResponseRedirect(reverse("admin:impex_connection_change", args=[conn.pk]))
        return super().delete_view(request, object_id, extra_context)

    def may_delete(self, request, connections, *, confirming: bool) -> bool:
        """Tell why connections may not be deleted, or on the confirmation page what deleting them forgets."""
        refusals, warnings = [], []
        for conn in connections:
            try:
                forgotten = connection_delete_check(connection=conn, confirm=True)
            except ConnectionDeleteRefused as exc:
                refusals.append(str(exc))
                continue
            if forgotten:
                warnings.append(
                    f"Connection '{conn}': {forgotten} imported file name{pluralize(forgotten)} will be forgotten, "
                    f"so {'those names' if forgotten > 1 else 'that name'} could be imported again."
                )
        for message in refusals:
            self.message_user(request, f"{message} Nothing was deleted.", messages.ERROR)
        if confirming and not refusals:
            for message in warnings:
                self.message_user(request, message, messages.WARNING)
        return not refusals

    def delete_model(self, request, obj):
        connection_delete(connection=obj, confirm=True)

    @transaction.atomic
    def delete_queryset(self, request, queryset):
        for conn in queryset:
            connection_delete(connection=conn, confirm=True)

    fieldsets = (
        (None, {"fields": ("code", "name", "convention", "company_name", "integration_id", "active")}),
        ("Inbox and schedule", {"fields": ("inbox", "interval_minutes", "timezone", "contacts")}),
        ("Kore sequence", {"fields": ("next_expected_sequence", "sequence_wait_alert_minutes")}),
        ("Full refresh window", {"fields": ("full_window_start", "full_window_end")}),
        ("Activity", {"fields": ("activity", "created_at", "updated_at")}),
    )

    @admin.display(description="records")
    def activity(self, obj):
        if obj.pk is None:
            return "-"
        return format_html(
            "{} &middot; {} &middot; {} &middot; {}",
            changelist_link(ImportJob, "import jobs", connection__id__exact=obj.pk),
            changelist_link(ImportFile, "files", connection__id__exact=obj.pk),
            changelist_link(ImportedFileName, "imported file names", connection__id__exact=obj.pk),
            changelist_link("syncapp.synclog", "sync logs", connection__id__exact=obj.pk),
        )


class DescriptorColumnInline(admin.TabularInline):
    model = DescriptorColumn
    fields = ("position", "name", "field", "type", "required", "is_key", "choices")
    ordering = ("position", "id")
    extra = 0


class DataDescriptorAdminForm(forms.ModelForm):
    """Keeps a built-in descriptor's code (file names carry it); "Save as new" may give the copy a new one."""

    def clean_code(self):
        code = self.cleaned_data["code"]
        if self.instance.pk and self.instance.builtin and code != self.instance.code:
            raise forms.ValidationError(
                "File names carry this built-in descriptor's code, so it cannot change. "
                'To make a new layout, change the code and use "Save as new".'
            )
        return code


@admin.register(DataDescriptor)
class DataDescriptorAdmin(admin.ModelAdmin):
    form = DataDescriptorAdminForm
    list_display = ("code", "name", "entity", "convention", "format", "precedence", "column_count", "builtin")
    list_filter = ("entity", "format", "convention", "builtin")
    search_fields = ("code", "name")
    list_per_page = 100
    inlines = (DescriptorColumnInline,)
    readonly_fields = ("builtin", "created_at", "updated_at")
    # "Save as new" copies a descriptor with its columns: the way to a new layout without code.
    save_as = True
    fieldsets = (
        (None, {"fields": ("code", "name", "entity", "convention", "builtin")}),
        (
            "File layout",
            {
                "fields": (
                    "format",
                    "delimiter",
                    "encoding",
                    "has_header",
                    "file_pattern",
                    "precedence",
                    "date_format",
                    "datetime_format",
                    "boolean_style",
                    "xml_root",
                    "xml_record",
                )
            },
        ),
        ("Rejecting a file", {"fields": ("max_error_count", "max_error_ratio")}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(column_count=Count("columns"))

    @admin.display(description="columns", ordering="column_count")
    def column_count(self, obj):
        return obj.column_count

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.builtin:
            return False
        return super().has_delete_permission(request, obj)


class DataGroupAdminForm(forms.ModelForm):
    """Checks that an export group has exactly one descriptor, the layout of its output file."""

    def clean(self):
        data = super().clean()
        descriptors = data.get("descriptors")
        if data.get("direction") == GroupDirection.EXPORT and descriptors is not None and len(descriptors) != 1:
            self.add_error("descriptors", "An export group has exactly one descriptor: the layout of its file.")
        return data


@admin.register(DataGroup)
class DataGroupAdmin(admin.ModelAdmin):
    form = DataGroupAdminForm
    list_display = ("code", "name", "direction", "connection", "descriptor_count")
    list_filter = ("direction",)
    search_fields = ("code", "name")
    list_select_related = ("connection",)
    list_per_page = 100
    filter_horizontal = ("descriptors",)
    readonly_fields = ("created_at", "updated_at")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(descriptor_count=Count("descriptors"))

    @admin.display(description="descriptors", ordering="descriptor_count")
    def descriptor_count(self, obj):
        return obj.descriptor_count


class ImportEventInline(ReadOnlyInline):
    model = ImportEvent
    formset = FirstRowsInlineFormSet
    fields = ("at", "level", "message", "worker")
    readonly_fields = fields
    show_change_link = False
    verbose_name = "event"
    verbose_name_plural = f"log (the first {INLINE_ROW_LIMIT} events)"


class ImportFileInline(ReadOnlyInline):
    model = ImportFile
    fk_name = "job"
    fields = (
        "name",
        "descriptor",
        "status",
        "mode",
        "created",
        "updated",
        "unchanged",
        "retired",
        "failed",
        "message",
    )
    readonly_fields = fields


@admin.register(ImportJob)
class ImportJobAdmin(AuditRecordAdmin):
    actions = ("run_again",)
    has_run_import_permission = permission_check("impex.run_import")

    @admin.action(description="Run again (jobs that errored, or whose worker died)", permissions=["run_import"])
    def run_again(self, request, queryset):
        by = request.user.get_username()
        for job in queryset:
            if job_rerun(job=job, by=by):
                self.message_user(request, f"Import job #{job.pk} is queued to run again.", messages.SUCCESS)
            else:
                self.message_user(
                    request,
                    f"Import job #{job.pk} is {job.status}: only a job that errored, or whose worker stopped "
                    "renewing its lease, runs again.",
                    messages.WARNING,
                )

    list_display = (
        "id",
        "created_at",
        "status",
        "source",
        "connection",
        "group",
        "file_count",
        "rows_done",
        "duration_display",
    )
    list_filter = ("status", "source", "connection")
    list_select_related = ("connection", "group")
    date_hierarchy = "created_at"
    fields = (
        "status",
        "source",
        "connection",
        "group",
        "dry_run",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "duration_display",
        "progress",
        "row_errors",
        "claimed_by",
        "lease_until",
        "attempts",
        "error",
    )
    readonly_fields = fields
    inlines = (ImportFileInline, ImportEventInline)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(file_count=Count("files"))

    @admin.display(description="files", ordering="file_count")
    def file_count(self, obj):
        return obj.file_count

    @admin.display(description="duration")
    def duration_display(self, obj):
        if obj.started_at and not obj.finished_at:
            return f"{format_duration(timezone.now() - obj.started_at)} (running)"
        return format_duration(obj.duration)

    @admin.display(description="progress")
    def progress(self, obj):
        if not obj.rows_total:
            return f"{obj.rows_done} rows"
        percent = min(100, int(obj.rows_done * 100 / obj.rows_total))
        return format_html(
            '<progress value="{}" max="100"></progress> {}% ({} of {} rows)',
            percent,
            percent,
            obj.rows_done,
            obj.rows_total,
        )

    @admin.display(description="row errors")
    def row_errors(self, obj):
        errors = RowError.objects.filter(file__job=obj)
        rows = errors.filter(row__isnull=False).count()
        rejected = errors.filter(row__isnull=True).count()
        text = f"{rows} row error{pluralize(rows)}"
        if rejected:
            text += f" and {rejected} rejected file{pluralize(rejected)}"
        return changelist_link(RowError, text, job=obj.pk)


class RowErrorInline(ReadOnlyInline):
    model = RowError
    formset = FirstRowsInlineFormSet
    fields = ("row", "column", "value", "message")
    readonly_fields = fields
    show_change_link = False
    verbose_name_plural = f"row errors (the first {INLINE_ROW_LIMIT})"


class ImportChunkInline(ReadOnlyInline):
    model = ImportChunk
    formset = FirstRowsInlineFormSet
    fields = ("index", "first_record", "record_count", "status", "claimed_by", "created", "updated", "failed")
    readonly_fields = fields
    show_change_link = False


@admin.register(ImportFile)
class ImportFileAdmin(AuditRecordAdmin):
    list_display = (
        "name",
        "job",
        "connection",
        "descriptor",
        "status",
        "mode",
        "created",
        "updated",
        "unchanged",
        "retired",
        "failed",
    )
    list_filter = ("status", "descriptor", "connection")
    search_fields = ("name",)
    list_select_related = ("job", "connection", "descriptor")
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("name", "job", "connection", "descriptor", "status", "mode", "message", "row_errors")}),
        (
            "Counts",
            {"fields": ("rows_total", "rows_done", "created", "updated", "unchanged", "retired", "failed")},
        ),
        (
            "File",
            {"fields": ("path", "size", "content_hash", "order_key", "sequence", "started_at", "finished_at")},
        ),
    )
    readonly_fields = (
        "name",
        "job",
        "connection",
        "descriptor",
        "status",
        "mode",
        "message",
        "row_errors",
        "rows_total",
        "rows_done",
        "created",
        "updated",
        "unchanged",
        "retired",
        "failed",
        "path",
        "size",
        "content_hash",
        "order_key",
        "sequence",
        "started_at",
        "finished_at",
    )
    inlines = (ImportChunkInline, RowErrorInline)

    @admin.display(description="row errors")
    def row_errors(self, obj):
        count = obj.errors.count()
        return changelist_link(RowError, f"all {count} row error{pluralize(count)}", file__id__exact=obj.pk)


class RowErrorJobFilter(admin.SimpleListFilter):
    """Row errors of one job: the recent jobs are offered, any job id works in the URL."""

    title = "job"
    parameter_name = "job"

    def lookups(self, request, model_admin):
        return [(str(job.pk), str(job)) for job in ImportJob.objects.order_by("-created_at", "-id")[:20]]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(file__job_id=self.value())
        return queryset


@admin.register(RowError)
class RowErrorAdmin(AuditRecordAdmin):
    list_display = ("file", "row", "column", "short_value", "message")
    list_filter = (RowErrorJobFilter, "file__descriptor", "file__connection")
    search_fields = ("message", "value", "column", "external_id", "file__name")
    list_select_related = ("file",)
    show_full_result_count = False
    fields = ("file", "row", "column", "value", "message", "external_id")
    readonly_fields = fields

    @admin.display(description="value", ordering="value")
    def short_value(self, obj):
        return obj.value if len(obj.value) <= 80 else obj.value[:79] + "…"


@admin.register(ImportEvent)
class ImportEventAdmin(AuditRecordAdmin):
    """Every job's log lines, searchable across jobs."""

    list_display = ("at", "job", "level", "kind", "message", "worker")
    list_filter = ("level", "kind")
    search_fields = ("message", "worker", "file__name")
    list_select_related = ("job",)
    show_full_result_count = False
    fields = ("at", "job", "file", "level", "kind", "message", "worker")
    readonly_fields = fields


@admin.register(ImportChunk)
class ImportChunkAdmin(AuditRecordAdmin):
    list_display = (
        "file",
        "index",
        "first_record",
        "record_count",
        "status",
        "claimed_by",
        "claimed_at",
        "created",
        "updated",
        "unchanged",
        "failed",
        "finished_at",
    )
    list_filter = ("status",)
    search_fields = ("file__name", "claimed_by")
    list_select_related = ("file",)
    show_full_result_count = False
    readonly_fields = list_display
    fields = list_display


@admin.register(ImportedFileName)
class ImportedFileNameAdmin(AuditRecordAdmin):
    """The ledger of imported names; a superuser may delete an entry so that the name can be imported again."""

    list_display = ("connection", "name", "content_hash", "imported_at")
    list_filter = ("connection",)
    search_fields = ("name", "content_hash")
    list_select_related = ("connection",)
    show_full_result_count = False
    fields = ("connection", "name", "content_hash", "file", "imported_at")
    readonly_fields = fields
