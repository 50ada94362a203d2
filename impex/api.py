"""HTTP endpoints of impex (SPEC sections 8 and 10): the caller's open problems, and "trigger a data sync"."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from impex.api_schema import responses
from impex.choices import ProblemKind
from impex.entities import entity_choices
from impex.exceptions import FullSyncRefused, UnknownEntity
from impex.services.full_sync import full_sync_trigger
from impex.services.problems import problems_open

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
                    description="Nothing to sync: the connection has no scheduled export of the entity, or one of "
                    "them cannot export. Nothing was started.",
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
