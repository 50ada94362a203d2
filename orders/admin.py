"""Admin of orders (read-only records with their timeline, approvals of held orders and retries of failed exports),
of exporters and the flags transitions set, and the read-only record of exporter runs and feed events (SPEC 7, 13)."""

import copy
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.db.models import Count, Exists, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import construct_instance
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from config.adminkit import (
    AuditRecordAdmin,
    CountedChangeList,
    LocationFieldsAdminMixin,
    PermissionMissing,
    ReadOnlyInline,
    WriteOnlySecretAdminMixin,
    WriteOnlySecretForm,
    https_formfield,
    permission_check,
    permission_missing_text,
)
from impex.admin.display import money_display, when_text
from impex.models import DataDescriptor
from impex.money import money_text
from orders import resources
from orders.choices import ExporterKind, FlagStatus, OrderState, OrderTransition
from orders.exceptions import OrderError
from orders.models import (
    Exporter,
    FeedEvent,
    Order,
    OrderExportRun,
    OrderFlag,
    OrderLine,
    Shipment,
    TransitionFlag,
)
from orders.selectors import held_reasons, order_lines, order_sent, order_timeline, orders_held
from orders.services import (
    REASON_MAX_LENGTH,
    deliveries_due_now,
    exporter_problems,
    flag_retry,
    flags_for,
    order_approve,
    order_cancel,
    order_reject,
    transition_refusal,
)
from orders.state import HAS_SHIPPED
from syncapp.admin import SyncedEntityAdmin

APPROVE_PERMISSION = "orders.approve_order"
CANCEL_PERMISSION = "orders.cancel_order"
# Retrying sends an order on again along its chain: whoever may change orders may ask for it.
RETRY_PERMISSION = "orders.change_order"
# What each permission of the orders list's actions is (has_<name>_permission), to name the one a refusal misses.
ACTION_PERMISSIONS = {"approve": APPROVE_PERMISSION, "cancel": CANCEL_PERMISSION, "retry_export": RETRY_PERMISSION}
# Receivers' answers are shown with exporter runs to who may change exporters (where orders are sent) only.
ANSWERS_PERMISSION = "orders.change_exporter"
ERROR_SHOWN = 60
# Orders that can no longer be cancelled: cancelled already, or shipped (SPEC section 7).
CANCEL_ENDED = {OrderState.CANCELLED, *HAS_SHIPPED}

# Flag statuses behind each choice of the list's "exports" filter.
EXPORTS_CHOICES = {
    "failed": ("failed", [FlagStatus.FAILED]),
    "pending": ("pending", [FlagStatus.PENDING, FlagStatus.RUNNING]),
    "held": ("held for approval", [FlagStatus.HELD]),
}
# Query parameters that neither filter nor search the orders list: with only these, an approver's list is the
# default one (awaiting approval).
NOT_FILTERS = {"o", "p", "_facets", "e"}


def _when(at) -> str:
    """A time as a reader scanning a list wants it: H:i today, with the date on other days."""
    local = timezone.localtime(at)
    if local.date() == timezone.localdate():
        return date_format(local, "H:i")
    return date_format(local, "DATETIME_FORMAT")


def flag_summary(flag: OrderFlag, *, named: bool = False) -> str:
    """Say where an order's flag stands in a few words: "erp (pending, try 3, next 12:04)", "approval (held)"; with
    the exporter when the flag has several ("erp by wms (sent)") and for a re-send ("erp re-send by wms (...)")."""
    if flag.status == FlagStatus.PENDING:
        detail = "pending"
        if flag.attempts:
            detail += f", try {flag.attempts + 1}, next {_when(flag.next_attempt_at)}"
        elif flag.next_attempt_at > timezone.now():
            detail += f", next {_when(flag.next_attempt_at)}"
    elif flag.status == FlagStatus.RUNNING:
        detail = f"running on {flag.claimed_by}" if flag.claimed_by else "running"
    elif flag.status == FlagStatus.HELD:
        detail = "held"
    elif flag.status == FlagStatus.DONE:
        detail = "sent"
    else:
        detail = f"failed: {Truncator(flag.last_error).chars(ERROR_SHOWN)}" if flag.last_error else "failed"
    who = flag.exporter.code if flag.exporter_id else "no exporter yet"
    if flag.resend:
        return f"{flag.flag} re-send by {who} ({detail})"
    return f"{flag.flag} by {who} ({detail})" if named else f"{flag.flag} ({detail})"


def flags_summaries(flags: list[OrderFlag]) -> list[str]:
    """Summarise an order's flags, naming the exporter of each delivery of a flag that several exporters send."""
    deliveries = Counter(flag.flag for flag in flags if not flag.resend)
    return [flag_summary(flag, named=deliveries[flag.flag] > 1) for flag in flags]


def flags_by_order(order_ids) -> dict[int, list[OrderFlag]]:
    """Return the flags of the given orders, by order id, in the order they were set (one query)."""
    found = defaultdict(list)
    flags = OrderFlag.objects.filter(order_id__in=list(order_ids)).select_related("exporter")
    for flag in flags.order_by("set_at", "pk"):
        found[flag.order_id].append(flag)
    return found


