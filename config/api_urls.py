"""URL routes of the HTTP API (SPEC section 10) and its OpenAPI schema."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView

from orders.api import ShipmentFeedView

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("feeds/shipments/", ShipmentFeedView.as_view(), name="api-feed-shipments"),
    # A POST to the path without its slash would be redirected, and the redirect followed as a GET: take it here.
    re_path(r"^feeds/shipments$", ShipmentFeedView.as_view(), name="api-feed-shipments-no-slash"),
]
