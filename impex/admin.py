"""Admin of connections, descriptors and groups, and the read-only record of import jobs, files and errors."""

from datetime import timedelta
from functools import partial
from types import SimpleNamespace
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import actions as admin_actions
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import BigIntegerField, Count, F, IntegerField, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import (
    FileResponse,
    Http404,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat, pluralize
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import escape, format_html, format_html_join
from django.utils.http import content_disposition_header
from django.utils.safestring import mark_safe
from django.utils.text import Truncator
from django_q.models import Schedule

from config.adminkit import (
    INLINE_ROW_LIMIT,
    AuditRecordAdmin,
    CountedDeleteMixin,
    FirstRowsInlineFormSet,
    LocationFieldsAdminMixin,
    ReadOnlyInline,
    WriteOnlySecretAdminMixin,
    WriteOnlySecretForm,
    changelist_link,
    format_duration,
    https_formfield,
    permission_check,
)
from impex.admin_export import EXPORT_PERMISSION, GroupExportMixin
from impex.admin_problems import ProblemAdmin  # noqa: F401 (registers the problems' admin)
from impex.choices import (
    DeliveryStatus,
    ExportRunStatus,
    FileKind,
    FileStatus,
    GroupDirection,
    InboxStatus,
    JobStatus,
    WebhookEvent,
)
from impex.exceptions import ConfigurationError, ConnectionDeleteRefused, LocationRefused
from impex.forms import UploadForm
from impex.models import (
    ApiToken,
    Connection,
    ConnectionState,
    DataDescriptor,
    DataGroup,
    DescriptorColumn,
    ExportRun,
    ExportRunEvent,
    ExportState,
    ImportChunk,
    ImportedFileName,
    ImportEvent,
    ImportFile,
    ImportJob,
    InboxEvent,
    InboxFile,
    RowError,
    SentFile,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from impex.registry import sync_logs
from impex.services.connections import connection_delete, connection_delete_check
from impex.services.descriptors import descriptor_check
from impex.services.export_runs import export_destination, export_resend, export_run_enqueue
from impex.services.inbox import inbox_scan_start
from impex.services.progress import COUNTS, file_status_label, job_files, job_progress, job_status_label
from impex.services.rejected import NoRejectedRows, rejected_rows_available, rejected_rows_download, rejected_rows_name
from impex.services.samples import SAMPLE_ROWS, descriptor_sample
from impex.services.schedules import scan_schedule_name, schedules_sync_on_commit
from impex.services.tokens import api_token_revoke
from impex.services.uploads import UploadRefused, job_run_again, job_run_for_real, job_upload
from impex.services.waits import HELD_FOR_WINDOW, WAITING_FOR_SEQUENCE
from impex.services.webhooks import subscription_problems, webhook_retry
from impex.storage import open_file, resolve_path, temporary_folder
from impex.uploadhandler import upload_stopped

ERRORS_PER_PAGE = 50
EXPORT_RUNS_SHOWN = 10
# The connections list counts the files rejected this far back; the connection's page lists this many inbox files.
REJECTED_RECENTLY = timedelta(days=7)
INBOX_FILES_SHOWN = 20
# A receiver's answer may tell about the system behind it: shown to who may change where the webhook goes.
ANSWERS_PERMISSION = "impex.change_webhooksubscription"


class UploadLinkMixin:
    """Offers "Upload and import" on a page of a record that uploads can go to (an import group, a connection)."""

    upload_parameter = ""

    def upload_url(self, request, obj) -> str:
        """Return the upload page's URL with this record chosen, or "" when the user may not upload to it."""
        if obj is None or not request.user.has_perm("impex.run_import"):
            return ""
        if getattr(obj, "direction", GroupDirection.IMPORT) != GroupDirection.IMPORT:
            return ""
        return f"{reverse('admin:impex_importjob_upload')}?{self.upload_parameter}={obj.pk}"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        extra_context = {**(extra_context or {}), "upload_url": self.upload_url(request, obj)}
        return super().change_view(request, object_id, form_url, extra_context)


def _count_of(queryset, *, by: str) -> Coalesce:
    """Count, in a subquery, the rows of queryset (filtered on by=OuterRef("pk")) for each outer row; 0 if none."""
    counted = queryset.order_by().values(by).annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


class ConnectionChangeList(ChangeList):
    """The connections list: the page's connections get their next scan from their schedules in one query."""

    def get_results(self, request):
        super().get_results(request)
        by_name = {scan_schedule_name(conn): conn for conn in self.result_list}
        next_runs = dict(Schedule.objects.filter(name__in=by_name).values_list("name", "next_run"))
        for name, conn in by_name.items():
            conn.next_scan_at = next_runs.get(name)


@admin.register(Connection)
class ConnectionAdmin(UploadLinkMixin, LocationFieldsAdminMixin, CountedDeleteMixin, admin.ModelAdmin):
    """Connections: the form runs Connection.clean(), which holds their rules; deleting goes through the service.

    The list shows each connection's scans at a glance (on or off, the last one and the next one) and what waits
    for attention: files waiting or held, files rejected lately, open sync errors; all in the page's few queries.
    """

    location_keys_on_change = ("code",)
    upload_parameter = "connection"
    change_form_template = "admin/impex/connection/change_form.html"

    list_display = (
        "connection_display",
        "naming",
        "scans",
        "last_scan",
        "next_scan",
        "files_waiting",
        "files_rejected",
        "sync_errors",
    )
    list_display_links = ("connection_display",)
    list_filter = ("convention", "active", "scan_enabled")
    search_fields = ("code", "name", "company_name", "integration_id")
    list_per_page = 100
    readonly_fields = ("created_at", "updated_at", "activity")
    actions = ("sync_now", "release_sequence_wait", "delete_selected")

    has_run_import_permission = permission_check("impex.run_import")

    def get_changelist(self, request, **kwargs):
        return ConnectionChangeList

    def get_queryset(self, request):
        # A dry run's files are a preview: they are never imported, so they neither wait nor fail for real.
        real = ImportFile.objects.filter(connection=OuterRef("pk"), job__dry_run=False)
        waiting = real.filter(status=FileStatus.WAITING)
        rejected = real.filter(status=FileStatus.REJECTED, finished_at__gte=self.rejected_since())
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_scan_at=F("state__last_scan_at"),
                last_scan_ok=F("state__last_scan_ok"),
                last_scan_message=F("state__last_scan_message"),
                last_scan_job_id=F("state__last_scan_job_id"),
                scan_by=F("state__scan_by"),
                scan_until=F("state__scan_until"),
                waiting_count=_count_of(waiting.filter(message__startswith=WAITING_FOR_SEQUENCE), by="connection"),
                held_count=_count_of(waiting.filter(message__startswith=HELD_FOR_WINDOW), by="connection"),
                rejected_count=_count_of(rejected, by="connection"),
                sync_error_count=sync_logs().open_error_count(connection=OuterRef("pk")),
            )
        )

    @staticmethod
    def rejected_since():
        # Whole minutes: the list's link to the rejected files then names a time a reader can check.
        return (timezone.now() - REJECTED_RECENTLY).replace(second=0, microsecond=0)

    @admin.display(description="connection", ordering="code")
    def connection_display(self, obj):
        return format_html('{}<div class="help">{}</div>', obj.code, obj.name or "")

    @admin.display(description="naming", ordering="convention")
    def naming(self, obj):
        part = obj.company_name if obj.convention == "bspk" else obj.integration_id
        # The convention's name without the file-name pattern its label carries, which would widen the column.
        return format_html('{}<div class="help">{}</div>', obj.get_convention_display().split(" ")[0], part or "-")

    @admin.display(description="scans", ordering="scan_enabled")
    def scans(self, obj):
        if not obj.active or not obj.scan_enabled:
            why = "not active" if not obj.active else "Sync now only"
            return format_html('<span class="impex-scan-off">off</span><div class="help">{}</div>', why)
        return scan_every(obj)

    @admin.display(description="last scan", ordering="last_scan_at")
    def last_scan(self, obj):
        if obj.scan_until and obj.scan_until > timezone.now():
            return format_html(
                '<span class="impex-scan-busy">scanning now</span><div class="help">{}</div>', obj.scan_by
            )
        if obj.last_scan_at is None:
            return "never"
        return scan_result(
            at=obj.last_scan_at, ok=obj.last_scan_ok, message=obj.last_scan_message, job_id=obj.last_scan_job_id
        )

    @admin.display(description="next scan")
    def next_scan(self, obj):
        at = getattr(obj, "next_scan_at", None)
        if not (obj.active and obj.scan_enabled):
            return "-"
        if at is None:
            return "not scheduled yet"
        return _when(at)

    @admin.display(description="files waiting", ordering="waiting_count")
    def files_waiting(self, obj):
        parts = []
        if obj.waiting_count:
            parts.append(
                self._files_link(
                    obj,
                    f"{obj.waiting_count} for a sequence",
                    status__exact="waiting",
                    message__startswith=WAITING_FOR_SEQUENCE,
                )
            )
        if obj.held_count:
            parts.append(
                self._files_link(
                    obj, f"{obj.held_count} held", status__exact="waiting", message__startswith=HELD_FOR_WINDOW
                )
            )
        if not parts:
            return "-"
        return format_html_join(mark_safe("<br>"), "{}", ((part,) for part in parts))

    @admin.display(description="rejected, 7 days", ordering="rejected_count")
    def files_rejected(self, obj):
        if not obj.rejected_count:
            return "-"
        return self._files_link(
            obj, str(obj.rejected_count), status__exact="rejected", finished_at__gte=self.rejected_since().isoformat()
        )

    @admin.display(description="sync errors", ordering="sync_error_count")
    def sync_errors(self, obj):
        if not obj.sync_error_count:
            return "-"
        url = reverse("admin:syncapp_syncerror_changelist")
        return format_html(
            '<a href="{}?{}">{}</a>', url, urlencode({"log__connection__id__exact": obj.pk}), obj.sync_error_count
        )

    @staticmethod
    def _files_link(obj, text, **filters):
        query = urlencode({"connection__id__exact": obj.pk, **filters})
        return format_html('<a href="{}?{}">{}</a>', reverse("admin:impex_importfile_changelist"), query, text)

    # -- "Sync now" ----------------------------------------------------------------------------

    @admin.action(description="Sync now: scan the inbox at once", permissions=["run_import"])
    def sync_now(self, request, queryset):
        for conn in queryset:
            self.sync_start(request, conn)

    def sync_start(self, request, conn: Connection) -> None:
        """Queue a scan of conn's inbox for the user and say so; a connection that is off is scanned all the same."""
        inbox_scan_start(connection=conn, by=request.user.get_username())
        self.log_change(request, conn, "Sync now: a scan of the inbox queued.")
        note = ""
        if not (conn.active and conn.scan_enabled):
            why = "not active" if not conn.active else "no scans on schedule"
            note = f" {conn.code} is switched off ({why}): this scan runs because you asked, and it stays off."
        self.message_user(
            request,
            f"Scan of {conn.code} queued: a worker looks at the inbox in a moment and takes what has arrived into an "
            f"import job; the connections list shows the result.{note}",
            messages.SUCCESS,
        )

    def get_urls(self):
        sync = path(
            "<path:object_id>/sync-now/",
            self.admin_site.admin_view(self.sync_now_view),
            name="impex_connection_sync_now",
        )
        return [sync, *super().get_urls()]

    def sync_now_view(self, request, object_id):
        """Queue a scan of the connection's inbox now (POST, impex.run_import), then go back to its page."""
        if not (self.has_view_or_change_permission(request) and self.has_run_import_permission(request)):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conn = self.get_object(request, unquote(object_id))
        if conn is None:
            raise Http404("No such connection.")
        self.sync_start(request, conn)
        return HttpResponseRedirect(reverse("admin:impex_connection_change", args=[conn.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        conn = self.get_object(request, unquote(object_id))
        extra = {}
        if conn is not None:
            extra = connection_page_context(request, conn, may_sync=self.has_run_import_permission(request))
        return super().change_view(request, object_id, form_url, extra_context={**extra, **(extra_context or {})})

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
        schedules_sync_on_commit()

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
        (
            "Inbox and schedule",
            {"fields": ("inbox", "scan_enabled", "interval_minutes", "scan_cron", "timezone", "contacts")},
        ),
        ("Folders", {"fields": ("archive_folder", "error_folder", "outbox")}),
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


def _when(at) -> str:
    return date_format(timezone.localtime(at), "Y-m-d H:i")


def scan_every(conn: Connection) -> str:
    """Say how often a connection's inbox is scanned on schedule."""
    if conn.scan_cron:
        return f"cron {conn.scan_cron}"
    return f"every {conn.interval_minutes} min"


def scan_result(*, at, ok: bool | None, message: str, job_id: int | None):
    """Render a scan's time and outcome (its message as the tooltip and below), with a link to the job it started."""
    outcome = format_html(
        '<span class="impex-scan-{}" title="{}">{}</span>', "ok" if ok else "failed", message, "ok" if ok else "failed"
    )
    job = (
        format_html(
            ' &middot; <a href="{}">job #{}</a>', reverse("admin:impex_importjob_change", args=[job_id]), job_id
        )
        if job_id
        else ""
    )
    return format_html('{} {}{}<div class="help">{}</div>', _when(at), outcome, job, Truncator(message).chars(120))


def inbox_outcome(f: InboxFile) -> str:
    """Say what became of an inbox file's copy in its job: the import file's status and message ("rejected: why")."""
    if f.import_file is None:
        return f.message if f.status in (InboxStatus.SEEN, InboxStatus.CLAIMED, InboxStatus.GONE) else "-"
    status, message = f.import_file.status, f.import_file.message
    return f"{status}: {message}" if message else status


def connection_page_context(request, conn: Connection, *, may_sync: bool) -> dict:
    """Gather what a connection's page shows besides its fields: "Sync now", its scans, its latest inbox files."""
    context = {"sync_now_url": reverse("admin:impex_connection_sync_now", args=[conn.pk]) if may_sync else ""}
    if not request.user.has_perm("impex.view_inboxfile"):
        return context
    state = ConnectionState.objects.filter(connection=conn).first()
    schedule = Schedule.objects.filter(name=scan_schedule_name(conn)).values_list("next_run", flat=True).first()
    files = list(
        InboxFile.objects.filter(connection=conn)
        .select_related("job", "import_file")
        .order_by("-first_seen", "-id")[:INBOX_FILES_SHOWN]
    )
    context["inbox"] = {
        "scans": scan_every(conn) if conn.active and conn.scan_enabled else "off",
        "last_scan": scan_result(
            at=state.last_scan_at, ok=state.last_scan_ok, message=state.last_scan_message, job_id=state.last_scan_job_id
        )
        if state is not None and state.last_scan_at
        else "never",
        "next_scan": _when(schedule) if schedule and conn.active and conn.scan_enabled else "-",
        "files": [{"file": f, "outcome": inbox_outcome(f)} for f in files],
        "shown": INBOX_FILES_SHOWN,
        "list_url": f"{reverse('admin:impex_inboxfile_changelist')}?connection__id__exact={conn.pk}",
    }
    return context


DESCRIPTOR_WORD_FIELDS = ("true_words", "false_words")


class DescriptorColumnFormSet(BaseInlineFormSet):
    """Checks the columns together with the descriptor on save, by the rules the engine compiles them with."""

    def clean(self):
        forms_ = [
            form for form in self.forms if getattr(form, "cleaned_data", None) and not self._should_delete_form(form)
        ]
        if any(form.errors for form in self.forms):
            return  # each row's own errors first: a half-read row would only add confusing ones
        problems = descriptor_check(descriptor=self.instance, columns=[form.instance for form in forms_])
        general = []
        for problem in problems:
            if problem.column is not None:
                form = forms_[problem.column]
                form.add_error(problem.attr if problem.attr in form.fields else None, problem.message)
            elif not problem.attr:
                general.append(problem.message)
            # A problem of the descriptor's own fields is shown on them by its form.
        if general:
            raise forms.ValidationError(general)


class DescriptorColumnInline(admin.TabularInline):
    model = DescriptorColumn
    formset = DescriptorColumnFormSet
    fields = ("position", "name", "field", "type", "required", "is_key", "ignored", "choices")
    ordering = ("position", "id")
    extra = 0

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        # Narrow boxes keep the eight columns of a row within a 1400 px window, beside the navigation sidebar.
        widths = {"position": "4em", "name": "12em", "field": "11em", "choices": "10em"}
        if db_field.name in widths:
            field.widget.attrs["style"] = f"width: {widths[db_field.name]}"
        return field


class DataDescriptorAdminForm(forms.ModelForm):
    """Keeps a built-in descriptor's code (file names carry it); "Save as new" may give the copy a new one."""

    def clean(self):
        data = super().clean()
        probe = SimpleNamespace(
            entity=data.get("entity", ""), **{name: data.get(name, "") for name in DESCRIPTOR_WORD_FIELDS}
        )
        for problem in descriptor_check(descriptor=probe, columns=[]):
            if problem.attr in DESCRIPTOR_WORD_FIELDS:
                self.add_error(problem.attr, problem.message)
        return data

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
        (None, {"fields": ("code", "name", "entity", "convention", "builtin", "export_only")}),
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
                    "true_words",
                    "false_words",
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

    def get_urls(self):
        sample = path(
            "<path:object_id>/sample/",
            self.admin_site.admin_view(self.sample_view),
            name="impex_datadescriptor_sample",
        )
        return [sample, *super().get_urls()]

    def sample_view(self, request, object_id):
        """Try the saved descriptor on an uploaded file: its first rows as an import reads them; nothing is kept."""
        descriptor = self.get_object(request, unquote(object_id))
        if descriptor is None:
            raise Http404("No such descriptor.")
        # Reading a file writes nothing, but the page is a tool for whoever shapes the descriptor.
        if not self.has_change_permission(request, descriptor):
            raise PermissionDenied
        form = DescriptorSampleForm(request.POST or None, request.FILES or None)
        sample = None
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            with temporary_folder() as folder:
                local = folder / "sample"
                with open(local, "wb") as out:
                    for chunk in upload.chunks():
                        out.write(chunk)
                sample = descriptor_sample(
                    descriptor=descriptor,
                    path=local,
                    max_bytes=settings.IMPEX_SAMPLE_MAX_BYTES,
                    tz=timezone.get_current_timezone_name(),
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": descriptor,
            "title": f"Try {descriptor.code} on a sample",
            "form": form,
            "sample": sample,
            "sample_rows": SAMPLE_ROWS,
            "max_size": filesizeformat(settings.IMPEX_SAMPLE_MAX_BYTES),
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/impex/datadescriptor/sample.html", context)


class DescriptorSampleForm(forms.Form):
    """A sample file to try a descriptor on."""

    file = forms.FileField(label="Sample file", help_text="A CSV, TSV or XML file laid out as the descriptor says.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.IMPEX_SAMPLE_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; a sample may be up to {filesizeformat(limit)}. "
                "Try the first rows of the file."
            )
        return upload


class DataGroupAdminForm(forms.ModelForm):
    """Checks that an export group has exactly one descriptor, the layout of its output file."""

    def clean(self):
        data = super().clean()
        descriptors = data.get("descriptors")
        if data.get("direction") == GroupDirection.EXPORT and descriptors is not None and len(descriptors) != 1:
            self.add_error("descriptors", "An export group has exactly one descriptor: the layout of its file.")
        return data


@admin.register(DataGroup)
class DataGroupAdmin(UploadLinkMixin, LocationFieldsAdminMixin, GroupExportMixin, admin.ModelAdmin):
    form = DataGroupAdminForm
    # An export group without a destination writes to its connection's outbox: choosing the connection is choosing
    # where the file goes.
    location_keys = ("connection",)
    upload_parameter = "group"
    actions = ("export_group",)
    list_display = ("code", "name", "direction", "connection", "descriptor_count", "schedule_display")
    list_filter = ("direction", "schedule_enabled")
    search_fields = ("code", "name")
    list_select_related = ("connection",)
    list_per_page = 100
    filter_horizontal = ("descriptors",)
    readonly_fields = ("created_at", "updated_at", "watermark_display")
    change_form_template = "admin/impex/datagroup/change_form.html"
    has_export_data_permission = permission_check(EXPORT_PERMISSION)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(descriptor_count=Count("descriptors"))

    def get_fieldsets(self, request, obj=None):
        main = (None, {"fields": ("code", "name", "direction", "descriptors", "connection")})
        record = ("Record", {"fields": ("created_at", "updated_at")})
        if obj is not None and obj.direction != GroupDirection.EXPORT:
            return (main, record)
        schedule = (
            "Scheduled export (export groups)",
            {
                "fields": (
                    "schedule_enabled",
                    ("interval_minutes", "cron"),
                    "destination",
                    "file_name_pattern",
                    ("incremental", "write_empty"),
                    "watermark_display",
                ),
                "description": "Each run writes the group's file to the destination under the name below, in one "
                "step (never half a file). The watermark moves only when a run succeeds; downloads and "
                "impex_export never move it.",
            },
        )
        return (main, schedule, record)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None:
            # Help texts are HTML: "IMPEX_ROOT/outbox/<code>" would open a <code> element.
            field.help_text = escape(field.help_text)
        return field

    @admin.display(description="descriptors", ordering="descriptor_count")
    def descriptor_count(self, obj):
        return obj.descriptor_count

    @admin.display(description="schedule", ordering="schedule_enabled")
    def schedule_display(self, obj):
        if not obj.schedule_enabled:
            return "-"
        return f"cron {obj.cron}" if obj.cron else f"every {obj.interval_minutes} min"

    @admin.display(description="watermark")
    def watermark_display(self, obj):
        state = ExportState.objects.filter(group=obj).first() if obj.pk else None
        if state is None or state.watermark is None:
            return "none yet: the next run writes every record"
        local = date_format(timezone.localtime(state.watermark), "Y-m-d H:i:s")
        return f"{local} (for {state.watermark_destination})"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        schedules_sync_on_commit()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        schedules_sync_on_commit()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        schedules_sync_on_commit()

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/run-export/",
                self.admin_site.admin_view(self.run_export_view),
                name="impex_datagroup_run_export",
            )
        ]
        return own + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        group = self.get_object(request, unquote(object_id))
        extra_context = extra_context or {}
        if group is not None and group.direction == GroupDirection.EXPORT:
            extra_context["export_runs"] = group.export_runs.select_related("resend_of")[:EXPORT_RUNS_SHOWN]
            extra_context["sent_files"] = group.sent_files.select_related("run")[:EXPORT_RUNS_SHOWN]
            extra_context["export_runs_shown"] = EXPORT_RUNS_SHOWN
            extra_context["show_export_runs"] = True
            if self.has_export_data_permission(request) and self.has_view_permission(request, group):
                extra_context["run_export_url"] = reverse("admin:impex_datagroup_run_export", args=[group.pk])
        return super().change_view(request, object_id, form_url, extra_context)

    def run_export_view(self, request, object_id):
        """Queue a run of the export group to its destination now (POST; impex.export_data)."""
        group = self.get_object(request, unquote(object_id))
        if group is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not (self.has_export_data_permission(request) and self.has_view_permission(request, group)):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            export_run_enqueue(group=group, by=request.user.get_username())
        except ConfigurationError as exc:
            self.message_user(request, f"{group.code} cannot export: {exc}.", messages.ERROR)
        else:
            self.message_user(
                request,
                f"A run of {group.code} is queued: its file goes to {export_destination(group=group).location}. "
                "The run shows below once a worker starts it.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:impex_datagroup_change", args=[group.pk]))


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


class JobDryRunFilter(admin.SimpleListFilter):
    """Dry runs or real imports."""

    title = "kind"
    parameter_name = "dry_run"

    def lookups(self, request, model_admin):
        return [("1", "dry runs"), ("0", "imports")]

    def queryset(self, request, queryset):
        if self.value() in ("0", "1"):
            return queryset.filter(dry_run=self.value() == "1")
        return queryset


@admin.register(ImportJob)
class ImportJobAdmin(AuditRecordAdmin):
    """Import jobs: the list, the live job page, uploads, downloads of a job's files, and running jobs again."""

    actions = ("run_again",)
    has_run_import_permission = permission_check("impex.run_import")
    change_list_template = "admin/impex/importjob/change_list.html"
    change_form_template = "admin/impex/importjob/change_form.html"

    @admin.action(
        description="Run again (jobs that failed or errored, or whose worker died)", permissions=["run_import"]
    )
    def run_again(self, request, queryset):
        by = request.user.get_username()
        for job in queryset:
            try:
                again = job_run_again(job=job, user=by)
            except UploadRefused as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            self.message_user(request, _queued_message(job, again), messages.SUCCESS)

    list_display = (
        "job_display",
        "status_display",
        "started_by",
        "where",
        "file_count",
        "counts",
        "duration_display",
    )
    list_display_links = ("job_display",)
    list_filter = ("status", JobDryRunFilter, "source", "connection", "created_at")
    list_select_related = ("connection", "group")
    search_fields = ("=id", "created_by", "files__name")
    date_hierarchy = "created_at"
    fields = (
        "status",
        "source",
        "connection",
        "group",
        "dry_run",
        "dry_run_of",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "duration_display",
        "row_errors",
        "claimed_by",
        "lease_until",
        "attempts",
        "error",
    )
    readonly_fields = fields
    inlines = (ImportEventInline,)

    def get_queryset(self, request):
        files = ImportFile.objects.filter(job=OuterRef("pk"), kind=FileKind.DATA)
        return (
            super()
            .get_queryset(request)
            .annotate(
                file_count=Count("files", filter=Q(files__kind=FileKind.DATA), distinct=True),
                **{
                    f"sum_{name}": Subquery(
                        files.values("job").annotate(total=Sum(name)).values("total")[:1],
                        output_field=BigIntegerField(),
                    )
                    for name in COUNTS
                },
            )
        )

    @admin.display(description="job", ordering="-created_at")
    def job_display(self, obj):
        return format_html(
            '#{}<div class="help" style="white-space: nowrap">{}</div>',
            obj.pk,
            date_format(timezone.localtime(obj.created_at), "Y-m-d H:i"),
        )

    @admin.display(description="source, by", ordering="source")
    def started_by(self, obj):
        return format_html('{}<div class="help">{}</div>', obj.get_source_display(), obj.created_by or "-")

    @admin.display(description="connection, group", ordering="connection__code")
    def where(self, obj):
        return format_html(
            '{}<div class="help">{}</div>', obj.connection or "-", obj.group.code if obj.group_id else "no group"
        )

    @admin.display(description="status", ordering="status")
    def status_display(self, obj):
        css = {"completed": "ok", "failed": "bad", "errored": "bad", "running": "busy", "queued": "busy"}
        kind = "dry" if obj.dry_run else css.get(obj.status, "")
        return format_html('<span class="impex-status impex-status-{}">{}</span>', kind, job_status_label(obj))

    @admin.display(description="files", ordering="file_count")
    def file_count(self, obj):
        return obj.file_count

    @admin.display(description="rows")
    def counts(self, obj):
        values = [(getattr(obj, f"sum_{name}", None) or 0, name) for name in COUNTS]
        shown = [f"{value:,} {name}" for value, name in values if value]
        return ", ".join(shown) or "-"

    @admin.display(description="duration")
    def duration_display(self, obj):
        if obj.started_at and not obj.finished_at:
            return f"{format_duration(timezone.now() - obj.started_at)} (running)"
        return format_duration(obj.duration)

    @admin.display(description="row errors")
    def row_errors(self, obj):
        errors = RowError.objects.filter(file__job=obj)
        rows = errors.filter(row__isnull=False).count()
        rejected = errors.filter(row__isnull=True).count()
        text = f"{rows} row error{pluralize(rows)}"
        if rejected:
            text += f" and {rejected} rejected file{pluralize(rejected)}"
        return changelist_link(RowError, text, job=obj.pk)

    # -- pages of our own ----------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        own = [
            path("upload/", view(self.upload_view), name="impex_importjob_upload"),
            path("<int:job_id>/progress/", view(self.progress_view), name="impex_importjob_progress"),
            path("<int:job_id>/run-for-real/", view(self.run_for_real_view), name="impex_importjob_run_for_real"),
            path("<int:job_id>/run-again/", view(self.run_again_view), name="impex_importjob_run_again"),
            path(
                "<int:job_id>/files/<int:file_id>/<str:what>/",
                view(self.file_download_view),
                name="impex_importjob_file",
            ),
        ]
        return own + super().get_urls()

    def _job_or_404(self, request, job_id: int) -> ImportJob:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(ImportJob.objects.select_related("connection", "group"), pk=job_id)

    def _require_run_import(self, request) -> None:
        if not request.user.has_perm("impex.run_import"):
            raise PermissionDenied

    def upload_view(self, request):
        """The "Upload and import" page: a file or zip for an import group; the job is queued, never run here."""
        self._require_run_import(request)
        if request.method == "POST":
            form = UploadForm(request.POST, request.FILES, stopped=upload_stopped(request))
            if form.is_valid():
                data = form.cleaned_data
                job = job_upload(
                    upload=data["file"],
                    group=data["group"],
                    connection=data["connection"],
                    dry_run=data["dry_run"],
                    user=request.user.get_username(),
                )
                what = "dry run" if job.dry_run else "import"
                self.message_user(
                    request,
                    f"The upload {data['file'].name} is stored; the {what} is queued as job #{job.pk}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:impex_importjob_change", args=[job.pk]))
        else:
            form = UploadForm(initial={key: request.GET.get(key) for key in ("group", "connection", "dry_run")})
        context = {
            **self.admin_site.each_context(request),
            "title": "Upload and import",
            "opts": self.model._meta,
            "form": form,
            "adminform_fields": list(form),
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/impex/importjob/upload.html", context)

    def progress_view(self, request, job_id: int):
        """The job's progress as JSON, for the job page to poll."""
        job = self._job_or_404(request, job_id)
        return JsonResponse(job_progress(job=job))

    def run_for_real_view(self, request, job_id: int):
        """Import for real the upload a dry run was given (POST)."""
        self._require_run_import(request)
        job = self._job_or_404(request, job_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            real = job_run_for_real(job=job, user=request.user.get_username())
        except UploadRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:impex_importjob_change", args=[job.pk]))
        self.message_user(request, f"Dry run #{job.pk} is queued for real as import job #{real.pk}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:impex_importjob_change", args=[real.pk]))

    def run_again_view(self, request, job_id: int):
        """Run a failed or errored job again (POST)."""
        self._require_run_import(request)
        job = self._job_or_404(request, job_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            again = job_run_again(job=job, user=request.user.get_username())
        except UploadRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:impex_importjob_change", args=[job.pk]))
        self.message_user(request, _queued_message(job, again), messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:impex_importjob_change", args=[again.pk]))

    def file_download_view(self, request, job_id: int, file_id: int, what: str):
        """Download a file of the job: the original, its rejected rows, or the reason it was rejected."""
        job = self._job_or_404(request, job_id)
        f = get_object_or_404(
            ImportFile.objects.select_related("descriptor", "connection"),
            Q(job=job) | Q(processed_by=job),
            pk=file_id,
        )
        try:
            if what == "original":
                if not f.path:
                    raise FileNotFoundError(f.name)
                return FileResponse(open_file(*resolve_path(f.path)), as_attachment=True, filename=f.name)
            if what == "rejected-rows":
                response = StreamingHttpResponse(
                    rejected_rows_download(import_file=f), content_type="application/octet-stream"
                )
                response["Content-Disposition"] = content_disposition_header(True, rejected_rows_name(f))
                return response
            if what == "reason" and f.status == FileStatus.REJECTED:
                reason = f.message or "; ".join(f.errors.filter(row__isnull=True).values_list("message", flat=True))
                response = HttpResponse(reason + "\n", content_type="text/plain; charset=utf-8")
                response["Content-Disposition"] = content_disposition_header(True, f"{f.name}.reason.txt")
                return response
        except LocationRefused as exc:  # kept where the hub may no longer go (impex.locations): nothing is read
            self.message_user(request, f"{f.name} cannot be downloaded: {exc}.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:impex_importjob_change", args=[job.pk]))
        except (FileNotFoundError, NoRejectedRows) as exc:
            message = str(exc) if isinstance(exc, NoRejectedRows) else f"The copy of {f.name} is no longer kept."
            self.message_user(request, message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:impex_importjob_change", args=[job.pk]))
        raise Http404(f"no {what} to download for {f.name}")

    def changelist_view(self, request, extra_context=None):
        extra = {"may_upload": request.user.has_perm("impex.run_import")}
        return super().changelist_view(request, extra_context={**extra, **(extra_context or {})})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, unquote(object_id))
        extra = {}
        if job is not None:
            extra = job_page_context(request, job)
        return super().change_view(request, object_id, form_url, extra_context={**extra, **(extra_context or {})})


def _queued_message(job: ImportJob, again: ImportJob) -> str:
    if again.pk == job.pk:
        return f"Import job #{job.pk} is queued to run again."
    return f"Import job #{job.pk} is run again as import job #{again.pk}."


def job_page_context(request, job: ImportJob) -> dict:
    """Gather what the job page shows besides its fields: progress, files, a dry run's findings, row errors."""
    files = job_files(job)
    may_run = request.user.has_perm("impex.run_import")
    rows = []
    link = partial(reverse, "admin:impex_importjob_file")
    for f in files:
        rows.append(
            {
                "file": f,
                "status_label": file_status_label(f, dry_run=job.dry_run),
                "counts": [getattr(f, name) for name in COUNTS],
                "original_url": link(args=[job.pk, f.pk, "original"])
                if f.path and f.status != FileStatus.UNPACKED
                else "",
                "rejected_url": link(args=[job.pk, f.pk, "rejected-rows"]) if rejected_rows_available(f) else "",
                "reason_url": link(args=[job.pk, f.pk, "reason"]) if f.status == FileStatus.REJECTED else "",
            }
        )
    errors = RowError.objects.filter(file__in=[f.pk for f in files]).select_related("file")
    chosen = {
        "file": request.GET.get("e_file", ""),
        "column": request.GET.get("e_column", "").strip(),
        "q": request.GET.get("e_q", "").strip(),
    }
    if chosen["file"].isdigit():
        errors = errors.filter(file_id=int(chosen["file"]))
    if chosen["column"]:
        errors = errors.filter(column=chosen["column"])
    if chosen["q"]:
        errors = errors.filter(Q(message__icontains=chosen["q"]) | Q(value__icontains=chosen["q"]))
    page = Paginator(errors.order_by("file_id", "row", "id"), ERRORS_PER_PAGE).get_page(request.GET.get("e_page"))
    query = {f"e_{key}": value for key, value in chosen.items() if value}
    ended = job.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.ERRORED)
    return {
        "job": job,
        "progress": job_progress(job=job, files=files),
        "file_rows": rows,
        "previews": [f for f in files if f.preview],
        "errors_page": page,
        "errors_filter": chosen,
        "errors_query": urlencode(query),
        "error_files": [f for f in files if f.failed or f.status == FileStatus.REJECTED],
        "progress_url": reverse("admin:impex_importjob_progress", args=[job.pk]),
        "may_run_for_real": may_run and job.dry_run and ended and not job.real_runs.exists(),
        "real_runs": list(job.real_runs.order_by("pk")),
        "may_run_again": may_run and not job.dry_run and job.status in (JobStatus.FAILED, JobStatus.ERRORED),
        "may_upload": may_run,
    }


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
        if not count:
            return "none"
        text = "the row error" if count == 1 else f"all {count} row errors"
        return changelist_link(RowError, text, file__id__exact=obj.pk)


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


class InboxEventInline(ReadOnlyInline):
    model = InboxEvent
    formset = FirstRowsInlineFormSet
    fields = ("at", "status", "message", "worker")
    readonly_fields = fields
    show_change_link = False
    verbose_name = "step"
    verbose_name_plural = f"history (the first {INLINE_ROW_LIMIT} steps)"


@admin.register(InboxFile)
class InboxFileAdmin(AuditRecordAdmin):
    """Each file a scan found in an inbox, with its history: seen, claimed, taken into a job (and what became of it).

    The scans alone write these rows: nobody adds, changes or deletes one here, superusers included.
    """

    list_display = (
        "connection",
        "name",
        "status",
        "size_display",
        "first_seen",
        "last_seen",
        "job_link",
        "outcome",
    )
    list_filter = ("connection", "status")
    search_fields = ("name",)
    date_hierarchy = "first_seen"
    list_select_related = ("connection", "job", "import_file")
    show_full_result_count = False
    fields = (
        "connection",
        "name",
        "status",
        "message",
        "size_display",
        "modified",
        "first_seen",
        "last_seen",
        "claimed_by",
        "claimed_at",
        "left_inbox_at",
        "job_link",
        "import_file_link",
        "outcome",
    )
    readonly_fields = fields
    inlines = (InboxEventInline,)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="size", ordering="size")
    def size_display(self, obj):
        return filesizeformat(obj.size)

    @admin.display(description="job", ordering="job")
    def job_link(self, obj):
        if obj.job_id is None:
            return "-"
        return format_html(
            '<a href="{}">import job #{}</a>', reverse("admin:impex_importjob_change", args=[obj.job_id]), obj.job_id
        )

    @admin.display(description="import file")
    def import_file_link(self, obj):
        if obj.import_file_id is None:
            return "-"
        url = reverse("admin:impex_importfile_change", args=[obj.import_file_id])
        return format_html('<a href="{}">{}</a>', url, obj.import_file.name)

    @admin.display(description="outcome")
    def outcome(self, obj):
        return Truncator(inbox_outcome(obj)).chars(200)


