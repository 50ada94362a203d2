"""The admin site of impex-hub: its name on every page, a home page that tells how the connections are doing, a
403 page that says which permission is missing, and a user page that says what the hub's groups give."""

from django.contrib import admin
from django.contrib.auth import get_permission_codename, get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.urls import resolve, reverse
from django.urls.exceptions import Resolver404
from django.utils.html import format_html, format_html_join

from config.adminkit import permission_missing_text
from impex import selectors
from impex.registry import home_panels


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
        context = {"upload_url": upload_url(request), **needs_attention(request), "panels": home_panels(request)}
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
            raise PermissionDenied("These pages are for superusers only: no permission opens them to anyone else.")
        return super().app_index(request, app_label, extra_context)

    def use_hub_user_admin(self) -> None:
        """Re-register the user model with its admin class that says, beside the groups, what each group gives."""
        user_model = get_user_model()
        model_admin = self._registry.get(user_model)
        if model_admin is not None and not isinstance(model_admin, GroupsHintMixin):
            base = type(model_admin)
            self.unregister(user_model)
            self.register(user_model, type(base.__name__, (GroupsHintMixin, base), {"__module__": __name__}))

    def restrict_to_superusers(self) -> None:
        """Re-register the models of SUPERUSER_APPS with their own admin classes made superusers-only."""
        for model, model_admin in list(self._registry.items()):
            if model._meta.app_label in SUPERUSER_APPS and not isinstance(model_admin, SuperusersOnly):
                base = type(model_admin)
                self.unregister(model)
                self.register(model, type(base.__name__, (SuperusersOnly, base), {"__module__": __name__}))


GROUP_PERMISSIONS_SHOWN = 6


def groups_hint() -> str:
    """Say, as the help of a user's groups, what each of the hub's groups gives (its permissions, by name)."""
    groups = list(Group.objects.prefetch_related("permissions").order_by("name"))
    if not groups:
        return "No group yet: permissions are given one by one below."
    items = []
    for group in groups:
        names = sorted(perm.name for perm in group.permissions.all())
        shown = ", ".join(names[:GROUP_PERMISSIONS_SHOWN]) or "no permission"
        if len(names) > GROUP_PERMISSIONS_SHOWN:
            shown += f" and {len(names) - GROUP_PERMISSIONS_SHOWN} more"
        items.append((group.name, shown))
    return format_html(
        'The user gets every permission of each group chosen. The hub\'s groups:<ul class="hub-groups">{}</ul>',
        format_html_join("", "<li><strong>{}</strong>: {}</li>", items),
    )


class GroupsHintMixin:
    """Mix into the user admin: the groups field says what each of the hub's groups gives (e.g. "Order approvers")."""

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if db_field.name == "groups" and field is not None:
            field.help_text = groups_hint()
        return field


# The permission an admin page of a model needs, by the end of its URL's name (Django's model admin views).
VIEW_PERMISSIONS = {"changelist": "view", "change": "view", "history": "view", "add": "add", "delete": "delete"}


def model_page_permission(request) -> str | None:
    """Return the permission ("app_label.codename") the request's model admin page needs and its user lacks, if any."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return None
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        prefix = f"{opts.app_label}_{opts.model_name}_"
        view = (match.url_name or "").removeprefix(prefix)
        if match.url_name and match.url_name.startswith(prefix) and view in VIEW_PERMISSIONS:
            perm = f"{opts.app_label}.{get_permission_codename(VIEW_PERMISSIONS[view], opts)}"
            if view in ("changelist", "change") and model_admin.has_view_or_change_permission(request):
                return None
            return None if request.user.has_perm(perm) else perm
    return None


def permission_denied(request, exception):
    """The 403 page (handler403): the admin's look, what permission is missing when it is known, and a way home."""
    message = str(exception) if exception is not None else ""
    if not message and request.user.is_authenticated:
        perm = model_page_permission(request)
        if perm:
            message = permission_missing_text(perm, to="open this page")
    context = {
        **admin.site.each_context(request),
        "title": "Permission needed",
        "message": message or "You don't have permission to do this; an administrator can give it to you.",
    }
    return render(request, "403.html", context, status=403)
