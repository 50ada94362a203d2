"""URL routes of the HTTP API (SPEC section 10) and its OpenAPI schema.

Each route also takes its path without the trailing slash: a POST, PUT or PATCH to it would otherwise be
redirected, and the redirect followed as a GET.
"""

import re

from django.urls import path, re_path, register_converter
from drf_spectacular.views import SpectacularAPIView

from impex.api import FilePushView, FullSyncView, JobView, ProblemsView
from orders.api import OrderCancelView, ShipmentFeedView
from syncapp.api import ExtractView, RecordEventView, SyncLogView


class AnyTextConverter:
    """An external id as sent, whatever it holds: '/', line breaks (Django's path converter stops at a line break)."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyTextConverter, "text")
PATTERNS = {"str": "[^/]+", "path": ".+", "text": AnyTextConverter.regex}  # as the converters of those names match


def both(route: str, view, name: str):
    """Return the route with and without its trailing slash."""
    return [
        path(route, view, name=name),
        re_path(re.sub(r"<(str|path|text):(\w+)>", lambda m: f"(?P<{m[2]}>{PATTERNS[m[1]]})", f"^{route[:-1]}$"), view),
    ]


urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    *both("feeds/shipments/", ShipmentFeedView.as_view(), "api-feed-shipments"),
    *both("sync-logs/<str:entity>/", SyncLogView.as_view(), "api-sync-log"),
    *both("events/customers/", RecordEventView.as_view(kind="customers"), "api-events-customers"),
    *both("events/products/", RecordEventView.as_view(kind="products"), "api-events-products"),
    *both("extract/<str:entity>/", ExtractView.as_view(), "api-extract"),
    *both("orders/<text:order_id>/cancel/", OrderCancelView.as_view(), "api-order-cancel"),
    *both("problems/", ProblemsView.as_view(), "api-problems"),
    *both("files/", FilePushView.as_view(), "api-files"),
    # Any text, not <int:>: an id that is not a number is a JSON 404 of the view, like a job that is not there.
    *both("jobs/<str:job_id>/", JobView.as_view(), "api-job"),
    *both("full-sync/<str:entity>/", FullSyncView.as_view(), "api-full-sync"),
]


def schema_endpoints(endpoints):
    """drf-spectacular preprocessing hook: leave out the routes without a trailing slash."""
    return [e for e in endpoints if e[0].endswith("/")]
