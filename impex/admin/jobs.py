"""Import jobs in the admin: the list, the live job page, uploads, downloads, running jobs again; their files,
chunks, events and row errors (read-only), and the ledger of imported file names."""

from functools import partial
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
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
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import content_disposition_header
from django.utils.text import capfirst

from config.adminkit import (
    INLINE_ROW_LIMIT,
    AuditRecordAdmin,
    FirstRowsInlineFormSet,
    PermissionMissing,
    ReadOnlyInline,
    changelist_link,
    format_duration,
    permission_check,
)
from impex.admin.display import when_text
from impex.choices import (
    JOB_CANCELLABLE,
    FileStatus,
    GroupDirection,
    JobStatus,
)
from impex.exceptions import JobNotCancellable, LocationRefused
from impex.forms import UploadForm
from impex.models import (
    ImportChunk,
    ImportedFileName,
    ImportEvent,
    ImportFile,
    ImportJob,
    RowError,
)
from impex.selectors import jobs_with_file_totals
from impex.selectors.statuses import (
    SHOWN_STATUSES,
    job_shown_status,
    jobs_of_shown_status,
    jobs_with_shown_status,
    shown_status_label,
    shown_status_tone,
)
from impex.services.lifecycle import job_cancel
from impex.services.progress import COUNTS, file_status_label, job_files, job_progress
from impex.services.rejected import NoRejectedRows, rejected_rows_available, rejected_rows_download, rejected_rows_name
from impex.services.uploads import UploadRefused, job_run_again, job_run_for_real, job_upload
from impex.services.waits import WAITING_FOR_SEQUENCE
from impex.storage import open_file, resolve_path
from impex.uploadhandler import upload_stopped

ERRORS_PER_PAGE = 50


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


def status_badge(job: ImportJob):
    """Render a job's shown status as a coloured badge (the words of impex.selectors.statuses)."""
    return format_html(
        '<span class="impex-badge impex-badge-{}" data-status="{}">{}</span>',
        shown_status_tone(job),
        job_shown_status(job),
        shown_status_label(job),
    )


@admin.display(description="status")
def status(job: ImportJob):
    """The job page's status field (class field-status): the shown status, not the stored one."""
    return status_badge(job)


