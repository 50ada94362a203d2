"""The order update feed endpoint: POST /api/feeds/shipments/ (SPEC section 10)."""

import zoneinfo

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from impex.api_schema import responses
from orders.feeds import feed_events_receive
from orders.models import FeedEvent


class ConnectionDateTimeField(serializers.DateTimeField):
    """A date-time; one without an offset is read in the connection's time zone, as its files are."""

    def default_timezone(self):
        connection = self.context.get("connection")
        if connection is not None and connection.timezone:
            return zoneinfo.ZoneInfo(connection.timezone)
        return super().default_timezone()


class ShipmentEventSerializer(serializers.Serializer):
    """One delivery: which shipment of which order, by whom, when, and which lines (none: every line)."""

    event_id = serializers.CharField(max_length=FeedEvent._meta.get_field("event_id").max_length)
    shipment_id = serializers.CharField(max_length=FeedEvent._meta.get_field("shipment_id").max_length)
    order_id = serializers.CharField(max_length=FeedEvent._meta.get_field("order_ref").max_length)
    carrier = serializers.CharField(
        max_length=FeedEvent._meta.get_field("carrier").max_length, required=False, allow_blank=True, default=""
    )
    tracking_number = serializers.CharField(
        max_length=FeedEvent._meta.get_field("tracking_number").max_length,
        required=False,
        allow_blank=True,
        default="",
    )
    shipped_at = ConnectionDateTimeField()
    line_nos = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2_147_483_647),
        required=False,
        allow_null=True,
        default=list,
        max_length=10_000,
    )

    def validate_shipped_at(self, value):
        try:
            value.astimezone(zoneinfo.ZoneInfo("UTC"))
        except OverflowError as exc:
            raise serializers.ValidationError("the date is outside the years 1-9999 once read in UTC") from exc
        return value

    def validate_line_nos(self, value):
        value = value or []
        if len(set(value)) != len(value):
            raise serializers.ValidationError("a line number is listed twice")
        return value


class ShipmentFeedSerializer(serializers.Serializer):
    events = serializers.ListField(child=ShipmentEventSerializer(), allow_empty=False, min_length=1)

    def validate_events(self, value):
        limit = settings.API_MAX_FEED_EVENTS
        if len(value) > limit:
            raise serializers.ValidationError(f"at most {limit} events per request ({len(value)} sent)")
        return value


class ShipmentFeedView(APIView):
    """Take delivery events from a carrier or the platform; they are applied by the feed task."""

    @extend_schema(
        request=ShipmentFeedSerializer,
        responses=responses({202: inline_serializer("FeedAccepted", {"accepted": serializers.IntegerField()})}),
        summary="Report deliveries (order update feed)",
    )
    def post(self, request):
        connection = request.user.connection
        feed = ShipmentFeedSerializer(data=request.data, context={"connection": connection})
        feed.is_valid(raise_exception=True)
        accepted = feed_events_receive(connection=connection, events=feed.validated_data["events"])
        return Response({"accepted": accepted}, status=status.HTTP_202_ACCEPTED)