class OrderChangeList(CountedChangeList):
    """The orders list: the flags of the page's orders come in one query (not with exports of the whole list)."""

    def get_results(self, request):
        super().get_results(request)
        flags = flags_by_order(order.pk for order in self.result_list)
        for order in self.result_list:
            order.flag_list = flags.get(order.pk, [])


class ApprovalFilter(admin.SimpleListFilter):
    """Held orders waiting for a decision: the default list of whoever may approve (with no filter or search)."""

    title = "approval"
    parameter_name = "approval"
    AWAITING, ALL = "awaiting", "all"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        narrowed = any(key not in NOT_FILTERS for key in request.GET)
        # Only the list itself opens on the held orders: an export or other view without a filter takes every order.
        match = request.resolver_match
        narrowed = narrowed or not (match and (match.url_name or "").endswith("_changelist"))
        may_approve = request.user.has_perm(APPROVE_PERMISSION)
        # A filter or search of its own makes the list "All": clicking "state: confirmed" must show confirmed orders.
        self.default = self.AWAITING if may_approve and not narrowed else self.ALL

    def lookups(self, request, model_admin):
        return [(self.AWAITING, "Awaiting approval"), (self.ALL, "All")]

    def value(self):
        return super().value() or self.default

    def choices(self, changelist):
        # No "All" of Django's (which would mean "the default"): "All" is an explicit choice, so that an approver
        # can leave the default list.
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() == self.AWAITING:
            return queryset.filter(state=OrderState.ON_HOLD)
        return queryset


class FlagFilter(admin.SimpleListFilter):
    """Orders carrying one flag (the flags exporters act on or set, and the flags transitions set)."""

    title = "export flag"
    parameter_name = "flag"

    def lookups(self, request, model_admin):
        flags = set(Exporter.objects.values_list("flag", flat=True))
        flags |= set(Exporter.objects.exclude(next_flag="").values_list("next_flag", flat=True))
        flags |= set(TransitionFlag.objects.values_list("flag", flat=True))
        return [(flag, flag) for flag in sorted(flags)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(Exists(OrderFlag.objects.filter(order=OuterRef("pk"), flag=self.value())))
        return queryset


class ExportsFilter(admin.SimpleListFilter):
    """Orders by where their exports stand: a flag failed, waiting, held, or no flag at all (of the chosen flag)."""

    title = "exports"
    parameter_name = "exports"

    def lookups(self, request, model_admin):
        return [*((key, label) for key, (label, _) in EXPORTS_CHOICES.items()), ("none", "none")]

    def queryset(self, request, queryset):
        value = self.value()
        flags = OrderFlag.objects.filter(order=OuterRef("pk"))
        # With a flag chosen too, "failed" means that flag failed, not that another one did.
        if request.GET.get(FlagFilter.parameter_name):
            flags = flags.filter(flag=request.GET[FlagFilter.parameter_name])
        if value == "none":
            return queryset.filter(~Exists(flags))
        if value in EXPORTS_CHOICES:
            return queryset.filter(Exists(flags.filter(status__in=EXPORTS_CHOICES[value][1])))
        return queryset


class DecisionForm(forms.Form):
    """The reason of a rejection (required) or the note of an approval (optional)."""

    reason = forms.CharField(max_length=REASON_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3, "cols": 70}))

    def __init__(self, *args, required: bool, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["reason"]
        field.required = required
        field.label = "Reason" if required else "Note (optional)"
        field.help_text = (
            "Why the order is rejected: it is kept on the order's timeline with your name."
            if required
            else "Kept on the order's timeline with your name."
        )
        if required:
            field.error_messages["required"] = "Give the reason for rejecting: it is kept on the order's timeline."


class CancelForm(forms.Form):
    """The reason of a cancellation (required): it is kept on the order's timeline with the user."""

    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Why the order is cancelled: it is kept on the order's timeline with your name.",
        error_messages={"required": "Give the reason for cancelling: it is kept on the order's timeline."},
    )


class Decision(NamedTuple):
    """What approving or rejecting a held order takes: its transition, its words and its service."""

    transition: str
    verb: str
    past: str
    service: Callable


DECISIONS = {
    "approve": Decision(OrderTransition.APPROVE, "approve", "approved", order_approve),
    "reject": Decision(OrderTransition.REJECT, "reject", "rejected", order_reject),
}


