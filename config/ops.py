"""The operations endpoints (SPEC 11): GET /healthz for probes and GET /metrics for Prometheus.

They are answered by OpsEndpointMiddleware, first in MIDDLEWARE, before anything else looks at the request: a probe
or a scraper reaches the app server by an address or a name that ALLOWED_HOSTS need not list (localhost in a
container, a pod's IP), over plain HTTP on the inside even with SECURE_SSL_REDIRECT on, with no session, cookie or
CSRF token. Neither view reads the Host header or writes a link, which is what host checking protects.
"""

import hmac
import ipaddress
import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.http import require_safe

from config.security import client_ip
from impex.services.health import health_report
from impex.services.metrics import metrics_text

log = logging.getLogger(__name__)

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def ops_endpoint(view):
    """Mark a view as an operations endpoint: OpsEndpointMiddleware answers it before the other middleware."""
    view.ops_endpoint = True
    return view


def _private(response: HttpResponse) -> HttpResponse:
    # What SecurityMiddleware would add, and never a cached answer: each probe wants the state now.
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    # Django logs every 5xx answer at ERROR on django.request, which mails ADMINS: a probe every few seconds against
    # a stopped cluster would send a mail each time. What is wrong is logged once per probe by impex.services.health.
    response._has_been_logged = True
    return response


@ops_endpoint
@require_safe
def healthz(request):
    """Answer 200 when the database, the broker, a cluster and the schedules are all fine, else 503; JSON says which."""
    report = health_report()
    return _private(JsonResponse(report, status=200 if report["status"] == "ok" else 503))


# Who may read /metrics when neither IMPEX_METRICS_ALLOWED_IPS nor IMPEX_METRICS_TOKEN is set.
LOOPBACK = ("127.0.0.0/8", "::1/128")


def metrics_refusal(request) -> HttpResponse | None:
    """Return the answer to a request /metrics does not serve (403 or 401), None when it may have the metrics.

    IMPEX_METRICS_ALLOWED_IPS (the client's address, behind IMPEX_PROXY_COUNT proxies, in one of its networks) and
    IMPEX_METRICS_TOKEN (Authorization: Bearer TOKEN); with both set, both are required. With neither, this machine
    only (loopback): a scraper beside the hub works as it comes, and nothing else is served without a setting (a
    proxy on this machine passes on its clients' addresses: IMPEX_PROXY_COUNT, which login throttling needs too).
    """
    networks = settings.IMPEX_METRICS_ALLOWED_IPS
    token = settings.IMPEX_METRICS_TOKEN
    if networks or not token:
        address = client_ip(request)
        ip = ipaddress.ip_address(address) if address else None
        if ip is None or not any(ip in ipaddress.ip_network(net) for net in networks or LOOPBACK):
            if networks:
                return _text("/metrics is not served to this address (IMPEX_METRICS_ALLOWED_IPS)", 403)
            return _text(
                "/metrics is served to this machine only: set IMPEX_METRICS_TOKEN or IMPEX_METRICS_ALLOWED_IPS "
                "(README: Operations)",
                403,
            )
    if token:
        scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            response = _text("/metrics needs Authorization: Bearer with the IMPEX_METRICS_TOKEN", 401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return None


def _text(message: str, status: int) -> HttpResponse:
    return _private(HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8"))


@ops_endpoint
@require_safe
def metrics(request):
    """Answer the hub's metrics in the Prometheus text format to a scraper allowed by token or address."""
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    try:
        text = metrics_text()
    except DatabaseError:
        log.warning("metrics: the database did not answer", exc_info=True)
        return _text("the database did not answer (see /healthz and the web server's log)", 503)
    return _private(HttpResponse(text, content_type=PROMETHEUS_TEXT))


class OpsEndpointMiddleware:
    """Answer /healthz and /metrics before the other middleware (see the module's docstring); pass the rest on."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            view = resolve(request.path_info, getattr(request, "urlconf", None)).func
        except Resolver404:
            return self.get_response(request)
        if getattr(view, "ops_endpoint", False):
            return view(request)
        return self.get_response(request)