@admin.register(ApiToken)
class ApiTokenAdmin(AuditRecordAdmin):
    """A connection's API tokens: shown by their first characters only (the hub keeps a hash), revoked here."""

    list_display = ("prefix_display", "connection", "created_at", "created_by", "last_used_at", "revoked")
    list_filter = ("connection", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("prefix", "connection__code")
    list_select_related = ("connection",)
    readonly_fields = ("prefix", "connection", "created_at", "created_by", "last_used_at", "revoked_at", "revoked_by")
    fields = readonly_fields
    actions = ("revoke",)

    def has_revoke_permission(self, request):
        return request.user.has_perm("impex.change_apitoken")

    @admin.display(description="Token", ordering="prefix")
    def prefix_display(self, obj):
        return f"{obj.prefix}…"

    @admin.display(description="Revoked")
    def revoked(self, obj):
        if obj.revoked_at is None:
            return "-"
        return f"{date_format(timezone.localtime(obj.revoked_at), 'SHORT_DATETIME_FORMAT')} by {obj.revoked_by or '?'}"

    @admin.action(description="Revoke selected tokens (they stop working at once)", permissions=["revoke"])
    def revoke(self, request, queryset):
        done = sum(api_token_revoke(token=token, by=request.user.get_username()) for token in queryset)
        self.message_user(request, f"{done} token{pluralize(done)} revoked.", messages.SUCCESS)


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
