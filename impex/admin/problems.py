"""The admin list of problems (SPEC 8): open and resolved, with "Mark resolved" for those who may change them."""

from django.contrib import admin, messages
from django.template.defaultfilters import pluralize
from django.utils.html import format_html
from django.utils.text import Truncator

from config.adminkit import AuditRecordAdmin
from impex.models import Problem
from impex.services.problems import problem_action, problem_resolve


class ProblemStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", "Open"), ("resolved", "Resolved"))

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Problem)
class ProblemAdmin(AuditRecordAdmin):
    """Failures that stop work until a person acts; each leads to the page where one acts."""

    list_display = ("since", "connection", "kind", "what", "act", "state", "last_seen", "count", "mailed_at")
    list_filter = (ProblemStateFilter, "kind", "connection")
    list_select_related = ("connection",)
    search_fields = ("key", "message")
    date_hierarchy = "since"
    fields = (
        "connection",
        "kind",
        "key",
        "message",
        "act",
        "since",
        "last_seen",
        "count",
        "mailed_at",
        "resolved_at",
        "resolved_by",
    )
    readonly_fields = fields
    actions = ("mark_resolved",)

    def has_resolve_permission(self, request):
        return request.user.has_perm("impex.change_problem")

    @admin.display(description="what failed and why")
    def what(self, obj):
        return Truncator(obj.message).chars(200)

    @admin.display(description="where to act")
    def act(self, obj):
        if not obj.url:
            return "-"
        return format_html('<a href="{}">{}</a>', obj.url, problem_action(obj))

    @admin.display(description="state")
    def state(self, obj):
        return "open" if obj.resolved_at is None else f"resolved by {obj.resolved_by}"

    @admin.action(description="Mark resolved", permissions=["resolve"])
    def mark_resolved(self, request, queryset):
        count = problem_resolve(problems=queryset, by=request.user.get_username())
        self.message_user(request, f"{count} problem{pluralize(count)} marked resolved.", messages.SUCCESS)