class JobShownStatusFilter(admin.SimpleListFilter):
    """Jobs by the status they are shown with (completed with errors and waiting told apart from completed)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(word, capfirst(word)) for word in SHOWN_STATUSES]

    def queryset(self, request, queryset):
        if self.value() in SHOWN_STATUSES:
            return jobs_of_shown_status(queryset, self.value())
        return queryset


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

    actions = ("run_again", "cancel")
    has_run_import_permission = permission_check("impex.run_import")
    change_list_template = "admin/impex/importjob/change_list.html"
    change_form_template = "admin/impex/importjob/change_form.html"

    @admin.action(
        description="Run again (jobs that failed, errored or were cancelled, or whose worker died)",
        permissions=["run_import"],
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

    @admin.action(
        description="Cancel (queued or running jobs; running them again finishes them)", permissions=["run_import"]
    )
    def cancel(self, request, queryset):
        by = request.user.get_username()
        done, skipped = [], []
        for pk in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                (done if job_cancel(job_id=pk, by=by) else skipped).append(pk)
            except JobNotCancellable:
                skipped.append(pk)
        if done:
            self.message_user(request, f"Cancelled: {_job_list(done)}.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"Not cancelled (not queued or running): {_job_list(skipped)}.", messages.WARNING
            )

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
    list_filter = (JobShownStatusFilter, JobDryRunFilter, "source", "connection", "created_at")
    list_select_related = ("connection", "group")
    search_fields = ("=id", "created_by", "files__name")
    date_hierarchy = "created_at"
    fields = (
        status,
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
        return jobs_with_file_totals(jobs_with_shown_status(super().get_queryset(request)))

    @admin.display(description="job", ordering="-created_at")
    def job_display(self, obj):
        return format_html(
            '#{}<div class="help" style="white-space: nowrap">{}</div>',
            obj.pk,
            when_text(obj.created_at),
        )

    @admin.display(description="source, by", ordering="source")
    def started_by(self, obj):
        return format_html('{}<div class="help">{}</div>', obj.get_source_display(), obj.created_by or "-")

    @admin.display(description="connection, group", ordering="connection__code")
    def where(self, obj):
        return format_html(
            '{}<div class="help">{}</div>', obj.connection or "-", obj.group.code if obj.group_id else "no group"
        )

    @admin.display(description="status", ordering="shown_status")
    def status_display(self, obj):
        return status_badge(obj)

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
            path("<int:job_id>/cancel/", view(self.cancel_view), name="impex_importjob_cancel"),
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
            raise PermissionMissing("impex.run_import", to="upload files and run imports")

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
        return self._new_job_view(
            request,
            job_id,
            job_run_for_real,
            lambda job, real: f"Dry run #{job.pk} is queued for real as import job #{real.pk}.",
        )

    def run_again_view(self, request, job_id: int):
        """Run a failed or errored job again (POST)."""
        return self._new_job_view(request, job_id, job_run_again, _queued_message)

    def cancel_view(self, request, job_id: int):
        """Cancel a queued or running job (POST, impex.run_import); a GET shows the page that asks to confirm."""
        self._require_run_import(request)
        job = self._job_or_404(request, job_id)
        back = HttpResponseRedirect(reverse("admin:impex_importjob_change", args=[job.pk]))
        if request.method == "POST":
            try:
                cancelled = job_cancel(job_id=job.pk, by=request.user.get_username())
            except JobNotCancellable as exc:
                self.message_user(request, f"{capfirst(str(exc))}.", messages.WARNING)
                return back
            if cancelled:
                self.message_user(
                    request,
                    f"Import job #{job.pk} is cancelled: its workers stop at their next chunk; what it imported stays, "
                    "and running it again finishes it.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, f"Import job #{job.pk} was cancelled already.", messages.INFO)
            return back
        if job.status not in JOB_CANCELLABLE:
            self.message_user(
                request,
                f"Import job #{job.pk} is {job.status}: only a queued or running job can be cancelled.",
                messages.WARNING,
            )
            return back
        context = {
            **self.admin_site.each_context(request),
            "title": f"Cancel import job #{job.pk}?",
            "opts": self.model._meta,
            "job": job,
            "files": job_files(job),
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/impex/importjob/cancel.html", context)

    def _new_job_view(self, request, job_id: int, start, message):
        """Start a new job from a job (start(job=, user=)) on POST, then show it; a refusal shows on the old one."""
        self._require_run_import(request)
        job = self._job_or_404(request, job_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            new = start(job=job, user=request.user.get_username())
        except UploadRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:impex_importjob_change", args=[job.pk]))
        self.message_user(request, message(job, new), messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:impex_importjob_change", args=[new.pk]))

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


def _job_list(pks: list[int]) -> str:
    return ", ".join(f"#{pk}" for pk in pks)


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
    all_errors = RowError.objects.filter(file__in=[f.pk for f in files])
    errors = all_errors.select_related("file")
    chosen = {
        "file": request.GET.get("e_file", ""),
        "column": request.GET.get("e_column", "").strip(),
        "q": request.GET.get("e_q", "").strip(),
        "message": request.GET.get("e_message", "").strip(),
    }
    if chosen["file"].isdigit():
        errors = errors.filter(file_id=int(chosen["file"]))
    if chosen["column"]:
        errors = errors.filter(column=chosen["column"])
    if chosen["q"]:
        errors = errors.filter(Q(message__icontains=chosen["q"]) | Q(value__icontains=chosen["q"]))
    if chosen["message"]:
        errors = errors.filter(message=chosen["message"])
    page = Paginator(errors.order_by("file_id", "row", "id"), ERRORS_PER_PAGE).get_page(request.GET.get("e_page"))
    query = {f"e_{key}": value for key, value in chosen.items() if value}
    ended = job.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.ERRORED)
    return {
        "job": job,
        "status_badge": status_badge(job),
        "waiting": waiting_context(request, job, files),
        "error_groups": row_error_groups(all_errors),
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
        "may_run_again": may_run
        and not job.dry_run
        and job.status in (JobStatus.FAILED, JobStatus.ERRORED, JobStatus.CANCELLED),
        "may_cancel": may_run and job.status in JOB_CANCELLABLE,
        "may_upload": may_run,
    }


ERROR_GROUPS_SHOWN = 20


def row_error_groups(errors) -> list[dict]:
    """Group a job's row errors by column and message, the most frequent first, each with its count and filter."""
    groups = (
        errors.filter(row__isnull=False)
        .values("column", "message")
        .annotate(rows=Count("pk"))
        .order_by("-rows", "column", "message")[:ERROR_GROUPS_SHOWN]
    )
    return [
        {
            **group,
            "query": urlencode({"e_column": group["column"], "e_message": group["message"]}),
        }
        for group in groups
    ]


def waiting_context(request, job: ImportJob, files) -> dict:
    """What the page of a job whose files wait offers: each waiting file's page, and releasing the sequence wait."""
    waiting = [f for f in files if f.job_id == job.pk and f.status == FileStatus.WAITING]
    if not waiting:
        return {}
    may_release = request.user.has_perm("impex.run_import") and request.user.has_perm("impex.view_connection")
    conn = job.connection
    for_sequence = conn is not None and any(
        f.sequence is not None and f.message.startswith(WAITING_FOR_SEQUENCE) for f in waiting
    )
    return {
        "files": [
            {"file": f, "url": reverse("admin:impex_importfile_change", args=[f.pk])}
            if request.user.has_perm("impex.view_importfile")
            else {"file": f, "url": ""}
            for f in waiting
        ],
        "release_url": reverse("admin:impex_connection_release_wait", args=[conn.pk])
        if for_sequence and may_release
        else "",
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