class ShipmentInline(ReadOnlyInline):
    model = Shipment
    fields = ("shipment_id", "carrier", "tracking_number", "shipped_at", "line_nos")
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(SyncedEntityAdmin):
    """Orders: read-only records; their state moves by transitions only: approvals, rejections, export retries."""

    resource_classes = [resources.OrderResource]
    change_form_template = "admin/orders/order/change_form.html"
    list_display = (
        "order_id",
        "order_date_shown",
        "customer",
        "total_shown",
        "state_badge",
        "flags_display",
        "connection",
    )
    list_filter = (ApprovalFilter, ExportsFilter, FlagFilter, "state", "connection")
    search_fields = ("order_id", "customer__customer_id", "customer__email", "ship_to_name")
    list_select_related = ("customer", "connection")
    date_hierarchy = "order_date"
    # The lines are the page's own table (with their products and amounts), above the record's fields.
    inlines = (ShipmentInline,)
    actions = ("approve_held", "reject_held", "cancel_selected", "retry_failed_exports", "retry_waiting_now")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "order_id",
                    "customer",
                    "order_date_shown",
                    "currency",
                    "total_shown",
                    "state",
                    "state_changed_shown",
                    "status",
                    "version",
                )
            },
        ),
        (
            "Shipping",
            {
                "fields": (
                    "shipping_method",
                    "ship_to_name",
                    "ship_to_line1",
                    "ship_to_city",
                    "ship_to_postcode",
                    "ship_to_country",
                    "shipped_lines",
                    "tracking_numbers",
                )
            },
        ),
        ("Sync", {"fields": ("connection", "created_shown", "updated_shown")}),
    )
    readonly_fields = (
        "connection",
        "customer_plain",
        "connection_plain",
        "created_shown",
        "updated_shown",
        "order_date_shown",
        "total_shown",
        "state",
        "state_changed_shown",
        "status",
        "version",
    )

    has_approve_permission = permission_check(APPROVE_PERMISSION)
    has_cancel_permission = permission_check(CANCEL_PERMISSION)
    has_retry_export_permission = permission_check(RETRY_PERMISSION)

    class Media:
        css = {"all": ["orders/admin.css"]}

    def get_changelist(self, request, **kwargs):
        return OrderChangeList

    # Whoever may approve sees the orders to decide on (their lines and timeline), with or without view_order.

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or self.has_approve_permission(request)

    def has_module_permission(self, request):
        return super().has_module_permission(request) or self.has_approve_permission(request)

    # The record's customer and connection link to their pages only for who may open them (an approver may not).
    RELATED_VIEW = {"customer": "syncapp.view_customer", "connection": "impex.view_connection"}

    def get_fieldsets(self, request, obj=None):
        """Show the customer and the connection as plain text to who may not view them, not as links to a 403."""
        swap = {name: f"{name}_plain" for name, perm in self.RELATED_VIEW.items() if not request.user.has_perm(perm)}
        return [
            (title, {**options, "fields": tuple(swap.get(name, name) for name in options["fields"])})
            for title, options in super().get_fieldsets(request, obj)
        ]

    @admin.display(description="customer")
    def customer_plain(self, obj):
        return str(obj.customer)

    @admin.display(description="connection")
    def connection_plain(self, obj):
        return str(obj.connection) if obj.connection_id else "-"

    def has_descriptor_export_permission(self, request) -> bool:
        # Downloads stay with the view permission itself (SPEC 13), not with what approving shows.
        return super().has_descriptor_export_permission(request) and request.user.has_perm("orders.view_order")

    @admin.display(description="order date", ordering="order_date")
    def order_date_shown(self, obj):
        return when_text(obj.order_date)

    @admin.display(description="total", ordering="total")
    def total_shown(self, obj):
        return money_text(obj.total, obj.currency)

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj):
        return format_html('<span class="order-state order-state-{}">{}</span>', obj.state, obj.get_state_display())

    @admin.display(description="state changed at", ordering="state_changed_at")
    def state_changed_shown(self, obj):
        return when_text(obj.state_changed_at)

    @admin.display(description="created at", ordering="created_at")
    def created_shown(self, obj):
        return when_text(obj.created_at)

    @admin.display(description="updated at", ordering="updated_at")
    def updated_shown(self, obj):
        return when_text(obj.updated_at)

    @admin.display(description="export flags")
    def flags_display(self, obj):
        flags = getattr(obj, "flag_list", None)
        if flags is None:
            flags = list(obj.flags.select_related("exporter").order_by("set_at", "pk"))
        if not flags:
            return "-"
        return format_html_join(
            mark_safe("<br>"),
            '<span class="order-flag order-flag-{}" title="{}">{}</span>',
            (
                (flag.status, flag.last_error, summary)
                for flag, summary in zip(flags, flags_summaries(flags), strict=True)
            ),
        )

    # -- actions -------------------------------------------------------------------------------

    def changelist_view(self, request, extra_context=None):
        # An action the user may not run is refused outright, not answered with "No action selected".
        if request.method == "POST":
            for name in request.POST.getlist("action"):
                missing = self._missing(request, name) if name in self.actions else None
                if missing:
                    raise PermissionMissing(missing, to=f'run "{getattr(self, name).short_description}"')
        return super().changelist_view(request, extra_context)

    def _missing(self, request, action: str) -> str | None:
        """Return the permission the user lacks to run the action, None if they may."""
        for perm in getattr(getattr(self, action), "allowed_permissions", ()):
            if not getattr(self, f"has_{perm}_permission")(request):
                return ACTION_PERMISSIONS[perm]
        return None

    def _chosen(self, request, queryset) -> list[Order]:
        """The orders the user ticked: all of them, even those the list's filter no longer shows (they are skipped
        with a word rather than left out without one)."""
        if request.POST.get("select_across") == "1":
            orders = queryset
        else:
            ids = [pk for pk in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME) if pk.isdigit()]
            orders = Order.objects.filter(pk__in=ids)
        return list(orders.select_related("customer").order_by("order_id"))

    @admin.action(description="Approve", permissions=["approve"])
    def approve_held(self, request, queryset):
        return self._decide_selected(request, queryset, decision="approve")

    @admin.action(description="Reject", permissions=["approve"])
    def reject_held(self, request, queryset):
        return self._decide_selected(request, queryset, decision="reject")

    def _decide_selected(self, request, queryset, *, decision: str):
        """Approve the held orders chosen at once, or ask the reason to reject them first; skip the others."""
        past = DECISIONS[decision].past
        orders = self._chosen(request, queryset)
        held = [order for order in orders if order.state == OrderState.ON_HOLD]
        skipped = [order for order in orders if order.state != OrderState.ON_HOLD]
        form = DecisionForm(request.POST if request.POST.get("post") else None, required=decision == "reject")
        # Approving needs no reason (a note is optional, on the order's page): the action takes it at once.
        if held and decision == "approve" and not form.is_bound:
            self._decide(request, held, decision=decision, reason="")
            self._report_skipped(request, skipped, past=past)
            return None
        if held and form.is_bound and form.is_valid():
            self._decide(request, held, decision=decision, reason=form.cleaned_data["reason"])
            self._report_skipped(request, skipped, past=past)
            return None
        if not held:
            self._report_skipped(request, skipped, past=past)
            self.message_user(request, f"No order was {past}: none of those chosen is on hold.", messages.WARNING)
            return None
        return self._decision_page(
            request,
            decision=decision,
            orders=held,
            skipped=skipped,
            form=form,
            action=f"{decision}_held",
        )

    def _decide(self, request, orders: list[Order], *, decision: str, reason: str) -> None:
        """Take the decision on each order through its service; report what was done and what was refused."""
        past, service = DECISIONS[decision].past, DECISIONS[decision].service
        done = []
        for order in orders:
            try:
                service(order=order, user=request.user, reason=reason)
            except OrderError as exc:
                self.message_user(request, f"{order.order_id} was not {past}: {exc}.", messages.ERROR)
            else:
                done.append(order.order_id)
        if done:
            then = "it goes on along its chain" if decision == "approve" else "cancelled"
            if len(done) > 1:
                then = "they go on along their chains" if decision == "approve" else "cancelled"
            self.message_user(request, f"{past.capitalize()} {', '.join(done)}: {then}.", messages.SUCCESS)

    def _report_skipped(self, request, skipped: list[Order], *, past: str) -> None:
        if skipped:
            listed = ", ".join(f"{order.order_id} ({order.get_state_display()})" for order in skipped)
            self.message_user(
                request,
                f"Skipped {listed}: only orders on hold can be {past}, and "
                f"{'this one is' if len(skipped) == 1 else 'these are'} not.",
                messages.WARNING,
            )

    def _decision_page(self, request, *, decision, orders, skipped, form, action="", post_url=""):
        """The page that asks for the reason of a rejection (or the note of an approval) before it is taken."""
        verb = DECISIONS[decision].verb
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{verb.capitalize()} {'this order' if len(orders) == 1 else f'{len(orders)} orders'}?",
            "decision": decision,
            "verb": verb,
            "orders": orders,
            "skipped": skipped,
            "form": form,
            "action": action,
            "post_url": post_url,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        reasons = held_reasons(order.pk for order in orders)
        for order in orders:
            order.held_message = reasons.get(order.pk, "")
            order.total_text = money_text(order.total, order.currency)
        return TemplateResponse(request, "admin/orders/order/decide.html", context)

    @admin.action(description="Cancel selected orders", permissions=["cancel"])
    def cancel_selected(self, request, queryset):
        """Ask one reason, then cancel the orders chosen; those that have shipped (or are cancelled) are skipped."""
        orders = self._chosen(request, queryset)
        open_ = [order for order in orders if order.state not in CANCEL_ENDED]
        skipped = [order for order in orders if order.state in CANCEL_ENDED]
        if not open_:
            self._report_not_cancelled(request, skipped)
            self.message_user(request, "No order was cancelled: none of those chosen can be.", messages.WARNING)
            return None
        form = CancelForm(request.POST if request.POST.get("post") else None)
        if form.is_bound and form.is_valid():
            self._cancel(request, open_, reason=form.cleaned_data["reason"])
            self._report_not_cancelled(request, skipped)
            return None
        return self._cancel_page(request, orders=open_, skipped=skipped, form=form, action="cancel_selected")

    def _cancel(self, request, orders: list[Order], *, reason: str) -> None:
        """Cancel each order through the service; report what was cancelled and what was refused, and why."""
        done = []
        for order in orders:
            try:
                order_cancel(order=order, reason=reason, by=request.user.get_username(), user=request.user)
            except OrderError as exc:
                self.message_user(request, f"{order.order_id} was not cancelled: {exc}.", messages.ERROR)
            else:
                done.append(order.order_id)
        if done:
            self.message_user(
                request,
                f"Cancelled {', '.join(done)}: exporters that had sent {'it' if len(done) == 1 else 'them'} "
                "are told in a moment.",
                messages.SUCCESS,
            )

    def _report_not_cancelled(self, request, skipped: list[Order]) -> None:
        for order in skipped:
            why = "is cancelled already" if order.state == OrderState.CANCELLED else "has shipped"
            self.message_user(
                request,
                f"{order.order_id} was not cancelled: it {why} ({order.get_state_display()}).",
                messages.WARNING if order.state == OrderState.CANCELLED else messages.ERROR,
            )

    def _cancel_page(self, request, *, orders, skipped, form, action="", post_url=""):
        """The page that asks the reason of a cancellation before it is made."""
        for order in orders:
            order.total_text = money_text(order.total, order.currency)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Cancel {'this order' if len(orders) == 1 else f'{len(orders)} orders'}?",
            "orders": orders,
            "skipped": skipped,
            "form": form,
            "action": action,
            "post_url": post_url,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/orders/order/cancel.html", context)

    @admin.action(description="Retry failed exports", permissions=["retry_export"])
    def retry_failed_exports(self, request, queryset):
        orders = self._chosen(request, queryset)
        failed = OrderFlag.objects.filter(order__in=[o.pk for o in orders], status=FlagStatus.FAILED)
        retried = defaultdict(list)
        for flag in failed.select_related("order").order_by("order__order_id", "flag"):
            try:
                flag_retry(flag=flag, user=request.user)
            except OrderError as exc:
                self.message_user(request, f"{flag.order.order_id}: {exc}.", messages.ERROR)
            else:
                retried[flag.order.order_id].append(flag.flag)
        if retried:
            listed = "; ".join(f"{order_id}: {', '.join(flags)}" for order_id, flags in retried.items())
            self.message_user(
                request,
                f"Tried again: {listed}. The export pass takes them up in a moment; the orders' timelines tell how "
                "it went.",
                messages.SUCCESS,
            )
        idle = [o.order_id for o in orders if o.order_id not in retried]
        if idle:
            self.message_user(request, f"No failed export to retry on {', '.join(idle)}.", messages.WARNING)

    @admin.action(description="Retry waiting exports now", permissions=["retry_export"])
    def retry_waiting_now(self, request, queryset):
        orders = self._chosen(request, queryset)
        count = deliveries_due_now(by=request.user.get_username(), user=request.user, orders=[o.pk for o in orders])
        if count:
            self.message_user(
                request,
                f"{count} waiting export(s) are due now: the export pass takes them up in a moment; the orders' "
                "timelines tell how it went.",
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                'No export of these orders waits for a retry (one that failed for good needs "Retry failed exports").',
                messages.WARNING,
            )

    # -- the order's page and its buttons ------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        own = [
            path("<path:object_id>/approve/", view(self.approve_view), name="orders_order_approve"),
            path("<path:object_id>/reject/", view(self.reject_view), name="orders_order_reject"),
            path("<path:object_id>/cancel/", view(self.cancel_view), name="orders_order_cancel"),
            path(
                "<path:object_id>/flags/<int:flag_id>/retry/",
                view(self.retry_flag_view),
                name="orders_order_retry_flag",
            ),
        ]
        return own + super().get_urls()

    def _order_for(self, request, object_id, *, perm: str, to: str) -> Order:
        """The order of a button's view, once the server has checked the user may view it and press the button."""
        if not self.has_view_permission(request):
            raise PermissionMissing("orders.view_order", to="see orders")
        if not request.user.has_perm(perm):
            raise PermissionMissing(perm, to=to)
        order = self.get_object(request, unquote(object_id))
        if order is None:
            raise Http404("No such order.")
        return order

    def _back(self, order: Order) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:orders_order_change", args=[order.pk]))

    def approve_view(self, request, object_id):
        """Approve the held order (POST, orders.approve_order); a GET shows the page that asks for a note."""
        return self._decision_view(request, object_id, decision="approve")

    def reject_view(self, request, object_id):
        """Reject the held order with a reason (POST, orders.approve_order); a GET shows the page that asks for it."""
        return self._decision_view(request, object_id, decision="reject")

    def _decision_view(self, request, object_id, *, decision: str):
        transition, past = DECISIONS[decision].transition, DECISIONS[decision].past
        order = self._order_for(request, object_id, perm=APPROVE_PERMISSION, to="approve or reject held orders")
        refusal = transition_refusal(order=order, transition=transition)
        if refusal:
            self.message_user(request, f"Nothing was {past}: {refusal}.", messages.ERROR)
            return self._back(order)
        form = DecisionForm(request.POST if request.method == "POST" else None, required=decision == "reject")
        if form.is_bound and form.is_valid():
            self._decide(request, [order], decision=decision, reason=form.cleaned_data["reason"])
            return self._back(order)
        return self._decision_page(
            request,
            decision=decision,
            orders=[order],
            skipped=[],
            form=form,
            post_url=reverse(f"admin:orders_order_{decision}", args=[order.pk]),
        )

    def cancel_view(self, request, object_id):
        """Cancel the order with a reason (POST, orders.cancel_order); a GET shows the page that asks for it."""
        order = self._order_for(request, object_id, perm=CANCEL_PERMISSION, to="cancel orders")
        if order.state in CANCEL_ENDED:
            self._report_not_cancelled(request, [order])
            return self._back(order)
        form = CancelForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            self._cancel(request, [order], reason=form.cleaned_data["reason"])
            return self._back(order)
        return self._cancel_page(
            request,
            orders=[order],
            skipped=[],
            form=form,
            post_url=reverse("admin:orders_order_cancel", args=[order.pk]),
        )

    def retry_flag_view(self, request, object_id, flag_id: int):
        """Try a failed flag's exporter again now (POST, orders.change_order)."""
        order = self._order_for(request, object_id, perm=RETRY_PERMISSION, to="retry exports")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        flag = get_object_or_404(OrderFlag, pk=flag_id, order=order)
        if flag.status != FlagStatus.FAILED:
            self.message_user(
                request,
                f"{flag.flag} is {flag.get_status_display().lower()}, not failed: nothing to retry.",
                messages.WARNING,
            )
            return self._back(order)
        try:
            flag_retry(flag=flag, user=request.user)
        except OrderError as exc:
            self.message_user(request, f"{flag.flag} was not retried: {exc}.", messages.ERROR)
        else:
            self.message_user(
                request, f"{flag.flag} is tried again: the export pass takes it up in a moment.", messages.SUCCESS
            )
        return self._back(order)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        order = self.get_object(request, unquote(object_id))
        extra = {}
        if order is not None:
            extra = order_page_context(
                request,
                order,
                may_decide=self.has_approve_permission(request),
                may_retry=self.has_retry_export_permission(request),
            )
            if self.has_cancel_permission(request) and order.state not in CANCEL_ENDED:
                extra["cancel_url"] = reverse("admin:orders_order_cancel", args=[order.pk])
        return super().change_view(request, object_id, form_url, extra_context={**extra, **(extra_context or {})})


