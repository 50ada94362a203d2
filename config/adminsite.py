"""The admin site of impex-hub: its name on every page and a home page that tells how the connections are doing."""

from django.contrib import admin
from django.urls import NoReverseMatch, reverse

from impex import selectors


def upload_url(request) -> str | None:
    """Return the URL of the "Upload and import" page if it exists and the user may run imports."""
    if not request.user.has_perm("impex.run_import"):
        return None
    try:
        return reverse("admin:impex_importjob_upload")
    except NoReverseMatch:
        # The page comes with the browser upload of issue 6; until then the home page has no link to it.
        return None


class HubAdminSite(admin.AdminSite):
    site_header = "impex-hub"
    site_title = "impex-hub"
    index_title = "impex-hub home"
    # The left-hand list of models takes 300 px of a 1400 px window from lists and inlines of a dozen columns;
    # the home page and the breadcrumbs lead to every model instead.
    enable_nav_sidebar = False

    def index(self, request, extra_context=None):
        """The admin index with the hub's state above the list of models, each part shown to those who may see it."""
        user = request.user
        context = {"upload_url": upload_url(request)}
        if user.has_perm("impex.view_connection"):
            context["connections"] = selectors.connection_summaries()
        if user.has_perm("impex.view_importjob"):
            context["latest_jobs"] = selectors.jobs_latest(limit=10)
        context["show_waiting_links"] = user.has_perm("impex.view_importfile")
        context["show_error_links"] = user.has_perm("syncapp.view_syncerror")
        return super().index(request, extra_context={**context, **(extra_context or {})})
