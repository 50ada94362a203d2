"""URL routes of impex-hub."""

from functools import cache

from django.contrib import admin
from django.contrib.staticfiles import finders
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe
from django.views.generic import RedirectView

from config import ops
from config.apps import admin_load

admin_load()  # already done at start, except in a data-moving command (config.startup)


@cache
def _favicon() -> bytes:
    """Read the hub's icon (static/hub/favicon.ico) once."""
    with open(finders.find("hub/favicon.ico"), "rb") as icon:
        return icon.read()


@require_safe
@cache_control(public=True, max_age=86400)
def favicon(request):
    """Serve /favicon.ico, which browsers ask for by themselves, from the app (static files are not served with
    DEBUG off unless a front end does it)."""
    return HttpResponse(_favicon(), content_type="image/x-icon")


# A refusal answers 403 with the admin's look, naming the permission missing when it is known.
handler403 = "config.adminsite.permission_denied"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("api/", include("config.api_urls")),
    # Operations (SPEC 11), answered by config.ops.OpsEndpointMiddleware before the other middleware.
    path("healthz", ops.healthz, name="healthz"),
    path("metrics", ops.metrics, name="metrics"),
]
