"""HTTP endpoints of the synced data (SPEC section 10): sync logs, single-record updates, extraction."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from impex.api_fields import ConnectionDateTimeField
from impex.api_schema import responses
from impex.entities import entity_choices
from syncapp import services as sync
from syncapp.extract import DEFAULT_LIMIT, EXTRACT_DESCRIPTORS, MAX_LIMIT, BadCursor, extract_page
from syncapp.models import SyncError, SyncLog
from syncapp.record_events import RecordRefused, record_event_receive

MAX_REPORTED = 10_000
EXTERNAL_ID_MAX = SyncError._meta.get_field("external_id").max_length


def _entity(name: str) -> str:
    names = [n for n, _ in entity_choices()]
    if name not in names:
        raise exceptions.NotFound(f"no entity is called '{name}' (entities: {', '.join(names)})")
    return name


class ReportedErrorSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=EXTERNAL_ID_MAX)
    message = serializers.CharField(max_length=10_000)


class SyncLogReportSerializer(serializers.Serializer):
    """What an integration reports: errors to add, external ids resolved, and when a full sync was done."""

    errors = serializers.ListField(
        child=ReportedErrorSerializer(), required=False, default=list, max_length=MAX_REPORTED
    )
    resolved = serializers.ListField(
        child=serializers.CharField(max_length=EXTERNAL_ID_MAX),
        required=False,
        default=list,
        max_length=MAX_REPORTED,
    )
    last_full_sync = ConnectionDateTimeField(required=False, allow_null=True, default=None)

    def validate_errors(self, value):
        seen = set()
        for item in value:
            if item["external_id"] in seen:
                raise serializers.ValidationError(f"external id {item['external_id']} is listed twice")
            seen.add(item["external_id"])
        return value

    def validate(self, attrs):
        both = {e["external_id"] for e in attrs["errors"]} & set(attrs["resolved"])
        if both:
            raise serializers.ValidationError(
                {"resolved": [f"listed as an error and as resolved: {', '.join(sorted(both)[:20])}"]}
            )
        return attrs


class SyncErrorOutSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    message = serializers.CharField()
    first_seen = serializers.DateTimeField(source="created_at")
    last_seen = serializers.DateTimeField(source="updated_at")


class SyncLogOutSerializer(serializers.Serializer):
    entity = serializers.CharField()
    last_full_sync = serializers.DateTimeField(allow_null=True)
    last_partial_sync = serializers.DateTimeField(allow_null=True)
    errors = SyncErrorOutSerializer(many=True)


def _log_json(log: SyncLog) -> dict:
    errors = SyncError.objects.filter(log=log).order_by("external_id")
    return SyncLogOutSerializer(
        {
            "entity": log.entity,
            "last_full_sync": log.last_full_sync,
            "last_partial_sync": log.last_partial_sync,
            "errors": errors.iterator(chunk_size=2000),
        }
    ).data


def _entity_parameter():
    return OpenApiParameter(
        "entity", str, OpenApiParameter.PATH, enum=[n for n, _ in entity_choices()], description="The entity's name."
    )


@extend_schema(parameters=[_entity_parameter()])
class SyncLogView(APIView):
    """The connection's sync log of one entity, with the rules of SPEC section 8."""

    def _report(self, request):
        report = SyncLogReportSerializer(data=request.data, context={"connection": request.user.connection})
        report.is_valid(raise_exception=True)
        return report.validated_data

    @extend_schema(
        responses=responses({200: SyncLogOutSerializer}, bad_body=False, not_found=True), summary="Read a sync log"
    )
    def get(self, request, entity):
        log = SyncLog.objects.filter(connection=request.user.connection, entity=_entity(entity)).first()
        if log is None:
            raise exceptions.NotFound(f"connection {request.user.connection.code} has no sync log of {entity} yet")
        return Response(_log_json(log))

    @extend_schema(
        request=SyncLogReportSerializer,
        responses=responses({200: SyncLogOutSerializer}, not_found=True),
        summary="Start a full sync log: the previous errors are cleared, these are its errors",
    )
    def put(self, request, entity):
        entity = _entity(entity)
        data = self._report(request)
        if data["resolved"]:
            raise exceptions.ValidationError({"resolved": ["a full sync starts with no errors to resolve: use PATCH"]})
        log = sync.sync_log_report_full(
            connection=request.user.connection,
            entity=entity,
            errors=data["errors"],
            last_full_sync=data["last_full_sync"],
        )
        return Response(_log_json(log))

    @extend_schema(
        request=SyncLogReportSerializer,
        responses=responses({200: SyncLogOutSerializer}, not_found=True),
        summary="A partial sync: add errors, resolve the listed ids, keep the rest",
    )
    def patch(self, request, entity):
        entity = _entity(entity)
        data = self._report(request)
        log = sync.sync_log_report_partial(
            connection=request.user.connection,
            entity=entity,
            errors=data["errors"],
            resolved=data["resolved"],
            last_full_sync=data["last_full_sync"],
        )
        return Response(_log_json(log))

    @extend_schema(
        responses=responses({204: None}, bad_body=False, not_found=True), summary="Delete a sync log and its errors"
    )
    def delete(self, request, entity):
        if not sync.sync_log_delete(connection=request.user.connection, entity=_entity(entity)):
            raise exceptions.NotFound(f"connection {request.user.connection.code} has no sync log of {entity}")
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecordEventView(APIView):
    """One changed customer or product variant, applied later through the record pipeline with retries."""

    kind = ""

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses=responses({202: inline_serializer("EventAccepted", {"event": serializers.IntegerField()})}),
        summary="Send one changed record (columns of KS_CUSTOMERS or KS_PRODUCTS; absent ones are left alone)",
    )
    def post(self, request):
        try:
            event = record_event_receive(connection=request.user.connection, kind=self.kind, body=request.data)
        except RecordRefused as exc:
            raise exceptions.ValidationError(exc.errors) from exc
        return Response({"event": event.pk}, status=status.HTTP_202_ACCEPTED)


class ExtractQuerySerializer(serializers.Serializer):
    updated_since = ConnectionDateTimeField(required=False)
    cursor = serializers.CharField(required=False, max_length=500)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)


class ExtractView(APIView):
    """Page through customers, special orders or orders, oldest change first."""

    @extend_schema(
        parameters=[
            OpenApiParameter("entity", str, OpenApiParameter.PATH, enum=list(EXTRACT_DESCRIPTORS)),
            ExtractQuerySerializer,
        ],
        responses=responses(
            {
                200: inline_serializer(
                    "ExtractPage",
                    {
                        "results": serializers.ListField(child=serializers.DictField()),
                        "next_cursor": serializers.CharField(allow_null=True),
                    },
                )
            },
            not_found=True,
        ),
        summary="Extract records changed since a time, page by page",
    )
    def get(self, request, entity):
        if entity not in EXTRACT_DESCRIPTORS:
            raise exceptions.NotFound(
                f"nothing to extract called '{entity}' (one of: {', '.join(EXTRACT_DESCRIPTORS)})"
            )
        query = ExtractQuerySerializer(data=request.query_params, context={"connection": request.user.connection})
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:
            page = extract_page(
                name=entity,
                updated_since=params.get("updated_since"),
                cursor=params.get("cursor"),
                limit=params["limit"],
            )
        except BadCursor as exc:
            raise exceptions.ValidationError({"cursor": [str(exc)]}) from exc
        return Response(page)