def customer_summary(request, order: Order) -> dict:
    """Say who ordered: the customer's id, name, e-mail, whether inactive, and a link for who may view customers."""
    customer = order.customer
    name = " ".join(part for part in (customer.first_name, customer.last_name) if part)
    return {
        "customer": customer,
        "name": ", ".join(part for part in (name, customer.company_name) if part),
        "url": reverse("admin:syncapp_customer_change", args=[customer.pk])
        if request.user.has_perm("syncapp.view_customer")
        else "",
    }


def lines_summary(order: Order) -> dict:
    """The order's lines as the page's table shows them: product, quantity, unit price and amount in its currency."""
    lines, count = order_lines(order)
    rows = [
        {
            "line": line,
            "product": line.variant.product.title,
            "unit_price": money_text(line.unit_price, order.currency, code=False),
            "amount": money_text(line.quantity * line.unit_price, order.currency, code=False),
        }
        for line in lines
    ]
    whole = len(lines) == count
    return {
        "lines": rows,
        "lines_count": count,
        "lines_total": money_text(sum(line.quantity * line.unit_price for line in lines), order.currency)
        if whole
        else "",
    }


def order_page_context(request, order: Order, *, may_decide: bool, may_retry: bool) -> dict:
    """Gather what an order's page shows above its record: its state and why it is held, who ordered and the total,
    the lines, the decision (Approve, Reject) or what it takes, the timeline, the flags now and who sent it."""
    held = order.state == OrderState.ON_HOLD
    flags = list(order.flags.select_related("exporter").order_by("set_at", "pk"))
    timeline = order_timeline(order)
    transitions = [row for row in timeline if row["kind"] == "event" and row["event"].transition]
    return {
        "order": order,
        "order_held": held,
        "order_total": money_text(order.total, order.currency),
        "held_message": held_reasons([order.pk]).get(order.pk, "") if held else "",
        "last_transition": transitions[-1] if transitions else None,
        "customer_summary": customer_summary(request, order),
        **lines_summary(order),
        "may_decide": may_decide and held,
        "decide_refusal": "" if may_decide else permission_missing_text(APPROVE_PERMISSION, to="approve or reject it"),
        "approve_url": reverse("admin:orders_order_approve", args=[order.pk]),
        "reject_url": reverse("admin:orders_order_reject", args=[order.pk]),
        "reason_max_length": REASON_MAX_LENGTH,
        "order_flags": [
            {
                "flag": flag,
                "retry_url": reverse("admin:orders_order_retry_flag", args=[order.pk, flag.pk])
                if may_retry and flag.status == FlagStatus.FAILED
                else "",
            }
            for flag in flags
        ],
        "order_sent": order_sent(order),
        "timeline": timeline,
        "may_see_exporters": request.user.has_perm("orders.view_exporter")
        or request.user.has_perm("orders.change_exporter"),
        "may_see_answers": request.user.has_perm(ANSWERS_PERMISSION),
    }


