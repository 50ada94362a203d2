"""The hub's own endpoints (SPEC section 10): a connection's open problems (section 8), files pushed to import and
the jobs that import them, and "trigger a data sync"."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import exceptions, parsers, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from impex.api_schema import responses
from impex.choices import FileStatus, JobStatus, ProblemKind
from impex.entities import entity_choices
from impex.exceptions import FullSyncRefused, UnknownEntity
from impex.middleware import size_text
from impex.models import DataGroup, ImportFile, ImportJob
from impex.selectors import job_report
from impex.services.full_sync import full_sync_trigger
from impex.services.problems import problems_open
from impex.services.uploads import UploadRefused, job_push, push_group, upload_limit
from impex.uploadhandler import FORM_FIELDS_BYTES, upload_stopped

MAX_PROBLEMS = 1000


class ProblemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ProblemKind.choices)
    message = serializers.CharField()
    since = serializers.DateTimeField()
    url = serializers.CharField(help_text="The hub's admin page where a person acts on it (retry, release, run again).")


class ProblemListSerializer(serializers.Serializer):
    results = ProblemSerializer(many=True)


class ProblemsView(APIView):
    """List what fails for the caller's connection and waits for a person (newest first, at most 1000)."""

    @extend_schema(
        responses=responses({200: ProblemListSerializer}, bad_body=False),
        summary="Open problems of the caller's connection",
    )
    def get(self, request):
        rows = problems_open(connection=request.user.connection)[:MAX_PROBLEMS]
        return Response(ProblemListSerializer({"results": rows}).data)


# -- POST /api/files/ and GET /api/jobs/{id}/ ------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.BINARY)
class UploadField(serializers.FileField):
    """A file sent as a part of a multipart body (the schema says binary, not a URL as for a file read back)."""


class FilePushSerializer(serializers.Serializer):
    file = UploadField(
        max_length=ImportFile._meta.get_field("name").max_length,
        help_text="A data file, or a zip of data files, named as the connection's convention says (SPEC section 3).",
    )
    group = serializers.CharField(
        required=False,
        max_length=DataGroup._meta.get_field("code").max_length,
        help_text="Code of an import group of the connection (or of none) whose descriptors the files are matched "
        "to; without it, each file is matched to the connection's descriptors by its name.",
    )
    dry_run = serializers.BooleanField(
        required=False, default=False, help_text="Check and count everything, write nothing."
    )


class RowErrorOutSerializer(serializers.Serializer):
    row = serializers.IntegerField(allow_null=True, help_text="Null: the whole file was rejected for this reason.")
    column = serializers.CharField(allow_blank=True)
    value = serializers.CharField(allow_blank=True)
    message = serializers.CharField()


class JobFileOutSerializer(serializers.Serializer):
    """One file of a job, as `impex_import --json` reports it (SPEC section 9)."""

    name = serializers.CharField()
    descriptor = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=FileStatus.choices)
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    retired = serializers.IntegerField()
    failed = serializers.IntegerField()
    errors = RowErrorOutSerializer(many=True, help_text="The first 100 errors of the file.")


class JobOutSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    dry_run = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    files = JobFileOutSerializer(many=True)


