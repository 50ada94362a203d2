"""URL routes of impex-hub."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from config.apps import admin_load

admin_load()  # already done at start, except in a data-moving command (config.startup)

# A refusal answers 403 with the admin's look, naming the permission missing when it is known.
handler403 = "config.adminsite.permission_denied"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", include("config.api_urls")),
]