HELD_SHOWN = 5


def held_orders_panel(request) -> dict | None:
    """The home page's "Held orders (N)" for whoever may approve: the orders that have waited longest, and why."""
    if not request.user.has_perm(APPROVE_PERMISSION):
        return None
    count, oldest = orders_held(limit=HELD_SHOWN)
    return {
        "id": "hub-held-orders",
        "title": "Held orders",
        "count": count,
        "columns": ["Order", "Customer", "Total", "Held since", "Why held"],
        "rows": [
            [
                (order.order_id, reverse("admin:orders_order_change", args=[order.pk])),
                (order.customer.customer_id, ""),
                (money_text(order.total, order.currency), ""),
                (when_text(order.state_changed_at), ""),
                (order.held_reason or "-", ""),
            ]
            for order in oldest
        ],
        "more": count - len(oldest),
        "url": reverse("admin:orders_order_changelist") + "?approval=awaiting",
        "link": "All held orders",
        "empty": "No order waits for approval.",
    }


# -- exporters and the flags transitions set -------------------------------------------------------


def flag_count(*statuses) -> Coalesce:
    """Count, in a subquery, the exporter's deliveries that stand in one of the statuses."""
    counted = (
        OrderFlag.objects.filter(exporter=OuterRef("pk"), status__in=statuses)
        .order_by()
        .values("exporter")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


KIND_FIELDS = {
    ExporterKind.FILE: ("descriptor", "destination"),
    ExporterKind.WEBHOOK: ("url", "secret", "clear_secret", "timeout_seconds"),
    ExporterKind.APPROVAL: ("min_total",),
}
CHAIN_LIMIT = 100


class ExporterForm(WriteOnlySecretForm):
    """An exporter's settings, checked by its kind; the webhook's secret is never shown and kept when left empty."""

    secret_help = "webhook: the key of the X-Signature HMAC-SHA256."

    class Meta:
        model = Exporter
        fields = (
            "code",
            "name",
            "kind",
            "flag",
            "next_flag",
            "enabled",
            "max_attempts",
            "descriptor",
            "destination",
            "url",
            "secret",
            "timeout_seconds",
            "min_total",
        )
        formfield_callback = https_formfield

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "descriptor" in self.fields:
            self.fields["descriptor"].queryset = DataDescriptor.objects.filter(entity="order").order_by("code")

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        place = next((f for f in Exporter.LOCATION_FIELDS if f in KIND_FIELDS.get(kind, ())), "")
        if place and place not in self.fields and self.instance.pk and kind != self.instance.kind:
            # The place was set for another kind; a new kind that starts using it changes where orders go.
            value = getattr(self.instance, place)
            if value:
                self.add_problem(place, f"As a {kind} exporter it would start using the {place} {value}.")
        # The rules the command keeps too (orders.services.exporter_problems), said on the fields they concern;
        # checked on a copy, before the model's own checks, which then leave those fields alone.
        candidate = construct_instance(self, copy.copy(self.instance))
        for field, found in exporter_problems(candidate, model_checks=False).items():
            for message in found:
                self.add_problem(field, message[0].upper() + message[1:] + ".")
        return data


@admin.register(Exporter)
class ExporterAdmin(LocationFieldsAdminMixin, WriteOnlySecretAdminMixin, admin.ModelAdmin):
    """Exporters: which flag each acts on, its kind and settings, and the flag it sets next (SPEC section 7).

    The URL and the destination are set with impex.change_locations only; the secret is never shown.
    """

    form = ExporterForm
    list_display = (
        "code",
        "name",
        "kind",
        "flag",
        "next_flag_display",
        "enabled",
        "pending_count",
        "failed_count",
        "held_count",
    )
    list_filter = ("kind", "enabled")
    search_fields = ("code", "name", "flag", "next_flag")
    list_per_page = 100
    readonly_fields = ("created_at", "updated_at")

    def get_fieldsets(self, request, obj=None):
        chain = (
            None,
            {"fields": ("code", "name", "kind", "flag", "next_flag", "enabled", "max_attempts")},
        )
        per_kind = []
        for kind, fields in KIND_FIELDS.items():
            # On a saved exporter the settings of the other kinds fold away; a new one shows them all.
            classes = ("collapse",) if obj is not None and obj.kind != kind else ()
            per_kind.append(
                (
                    f"{kind.label} settings",
                    {"fields": fields, "classes": classes, "description": f"Used when the kind is {kind.label}."},
                )
            )
        history = ("History", {"fields": ("created_at", "updated_at")})
        return self.secret_hidden(request, obj, (chain, *per_kind, history))

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                pending=flag_count(FlagStatus.PENDING, FlagStatus.RUNNING),
                failed=flag_count(FlagStatus.FAILED),
                held=flag_count(FlagStatus.HELD),
            )
        )

    @admin.display(description="next flag", ordering="next_flag")
    def next_flag_display(self, obj):
        return obj.next_flag or "- (end of the chain)"

    def _orders_link(self, obj, count: int, exports: str):
        if not count:
            return "0"
        query = urlencode({"flag": obj.flag, "exports": exports})
        return format_html('<a href="{}?{}">{}</a>', reverse("admin:orders_order_changelist"), query, count)

    @admin.display(description="orders pending", ordering="pending")
    def pending_count(self, obj):
        return self._orders_link(obj, obj.pending, "pending")

    @admin.display(description="failed", ordering="failed")
    def failed_count(self, obj):
        return self._orders_link(obj, obj.failed, "failed")

    @admin.display(description="held", ordering="held")
    def held_count(self, obj):
        return self._orders_link(obj, obj.held, "held")

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "url":
            kwargs["assume_scheme"] = "https"
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None:
            # Help texts are HTML; "s3://bucket/prefix" and the like are text.
            field.help_text = escape(field.help_text)
        return field