class FilePushView(APIView):
    """A file or zip pushed by the token's connection: checked as an upload is, stored, and queued at once."""

    parser_classes = [parsers.MultiPartParser]

    @classmethod
    def body_limit(cls) -> tuple[int, str]:
        """The largest body read (impex.middleware): an upload's limit and the form's other fields."""
        return upload_limit() + FORM_FIELDS_BYTES, (
            f"IMPEX_MAX_UPLOAD_BYTES ({size_text(upload_limit())}) and {size_text(FORM_FIELDS_BYTES)} for the "
            "form's other fields"
        )

    @extend_schema(
        request={"multipart/form-data": FilePushSerializer},
        responses=responses(
            {202: inline_serializer("FileAccepted", {"job": serializers.IntegerField()})}, too_big=True
        ),
        summary="Push a file or zip to import: checked as an upload, then queued (follow it at /api/jobs/{id}/)",
    )
    def post(self, request):
        connection = request.user.connection
        data = request.data  # parsed here, so that an upload stopped at the limit is known below
        stopped = upload_stopped(request)
        if stopped:
            return Response({"detail": stopped}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        push = FilePushSerializer(data=data)
        push.is_valid(raise_exception=True)
        fields = push.validated_data
        try:
            group = push_group(code=fields["group"], connection=connection) if "group" in fields else None
        except UploadRefused as exc:
            raise exceptions.ValidationError({"group": exc.problems}) from exc
        try:
            job = job_push(
                upload=fields["file"], connection=connection, group=group, dry_run=fields["dry_run"], token=request.auth
            )
        except UploadRefused as exc:
            raise exceptions.ValidationError({"file": exc.problems}) from exc
        return Response({"job": job.pk}, status=status.HTTP_202_ACCEPTED)


class JobView(APIView):
    """One import job of the caller's connection: its status and each file's result."""

    @extend_schema(
        parameters=[OpenApiParameter("job_id", int, OpenApiParameter.PATH, description="The job's id.")],
        responses=responses(
            {200: JobOutSerializer}, bad_body=False, not_found="No such job, or one of another connection."
        ),
        summary="Read an import job: its status and, per file, what impex_import --json says",
    )
    def get(self, request, job_id):
        connection = request.user.connection
        job = ImportJob.objects.filter(pk=_job_number(job_id), connection=connection).first()
        if job is None:  # another connection's job is not told apart from none
            raise exceptions.NotFound(f"connection {connection.code} has no import job #{job_id}")
        return Response(
            {**job_report(job), "dry_run": job.dry_run, "created_at": job.created_at, "finished_at": job.finished_at}
        )


def _job_number(text: str) -> int | None:
    """Return a job id written in a URL, or None if it is not one (so that it matches no job)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None


class FullSyncStartedSerializer(serializers.Serializer):
    full_sync = serializers.IntegerField(help_text="The full sync's id (the hub's record of it).")
    entity = serializers.CharField()
    exports = serializers.ListField(
        child=serializers.CharField(), help_text="The codes of the scheduled export groups that run in full."
    )
    started_at = serializers.DateTimeField(help_text="When the full sync started: its sync log started over then.")
    joined = serializers.BooleanField(
        help_text="True: a full sync of the entity was already under way; it goes on, nothing was started twice."
    )


class FullSyncView(APIView):
    """Trigger a data sync: the entity's sync log starts over and the connection's scheduled exports of it run in
    full (every record, the watermark reset); last_full_sync is set once the last of them has written its file."""

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter(
                "entity",
                str,
                OpenApiParameter.PATH,
                enum=[n for n, _ in entity_choices()],
                description="The entity's name, as in the sync logs.",
            )
        ],
        responses=responses(
            {
                202: FullSyncStartedSerializer,
                409: OpenApiResponse(
                    inline_serializer("FullSyncRefused", {"detail": serializers.CharField()}),
                    description="One of the connection's scheduled exports of the entity cannot export (its "
                    "destination, its descriptor). Nothing was started.",
                ),
            },
            bad_body=False,
            not_found=True,
        ),
        summary="Trigger a data sync: the entity's scheduled exports run once in full",
    )
    def post(self, request, entity):
        connection = request.user.connection
        try:
            started = full_sync_trigger(connection=connection, entity=entity, by=f"api: {connection.code}")
        except UnknownEntity as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        except FullSyncRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        full_sync = started.full_sync
        body = {
            "full_sync": full_sync.pk,
            "entity": full_sync.entity,
            "exports": started.exports,
            "started_at": full_sync.created_at,
            "joined": started.joined,
        }
        return Response(FullSyncStartedSerializer(body).data, status=status.HTTP_202_ACCEPTED)
