"""Turn a file or zip uploaded in the browser into a queued import job, and a dry run into a real one."""

from contextlib import ExitStack
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q
from django.template.defaultfilters import filesizeformat

from impex.choices import FileStatus, GroupDirection, JobSource, JobStatus
from impex.exceptions import ImpexError, LocationRefused
from impex.models import Connection, DataGroup, ImportFile, ImportJob, Problem
from impex.services.jobs import job_create
from impex.services.lifecycle import job_enqueue, job_rerun
from impex.services.problems import problem_resolve
from impex.storage import file_exists, local_copy, resolve_path, temporary_folder


class UploadRefused(ImpexError):
    """An upload that cannot become a job (too big, empty, the wrong group); nothing was stored."""


def upload_limit() -> int:
    """Return the largest upload the browser may send, in bytes."""
    return settings.IMPEX_MAX_UPLOAD_BYTES


def upload_check(*, upload: UploadedFile, group: DataGroup | None) -> None:
    """Refuse an upload that is empty, too big, or sent to an export group."""
    if group is not None and group.direction != GroupDirection.IMPORT:
        raise UploadRefused(f"{group.code} is an export group: upload to an import group.")
    if upload.size == 0:
        raise UploadRefused(f"{upload.name} is empty.")
    if upload.size > upload_limit():
        raise UploadRefused(upload_too_big(name=upload.name, size=upload.size))


def upload_too_big(*, name: str, size: int | None) -> str:
    """Return why an upload over the limit is refused (size None: it was stopped while it streamed in)."""
    said = f"{name} is {filesizeformat(size)}" if size is not None else f"{name} was stopped and nothing of it kept"
    return (
        f"{said}; an upload may be up to {filesizeformat(upload_limit())} (IMPEX_MAX_UPLOAD_BYTES). "
        "Put bigger files in the connection's inbox."
    )


def job_upload(
    *, upload: UploadedFile, group: DataGroup | None, connection: Connection | None, dry_run: bool, user: str
) -> ImportJob:
    """Store an uploaded file or zip as a new job of the admin and queue it; it runs in the cluster."""
    upload_check(upload=upload, group=group)
    with temporary_folder() as folder:
        if hasattr(upload, "temporary_file_path"):
            path = Path(upload.temporary_file_path())
        else:
            path = Path(folder) / "upload"
            with open(path, "wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
        with transaction.atomic():
            job = job_create(
                paths=[path],
                names=[upload.name],
                connection=connection,
                group=group,
                dry_run=dry_run,
                source=JobSource.ADMIN,
                created_by=user,
            )
            job_enqueue(job=job, reason=f"uploaded by {user}" if user else "uploaded")
    return job


def _still_kept(f: ImportFile) -> bool:
    """Tell whether a job's file is still kept; UploadRefused if it is kept where the hub may no longer go."""
    try:
        return file_exists(*resolve_path(f.path))
    except LocationRefused as exc:  # an archive or error folder saved before the location rules (impex.locations)
        raise UploadRefused(f"{f.name} cannot be read again: {exc}.") from exc


def job_run_for_real(*, job: ImportJob, user: str) -> ImportJob:
    """Queue a real import of what a dry run was given, from the dry run's own copy of the upload."""
    if not job.dry_run:
        raise UploadRefused(f"Import job #{job.pk} is not a dry run.")
    if job.status not in (JobStatus.COMPLETED, JobStatus.FAILED):
        raise UploadRefused(f"Import job #{job.pk} is {job.status}: wait until the dry run has ended.")
    uploaded = list(job.files.filter(archive="").exclude(path="").order_by("pk"))
    if not uploaded or any(not _still_kept(f) for f in uploaded):
        raise UploadRefused(f"The upload of import job #{job.pk} is no longer kept: upload the files again.")
    with transaction.atomic():
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        earlier = locked.real_runs.order_by("pk").first()
        if earlier is not None:
            return earlier  # a second click (or a second tab) gets the run the first one started
        with ExitStack() as stack:
            # The connection the dry run was given, or found from the file names: the same either way.
            real = job_create(
                paths=[stack.enter_context(local_copy(*resolve_path(f.path))) for f in uploaded],
                names=[f.name for f in uploaded],
                connection=job.connection,
                group=job.group,
                dry_run=False,
                source=JobSource.ADMIN,
                created_by=user,
            )
        real.dry_run_of = job
        real.save(update_fields=["dry_run_of"])
        job_enqueue(job=real, reason=f"dry run #{job.pk} run for real by {user}")
    return real


def job_run_again(*, job: ImportJob, user: str) -> ImportJob:
    """Run a job again: resume one that errored (or whose worker died); import a failed one's files anew.

    A failed job's files have ended (imported, rejected): a new job takes the same files from where they are
    kept now (archive or error folder), so what was rejected for a reason since fixed (a connection created,
    a descriptor corrected) goes in, and what was imported is skipped as a duplicate.
    """
    if job_rerun(job=job, by=user):
        return job
    if job.status != JobStatus.FAILED or job.dry_run:
        raise UploadRefused(
            f"Import job #{job.pk} is {job.status}: only a job that failed or errored, or whose worker stopped "
            "renewing its lease, runs again."
        )
    files = [f for f in job.files.exclude(path="").exclude(status=FileStatus.UNPACKED).order_by("pk") if _still_kept(f)]
    if not files:
        raise UploadRefused(f"The files of import job #{job.pk} are no longer kept: upload them again.")
    with transaction.atomic(), ExitStack() as stack:
        again = job_create(
            paths=[stack.enter_context(local_copy(*resolve_path(f.path))) for f in files],
            names=[f.name for f in files],
            connection=job.connection,
            group=job.group,
            source=JobSource.ADMIN,
            created_by=user,
        )
        job_enqueue(job=again, reason=f"job #{job.pk} run again by {user}")
        # The failed job never completes: the person who ran it again acted on its problem; the new job raises its own.
        problem_resolve(
            problems=Problem.objects.filter(Q(key=f"job:{job.pk}") | Q(key__startswith=f"job:{job.pk}:")), by=user
        )
    return again
