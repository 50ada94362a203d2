"""The order endpoints of SPEC section 10: the update feed (POST /api/feeds/shipments/) and cancellation
(POST /api/orders/{order_id}/cancel/)."""

import zoneinfo

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from impex.api_fields import ConnectionDateTimeField
from impex.api_schema import responses
from orders.exceptions import OrderShipped
from orders.feeds import feed_events_receive
from orders.models import FeedEvent, Order
from orders.services import REASON_MAX_LENGTH, order_cancel


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


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=REASON_MAX_LENGTH)


_order_state = inline_serializer(
    "OrderState",
    {"order_id": serializers.CharField(), "state": serializers.CharField(), "version": serializers.IntegerField()},
)
_detail = inline_serializer("CancelRefused", {"detail": serializers.CharField()})


class OrderCancelView(APIView):
    """Cancel an order of the caller's connection with a reason; exporters that had sent it get it again."""

    @extend_schema(
        request=CancelSerializer,
        responses=responses(
            {
                200: _order_state,
                409: OpenApiResponse(_detail, description="The order has shipped: it can no longer be cancelled."),
            },
            not_found=True,
        ),
        summary="Cancel an order",
    )
    def post(self, request, order_id: str):
        connection = request.user.connection
        order = Order.objects.filter(order_id=order_id, connection=connection).first()
        if order is None:
            return Response(
                {"detail": f"no order {order_id} of connection {connection.code}"}, status=status.HTTP_404_NOT_FOUND
            )
        body = CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            order = order_cancel(order=order, reason=body.validated_data["reason"], by=f"api: {connection.code}")
        except OrderShipped as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response({"order_id": order.order_id, "state": order.state, "version": order.version})