TRANSITION_HELP = (
    "The transition that sets the flag on the order. With no rule for confirm, confirm sets the first flag of "
    "every chain: each enabled exporter's flag that no exporter sets next."
)


@admin.register(TransitionFlag)
class TransitionFlagAdmin(admin.ModelAdmin):
    """Which transition sets which flag (e.g. confirm sets erp); the exporters do the rest."""

    list_display = ("transition", "flag", "exporter_display")
    list_filter = ("transition",)
    search_fields = ("flag",)
    fields = ("transition", "flag")

    def get_queryset(self, request):
        acting = Exporter.objects.filter(flag=OuterRef("flag"), enabled=True).values("code")[:1]
        return super().get_queryset(request).annotate(exporter_code=Subquery(acting))

    @admin.display(description="acted on by")
    def exporter_display(self, obj):
        return obj.exporter_code or "no enabled exporter: the flag waits"

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "transition":
            field.help_text = TRANSITION_HELP
        return field

    def changelist_view(self, request, extra_context=None):
        confirm = ", ".join(flags_for(transition=OrderTransition.CONFIRM)) or "no flag"
        rules = TransitionFlag.objects.filter(transition=OrderTransition.CONFIRM).exists()
        subtitle = (
            f"confirm sets {confirm} (its rules below)."
            if rules
            else f"No rule for confirm: confirm sets the first flag of every chain, now {confirm}."
        )
        return super().changelist_view(request, extra_context={"subtitle": subtitle, **(extra_context or {})})

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not Exporter.objects.filter(flag=obj.flag, enabled=True).exists():
            self.message_user(
                request,
                f"No enabled exporter acts on {obj.flag} yet: orders will carry it, waiting, until one does.",
                messages.WARNING,
            )


