"""Connections in the admin: the list with their scans, a connection's page, "Sync now", deleting; the files
the scans find in the inboxes, and the connections' API tokens."""

from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import actions as admin_actions
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, F, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import (
    Http404,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.defaultfilters import filesizeformat, pluralize
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator, capfirst

from config.adminkit import (
    INLINE_ROW_LIMIT,
    AuditRecordAdmin,
    CountedDeleteMixin,
    FirstRowsInlineFormSet,
    LocationFieldsAdminMixin,
    ReadOnlyInline,
    changelist_link,
    permission_check,
)
from impex.admin.connection_form import ConnectionForm
from impex.admin.display import when_text
from impex.admin.full_sync import FULL_SYNC_PERMISSION, full_sync_page
from impex.admin.jobs import UploadLinkMixin
from impex.admin.tokens import ConnectionTokensAdminMixin
from impex.choices import (
    FileStatus,
    InboxStatus,
)
from impex.exceptions import ConnectionDeleteRefused
from impex.models import (
    ApiToken,
    Connection,
    ImportedFileName,
    ImportFile,
    ImportJob,
    InboxEvent,
    InboxFile,
)
from impex.registry import sync_logs
from impex.selectors.pages import connection_inbox, connections_next_scan
from impex.selectors.statuses import TONES, WAITING, jobs_with_shown_status, sequence_wait_release
from impex.services.connections import connection_delete, connection_delete_check
from impex.services.full_sync import full_sync_exports_by_entity
from impex.services.inbox import inbox_scan_start
from impex.services.scan_loop import scan_loop_running
from impex.services.schedules import schedules_sync_on_commit
from impex.services.tokens import api_token_revoke
from impex.services.waits import HELD_FOR_WINDOW, WAITING_FOR_SEQUENCE, connection_release_wait

# The connections list counts the files rejected this far back; the connection's page lists this many inbox files.
REJECTED_RECENTLY = timedelta(days=7)
INBOX_FILES_SHOWN = 20
# Cluster workers a hub with connections scanned every few seconds wants: the scan loop, a pass, an import.
FAST_SCAN_WORKERS = 3


def _count_of(queryset, *, by: str) -> Coalesce:
    """Count, in a subquery, the rows of queryset (filtered on by=OuterRef("pk")) for each outer row; 0 if none."""
    counted = queryset.order_by().values(by).annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


class ConnectionChangeList(ChangeList):
    """The connections list: the page's connections get their next scan from their schedules in one query."""

    def get_results(self, request):
        super().get_results(request)
        next_scans = connections_next_scan(connections=self.result_list)
        looping = any(conn.scan_seconds for conn in self.result_list) and scan_loop_running()
        for conn in self.result_list:
            conn.next_scan_at = next_scans.get(conn.pk)
            conn.scan_loop_running = looping


# Who may choose a connection's import groups (each group's connection is the group's field).
GROUPS_PERMISSION = "impex.change_datagroup"


@admin.register(Connection)
class ConnectionAdmin(
    ConnectionTokensAdminMixin, UploadLinkMixin, LocationFieldsAdminMixin, CountedDeleteMixin, admin.ModelAdmin
):
    """Connections: the form runs Connection.clean(), which holds their rules; deleting goes through the service.

    The list shows each connection's scans at a glance (on or off, the last one and the next one) and what waits
    for attention: files waiting or held, files rejected lately, open sync errors; all in the page's few queries.
    """

    form = ConnectionForm
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
    has_full_sync_permission = permission_check(FULL_SYNC_PERMISSION)

    def get_changelist(self, request, **kwargs):
        return ConnectionChangeList

    def get_queryset(self, request):
        # A dry run's files are a preview: they are never imported, so they neither wait nor fail for real.
        real = ImportFile.objects.filter(connection=OuterRef("pk"), job__dry_run=False)
        waiting = real.filter(status=FileStatus.WAITING)
        rejected = real.filter(status=FileStatus.REJECTED, finished_at__gte=self.rejected_since())
        last_scan_job = jobs_with_shown_status(ImportJob.objects.filter(pk=OuterRef("state__last_scan_job_id")))
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_scan_at=F("state__last_scan_at"),
                last_scan_ok=F("state__last_scan_ok"),
                last_scan_message=F("state__last_scan_message"),
                last_scan_job_id=F("state__last_scan_job_id"),
                last_scan_job_status=Subquery(last_scan_job.values("shown_status")[:1]),
                last_scan_job_waiting=Subquery(last_scan_job.values("waiting_reason")[:1]),
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
        return obj.scan_every

    @admin.display(description="last scan", ordering="last_scan_at")
    def last_scan(self, obj):
        if obj.scan_until and obj.scan_until > timezone.now():
            return format_html(
                '<span class="impex-scan-busy">scanning now</span><div class="help">{}</div>', obj.scan_by
            )
        if obj.last_scan_at is None:
            return "never"
        return scan_result(
            at=obj.last_scan_at,
            ok=obj.last_scan_ok,
            message=obj.last_scan_message,
            job_id=obj.last_scan_job_id,
            job_status=obj.last_scan_job_status,
            waiting=obj.last_scan_job_waiting,
        )

    @admin.display(description="next scan")
    def next_scan(self, obj):
        at = getattr(obj, "next_scan_at", None)
        if not (obj.active and obj.scan_enabled):
            return "-"
        if obj.scan_seconds:
            return fast_next_scan(obj, looping=getattr(obj, "scan_loop_running", False))
        if at is None:
            return "not scheduled yet"
        return when_text(at)

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
        url = sync_logs().admin_links(connection_id=obj.pk)["errors"]
        return format_html('<a href="{}">{}</a>', url, obj.sync_error_count)

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
        release = path(
            "<path:object_id>/release-wait/",
            self.admin_site.admin_view(self.release_wait_view),
            name="impex_connection_release_wait",
        )
        full_sync = path(
            "<path:object_id>/full-sync/",
            self.admin_site.admin_view(self.full_sync_view),
            name="impex_connection_full_sync",
        )
        return [sync, release, full_sync, *super().get_urls()]

    def full_sync_view(self, request, object_id):
        """'Trigger a data sync': the confirmation with the entity to choose (GET), the full sync (POST)."""
        if not (self.has_view_or_change_permission(request) and self.has_full_sync_permission(request)):
            raise PermissionDenied
        conn = self.get_object(request, unquote(object_id))
        if conn is None:
            raise Http404("No such connection.")
        return full_sync_page(
            self,
            request,
            connection=conn,
            exports=full_sync_exports_by_entity(connection=conn),
            obj=conn,
            object_url=reverse("admin:impex_connection_change", args=[conn.pk]),
        )

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
            if self.has_full_sync_permission(request):
                extra["full_sync_url"] = reverse("admin:impex_connection_full_sync", args=[conn.pk])
        return super().change_view(request, object_id, form_url, extra_context={**extra, **(extra_context or {})})

    @admin.action(
        description="Release the sequence wait (import waiting files without the missing ones)",
        permissions=["run_import"],
    )
    def release_sequence_wait(self, request, queryset):
        """Ask first, naming what each connection's release skips for good; release on the confirmed POST."""
        releases = [sequence_wait_release(connection=conn) for conn in queryset]
        if request.POST.get("post") != "yes":
            return self.release_confirmation(request, releases, action=True)
        for release in releases:
            self.release_confirmed(request, release)
        return None

    def release_wait_view(self, request, object_id):
        """A connection's "Release the sequence wait": the confirmation (GET), the release (POST, impex.run_import)."""
        if not (self.has_view_or_change_permission(request) and self.has_run_import_permission(request)):
            raise PermissionDenied
        conn = self.get_object(request, unquote(object_id))
        if conn is None:
            raise Http404("No such connection.")
        release = sequence_wait_release(connection=conn)
        if request.method != "POST" or request.POST.get("post") != "yes":
            return self.release_confirmation(request, [release], action=False)
        job = self.release_confirmed(request, release)
        if job is not None:
            return HttpResponseRedirect(reverse("admin:impex_importjob_change", args=[job.pk]))
        return HttpResponseRedirect(reverse("admin:impex_connection_change", args=[conn.pk]))

    def release_confirmation(self, request, releases, *, action: bool):
        """The page that names, per connection, the sequences a release skips and the files it imports."""
        context = {
            **self.admin_site.each_context(request),
            "title": "Release the sequence wait?",
            "opts": self.model._meta,
            "releases": releases,
            "any_going_in": any(release.going_in for release in releases),
            "action": action,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/impex/connection/release_wait.html", context)

    def release_confirmed(self, request, release) -> ImportJob | None:
        """Release a connection's wait as its confirmation named it; refuse if what waits has changed since."""
        conn = release.connection
        if not release.going_in:
            self.message_user(request, f"{conn.code}: no file is waiting for a sequence; nothing was released.")
            return None
        named = request.POST.get(f"sequence_{conn.pk}", "")
        if named != str(release.first_sequence):
            self.message_user(
                request,
                f"{conn.code}: the files waiting have changed since the confirmation was shown; nothing was released. "
                "Look at what the release would skip now and confirm again.",
                messages.ERROR,
            )
            return None
        job = connection_release_wait(connection=conn, created_by=request.user.get_username())
        if job is None:
            self.message_user(request, f"{conn.code}: no file is waiting.", messages.WARNING)
            return None
        self.log_change(request, conn, f"Sequence wait released: {release.skipped_text or 'no sequence'} skipped.")
        skipped = f"{release.skipped_text} skipped for good" if release.skipped else "no sequence skipped"
        self.message_user(
            request,
            f"{conn.code}: wait released ({skipped}); import job #{job.pk} is queued to import the waiting files.",
            messages.SUCCESS,
        )
        return job

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
            # The import groups are the groups' own field, saved with the form's relations (ConnectionForm).
            obj.save(update_fields=[*(name for name in form.changed_data if name != "groups"), "updated_at"])
        else:
            obj.save()
        schedules_sync_on_commit()
        if obj.scan_seconds and settings.Q_CLUSTER["workers"] < FAST_SCAN_WORKERS:
            self.message_user(
                request,
                f"{obj.code} is scanned every {obj.scan_seconds} s by the scan loop, which keeps one cluster worker "
                f"busy: with Q_WORKERS={settings.Q_CLUSTER['workers']}, imports may wait behind a pass. Give the "
                f"clusters {FAST_SCAN_WORKERS} or more workers (README: Scans every few seconds).",
                messages.WARNING,
            )

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
        (None, {"fields": ("code", "name", "convention", "company_name", "integration_id", "groups", "active")}),
        (
            "Inbox and schedule",
            {
                "fields": (
                    "inbox",
                    "scan_enabled",
                    "interval_minutes",
                    "scan_cron",
                    "scan_seconds",
                    "timezone",
                    "contacts",
                )
            },
        ),
        ("Folders", {"fields": ("archive_folder", "error_folder", "outbox")}),
        ("Kore sequence", {"fields": ("next_expected_sequence", "sequence_wait_alert_minutes")}),
        ("Full refresh window", {"fields": ("full_window_start", "full_window_end")}),
        ("Activity", {"fields": ("activity", "created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request, obj=None):
        readonly = tuple(super().get_readonly_fields(request, obj))
        # A connection's import groups are the groups' own field (DataGroup.connection): choosing them changes
        # groups, which needs the permission to change groups, not only this connection's.
        if "groups" not in readonly and not request.user.has_perm(GROUPS_PERMISSION):
            readonly += ("groups",)
        return readonly

    @admin.display(description="Import groups")
    def groups(self, obj):
        """Show the import groups read-only (to those who may only view), as the form's field names them."""
        return ", ".join(g.code for g in obj.import_groups()) or "-"

    @admin.display(description="records")
    def activity(self, obj):
        if obj.pk is None:
            return "-"
        return format_html(
            "{} &middot; {} &middot; {} &middot; {}",
            changelist_link(ImportJob, "import jobs", connection__id__exact=obj.pk),
            changelist_link(ImportFile, "files", connection__id__exact=obj.pk),
            changelist_link(ImportedFileName, "imported file names", connection__id__exact=obj.pk),
            format_html('<a href="{}">sync logs</a>', sync_logs().admin_links(connection_id=obj.pk)["logs"]),
        )


def fast_next_scan(conn: Connection, *, looping: bool) -> str:
    """Say when a connection scanned every few seconds is scanned next: by the running scan loop, or when one starts."""
    if looping:
        return f"within {conn.scan_seconds} s (scan loop running)"
    return "when the scan loop starts (each minute; it needs the cluster running)"


def scan_result(
    *, at, ok: bool | None, message: str, job_id: int | None, job_status: str | None = None, waiting: str = ""
):
    """Render a scan's time and outcome (its message as the tooltip and below), with a link to the job it started
    and that job's shown status; a scan whose job has a file still waiting says what it waits for, not "ok"."""
    if ok and job_status == WAITING and waiting:
        outcome = format_html(
            '<span class="impex-badge impex-badge-warn" title="{}">{}</span>', message, capfirst(waiting)
        )
    else:
        word = "ok" if ok else "failed"
        outcome = format_html('<span class="impex-scan-{}" title="{}">{}</span>', word, message, word)
    job = ""
    if job_id:
        badge = ""
        if job_status and job_status != WAITING:
            badge = format_html(
                ' <span class="impex-badge impex-badge-{}" data-status="{}">{}</span>',
                TONES.get(job_status, "busy"),
                job_status,
                capfirst(job_status),
            )
        url = reverse("admin:impex_importjob_change", args=[job_id])
        job = format_html(' &middot; <a href="{}">job #{}</a>{}', url, job_id, badge)
    return format_html('{} {}{}<div class="help">{}</div>', when_text(at), outcome, job, Truncator(message).chars(120))


def inbox_outcome(f: InboxFile) -> str:
    """Say what became of an inbox file's copy in its job: the import file's status and message ("rejected: why")."""
    if f.import_file is None:
        return f.message if f.status in (InboxStatus.SEEN, InboxStatus.CLAIMED, InboxStatus.GONE) else "-"
    status, message = f.import_file.status, f.import_file.message
    return f"{status}: {message}" if message else status


def last_scan_job_status(job_id: int | None) -> dict:
    """Return the shown status and waiting reason of a scan's job, as scan_result takes them."""
    if job_id is None:
        return {}
    job = jobs_with_shown_status(ImportJob.objects.filter(pk=job_id)).values("shown_status", "waiting_reason").first()
    return {"job_status": job["shown_status"], "waiting": job["waiting_reason"]} if job else {}


def connection_page_context(request, conn: Connection, *, may_sync: bool) -> dict:
    """Gather what a connection's page shows besides its fields: "Sync now", its scans, its latest inbox files."""
    context = {"sync_now_url": reverse("admin:impex_connection_sync_now", args=[conn.pk]) if may_sync else ""}
    if not request.user.has_perm("impex.view_inboxfile"):
        return context
    inbox = connection_inbox(connection=conn, limit=INBOX_FILES_SHOWN)
    state, schedule = inbox.state, inbox.next_scan_at
    context["inbox"] = {
        "scans": conn.scan_every if conn.active and conn.scan_enabled else "off",
        "last_scan": scan_result(
            at=state.last_scan_at,
            ok=state.last_scan_ok,
            message=state.last_scan_message,
            job_id=state.last_scan_job_id,
            **last_scan_job_status(state.last_scan_job_id),
        )
        if state is not None and state.last_scan_at
        else "never",
        "next_scan": _page_next_scan(conn, schedule),
        "files": [{"file": f, "outcome": inbox_outcome(f)} for f in inbox.files],
        "shown": INBOX_FILES_SHOWN,
        "list_url": f"{reverse('admin:impex_inboxfile_changelist')}?connection__id__exact={conn.pk}",
    }
    return context


def _page_next_scan(conn: Connection, schedule) -> str:
    if not (conn.active and conn.scan_enabled):
        return "-"
    if conn.scan_seconds:
        return fast_next_scan(conn, looping=scan_loop_running())
    return when_text(schedule) if schedule else "-"


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
