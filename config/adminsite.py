"""The admin site of impex-hub: its name on every page and a home page that tells how the connections are doing."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from impex import selectors


def upload_url(request) -> str | None:
    """Return the URL of the "Upload and import" page if the user may run imports (SPEC 13: impex.run_import)."""
    if not request.user.has_perm("impex.run_import"):
        return None
    return reverse("admin:impex_importjob_upload")


NEEDS_ATTENTION_SHOWN = 20


def needs_attention(request) -> dict:
    """Return the open problems the user may see for the home page: how many, the newest few, and the list's URL."""
    if not request.user.has_perm("impex.view_problem"):
        return {}
    from impex.services.problems import problem_action, problems_open

    rows = problems_open()
    shown = list(rows[:NEEDS_ATTENTION_SHOWN])
    count = rows.count()  # always counted: the page runs as many queries for many problems as for few
    for problem in shown:
        problem.action = problem_action(problem)
    return {
        "problems": shown,
        "problems_count": count,
        "problems_more": count - len(shown),
        "problems_url": reverse("admin:impex_problem_changelist") + "?state=open",
    }


# Apps whose admin pages only superusers may open, whatever permissions others hold (SPEC 13). django-q2's: a
# schedule's func is any importable name the cluster then runs (os.system), so its add and change permissions, and
# resubmitting a task, amount to running code on the cluster's machines.
SUPERUSER_APPS = ("django_q",)


class SuperusersOnly:
    """Mix into a ModelAdmin: its pages and actions are for superusers only, whatever permissions others hold."""

    def has_module_permission(self, request):
        return request.user.is_superuser and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return request.user.is_superuser and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_delete_permission(request, obj)


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
        context = {"upload_url": upload_url(request), **needs_attention(request)}
        if user.has_perm("impex.view_connection"):
            context["connections"] = selectors.connection_summaries()
        if user.has_perm("impex.view_importjob"):
            context["latest_jobs"] = selectors.jobs_latest(limit=10)
        context["show_waiting_links"] = user.has_perm("impex.view_importfile")
        context["show_error_links"] = user.has_perm("syncapp.view_syncerror")
        return super().index(request, extra_context={**context, **(extra_context or {})})

    def app_index(self, request, app_label, extra_context=None):
        """An app's page; a superusers' app answers others 403 (Django's default for them would be a 404)."""
        if app_label in SUPERUSER_APPS and not request.user.is_superuser:
            raise PermissionDenied
        return super().app_index(request, app_label, extra_context)

    def restrict_to_superusers(self) -> None:
        """Re-register the models of SUPERUSER_APPS with their own admin classes made superusers-only."""
        for model, model_admin in list(self._registry.items()):
            if model._meta.app_label in SUPERUSER_APPS and not isinstance(model_admin, SuperusersOnly):
                base = type(model_admin)
                self.unregister(model)
                self.register(model, type(base.__name__, (SuperusersOnly, base), {"__module__": __name__}))