# -- read-only records -----------------------------------------------------------------------------


@admin.register(OrderExportRun)
class OrderExportRunAdmin(AuditRecordAdmin):
    """Each run of an exporter on an order: done, failed (and when it is tried again) or held."""

    list_display = (
        "started_at",
        "order",
        "exporter_code",
        "flag",
        "attempt",
        "status",
        "http_status",
        "short_message",
        "retry_at",
    )
    list_filter = ("status", "exporter")
    search_fields = ("order__order_id",)
    list_select_related = ("order",)
    show_full_result_count = False
    date_hierarchy = "started_at"
    fields = (
        "order",
        "exporter",
        "exporter_code",
        "flag",
        "attempt",
        "status",
        "message",
        "http_status",
        "location",
        "retry_at",
        "event_id",
        "worker",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields

    def get_fields(self, request, obj=None):
        # A receiver's answer may tell about the system behind it: for who may change where exporters send.
        if request.user.has_perm(ANSWERS_PERMISSION):
            return (*self.fields, "response")
        return self.fields

    @admin.display(description="message", ordering="message")
    def short_message(self, obj):
        return Truncator(obj.message).chars(120)


@admin.register(FeedEvent)
class FeedEventAdmin(AuditRecordAdmin):
    """Deliveries reported by carriers or KS_SHIPMENTS files, and whether the feed task applied them."""

    list_display = ("received_at", "event_id", "shipment_id", "order_ref", "source", "connection", "status", "attempts")
    list_filter = ("status", "source", "connection")
    search_fields = ("event_id", "shipment_id", "order_ref", "tracking_number")
    list_select_related = ("connection",)
    show_full_result_count = False
    fields = (
        "event_id",
        "source",
        "connection",
        "shipment_id",
        "order_ref",
        "carrier",
        "tracking_number",
        "shipped_at",
        "line_nos",
        "status",
        "message",
        "attempts",
        "next_attempt_at",
        "claimed_by",
        "lease_until",
        "received_at",
        "applied_at",
    )
    readonly_fields = fields


@admin.register(OrderLine)
class OrderLineAdmin(SyncedEntityAdmin):
    resource_classes = [resources.OrderLineResource]
    list_display = ("order", "line_no", "variant", "quantity", "unit_price_money", "connection")
    list_filter = ("connection",)
    search_fields = ("order__order_id", "variant__sku")
    list_select_related = ("order", "variant", "connection")
    unit_price_money = money_display("unit_price", currency="order__currency")


@admin.register(Shipment)
class ShipmentAdmin(SyncedEntityAdmin):
    resource_classes = [resources.ShipmentResource]
    list_display = ("shipment_id", "order", "carrier", "tracking_number", "shipped_at", "line_nos", "connection")
    list_filter = ("connection",)
    search_fields = ("shipment_id", "order__order_id", "tracking_number")
    list_select_related = ("order", "connection")
