"""Admin of the synced entities (with sheet imports and exports on their pages) and of the sync logs."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from import_export.admin import ExportMixin, ImportExportMixin
from import_export.formats.base_formats import CSV, JSON, TSV
from import_export.forms import ImportForm

from config.adminkit import (
    AuditRecordAdmin,
    ReadOnlyInline,
    SyncedRecordAdminMixin,
    changelist_link,
)
from impex.admin.display import money_display
from impex.admin.export_views import DescriptorExportMixin
from impex.entities import entity_verbose_name
from impex.exceptions import ImpexError
from syncapp import resources
from syncapp.models import (
    Customer,
    Price,
    PriceList,
    Product,
    ProductVariant,
    RecordEvent,
    SpecialOrder,
    SpecialOrderEvent,
    SpecialOrderLineItem,
    StockLevel,
    SyncError,
    SyncLog,
)
from syncapp.selectors import (
    CHART_DAYS,
    DASHBOARD_DAYS,
    chart_layout,
    open_errors,
    sync_activity,
    sync_logs_overview,
)

ADMIN_IMPORT_MAX_BYTES = 5 * 1024 * 1024
DASHBOARD_ERRORS_PER_PAGE = 50


def admin_url_of(model_admin, view: str) -> str:
    """Reverse one of a model admin's own URLs ("export", "descriptor_export", ...)."""
    opts = model_admin.opts
    return reverse(f"{model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_{view}")


class SmallFileImportForm(ImportForm):
    """The admin import form: small sheets only, since django-import-export holds the whole file in memory."""

    def __init__(self, formats, resources, **kwargs):
        super().__init__(formats, resources, **kwargs)
        self.fields["import_file"].help_text = (
            f"A CSV or TSV sheet of up to {filesizeformat(ADMIN_IMPORT_MAX_BYTES)} whose header names fields "
            "listed above (absent ones are left alone), checked and applied as an import file is. "
            "Bigger files and zips: <code>manage.py impex_import</code>."
        )

    def clean_import_file(self):
        upload = self.cleaned_data["import_file"]
        if upload.size > ADMIN_IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                f"This file is {filesizeformat(upload.size)}; the admin import takes up to "
                f"{filesizeformat(ADMIN_IMPORT_MAX_BYTES)}. Import it with manage.py impex_import."
            )
        return upload


class EntityExportAdmin(SyncedRecordAdminMixin, DescriptorExportMixin, ExportMixin, admin.ModelAdmin):
    """Admin of a synced entity: read-only, big-table friendly, with one "Export": its descriptors' files or a sheet."""

    export_formats = [CSV, TSV, JSON]
    list_per_page = 100
    show_full_result_count = False
    readonly_fields = ("connection", "created_at", "updated_at")

    def get_fields(self, request, obj=None):
        """A record's page: money fields as their FIELD_money display (the currency's decimals and code)."""
        fields = super().get_fields(request, obj)
        return [f"{name}_money" if hasattr(self, f"{name}_money") else name for name in fields]

    def sheet_export_url(self, request):
        if not self.has_export_permission(request):
            return None
        query = request.GET.urlencode()
        return admin_url_of(self, "export") + (f"?{query}" if query else "")

    def init_request_context_data(self, request, form):
        """The sheet page: its title, and the way back to a descriptor's file for who may download one."""
        context = super().init_request_context_data(request, form)
        context["title"] = f"Export {self.opts.verbose_name_plural}: a sheet"
        if self.has_descriptor_export_permission(request):
            query = request.GET.urlencode()
            context["descriptor_export_url"] = admin_url_of(self, "descriptor_export") + (f"?{query}" if query else "")
        return context


class SyncedEntityAdmin(ImportExportMixin, EntityExportAdmin):
    """Admin of a synced entity whose sheets import through the record pipeline with the entity's descriptor."""

    import_form_class = SmallFileImportForm
    import_formats = [resources.SheetCSV, resources.SheetTSV]
    import_template_name = "admin/sheet_import.html"

    def import_action(self, request, **kwargs):
        """Preview a sheet: a refused sheet is an error of the form; refused rows are listed and the rest offered."""
        response = super().import_action(request, **kwargs)
        context = getattr(response, "context_data", None) or {}
        result = context.get("result")
        if result is None:
            return response
        if result.base_errors:
            for error in result.base_errors:
                context["form"].add_error("import_file", str(error.error))
            del context["result"]
        elif "confirm_form" not in context and result.totals["invalid"] < result.total_rows:
            # A refused row is refused alone, as in a file: the other rows may still go in.
            context["confirm_form"] = self.create_confirm_form(request, import_form=context["form"])
        return response

    def add_data_read_fail_error_to_form(self, form, e):
        if isinstance(e, ImpexError):
            form.add_error("import_file", str(e))
        elif isinstance(e, UnicodeDecodeError):
            form.add_error("import_file", "not valid UTF-8: save the sheet as UTF-8")
        else:
            super().add_data_read_fail_error_to_form(form, e)

    def generate_log_entries(self, result, request):
        """Record the import in the admin history as one entry with its counts (the pipeline writes sets of rows)."""
        if self.get_skip_admin_log():
            return
        LogEntry.objects.create(
            user_id=request.user.pk,
            content_type=ContentType.objects.get_for_model(self.model),
            object_repr=(result.file_name or "sheet")[:200],
            action_flag=CHANGE,
            change_message=f"Imported the sheet {result.file_name}: {result.summary()}.",
        )

    def add_success_message(self, result, request):
        level = messages.WARNING if result.totals["invalid"] else messages.SUCCESS
        messages.add_message(
            request, level, f"Import finished ({self.model._meta.verbose_name_plural}): {result.summary()}."
        )


@admin.register(Customer)
class CustomerAdmin(SyncedEntityAdmin):
    resource_classes = [resources.CustomerResource]
    list_display = (
        "customer_id",
        "email",
        "first_name",
        "last_name",
        "company_name",
        "group",
        "price_list",
        "parent",
        "active",
        "connection",
    )
    list_filter = ("active", "payment_on_account", "connection")
    search_fields = ("customer_id", "email", "first_name", "last_name", "company_name", "accounting_id")
    list_select_related = ("parent", "connection")


RRP = "RRP"


class ProductVariantInline(ReadOnlyInline):
    model = ProductVariant
    fields = ("variant_id", "sku", "status", "options", "rrp_money", "restock_date")
    readonly_fields = fields
    rrp_money = money_display("rrp", description=RRP)


@admin.register(Product)
class ProductAdmin(EntityExportAdmin):
    """Products: no import here, as no descriptor has products alone; the variants' page imports KS_PRODUCTS."""

    resource_classes = [resources.ProductResource]
    list_display = ("product_id", "title", "slug", "status", "variant_count", "connection")
    list_filter = ("status", "connection")
    search_fields = ("product_id", "title", "slug")
    list_select_related = ("connection",)
    inlines = (ProductVariantInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(variant_count=Count("variants"))

    @admin.display(description="variants", ordering="variant_count")
    def variant_count(self, obj):
        return obj.variant_count


@admin.register(ProductVariant)
class ProductVariantAdmin(SyncedEntityAdmin):
    resource_classes = [resources.ProductVariantResource]
    list_display = ("sku", "variant_id", "product", "status", "options", "rrp_money", "restock_date", "connection")
    list_filter = ("status", "connection")
    search_fields = ("sku", "variant_id", "product__product_id", "product__title")
    list_select_related = ("product", "connection")
    rrp_money = money_display("rrp", description=RRP)


@admin.register(StockLevel)
class StockLevelAdmin(SyncedEntityAdmin):
    resource_classes = [resources.StockLevelResource]
    list_display = ("variant", "location", "quantity", "restock_date", "connection")
    list_filter = ("connection",)
    search_fields = ("variant__sku", "location")
    list_select_related = ("variant", "connection")


@admin.register(PriceList)
class PriceListAdmin(EntityExportAdmin):
    """Price lists: no import here, as no descriptor has price lists alone; KS_PRICES sheets create them."""

    resource_classes = [resources.PriceListResource]
    list_display = ("code", "connection", "prices")
    list_filter = ("connection",)
    search_fields = ("code",)
    list_select_related = ("connection",)

    @admin.display(description="prices")
    def prices(self, obj):
        return changelist_link(Price, "prices", price_list__id__exact=obj.pk)


@admin.register(Price)
class PriceAdmin(SyncedEntityAdmin):
    resource_classes = [resources.PriceResource]
    list_display = ("price_list", "variant", "price_money", "min_quantity", "connection")
    list_filter = ("price_list", "connection")
    search_fields = ("variant__sku", "price_list__code")
    list_select_related = ("price_list", "variant", "connection")
    price_money = money_display("price", currency="currency")


class SpecialOrderLineItemInline(ReadOnlyInline):
    model = SpecialOrderLineItem
    fields = ("line_item_id", "sku", "product_name", "quantity", "unit_price_money", "notes")
    readonly_fields = fields
    unit_price_money = money_display("unit_price", currency="special_order__currency")


class SpecialOrderEventInline(ReadOnlyInline):
    model = SpecialOrderEvent
    fields = ("event_id", "event_type", "event_at", "associate_id", "note")
    readonly_fields = fields


@admin.register(SpecialOrder)
class SpecialOrderAdmin(SyncedEntityAdmin):
    resource_classes = [resources.SpecialOrderResource]
    list_display = (
        "special_order_id",
        "store_id",
        "client_id",
        "order_type",
        "status",
        "total_amount_money",
        "ordered_at",
        "promised_date",
        "connection",
    )
    list_filter = ("status", "order_type", "connection")
    search_fields = ("special_order_id", "client_id", "store_id", "associate_id")
    list_select_related = ("connection",)
    total_amount_money = money_display("total_amount", currency="currency")
    deposit_amount_money = money_display("deposit_amount", currency="currency")
    date_hierarchy = "ordered_at"
    inlines = (SpecialOrderLineItemInline, SpecialOrderEventInline)


@admin.register(SpecialOrderLineItem)
class SpecialOrderLineItemAdmin(SyncedEntityAdmin):
    resource_classes = [resources.SpecialOrderLineItemResource]
    list_display = (
        "line_item_id",
        "special_order",
        "sku",
        "product_name",
        "quantity",
        "unit_price_money",
        "connection",
    )
    list_filter = ("connection",)
    search_fields = ("line_item_id", "special_order__special_order_id", "sku", "product_name")
    list_select_related = ("special_order", "connection")
    unit_price_money = money_display("unit_price", currency="special_order__currency")


@admin.register(SpecialOrderEvent)
class SpecialOrderEventAdmin(SyncedEntityAdmin):
    resource_classes = [resources.SpecialOrderEventResource]
    list_display = ("event_id", "special_order", "event_type", "event_at", "associate_id", "connection")
    list_filter = ("event_type", "connection")
    search_fields = ("event_id", "special_order__special_order_id", "associate_id")
    list_select_related = ("special_order", "connection")


@admin.register(SyncLog)
class SyncLogAdmin(AuditRecordAdmin):
    """Sync logs: the list of every connection's entities, and a dashboard per log (its change page)."""

    list_display = (
        "connection",
        "entity_name",
        "last_full_sync",
        "last_partial_sync",
        "open_error_count",
        "dashboard_link",
    )
    list_display_links = ("entity_name",)
    list_filter = ("connection", "entity")
    search_fields = ("entity", "connection__code")
    list_select_related = ("connection",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(open_error_count=Count("errors"))

    @admin.display(description="open errors", ordering="open_error_count")
    def open_error_count(self, obj):
        return obj.open_error_count

    @admin.display(description="entity", ordering="entity")
    def entity_name(self, obj):
        return entity_verbose_name(obj.entity)

    @admin.display(description="dashboard")
    def dashboard_link(self, obj):
        url = reverse("admin:syncapp_synclog_change", args=[obj.pk])
        return format_html('<a href="{}">Dashboard</a>', url)

    def get_urls(self):
        hub = path("dashboard/", self.admin_site.admin_view(self.hub_dashboard_view), name="syncapp_synclog_dashboard")
        return [hub, *super().get_urls()]

    def hub_dashboard_view(self, request):
        """The whole hub's syncs: every connection's entities with their last syncs and open errors, and a chart."""
        if request.method != "GET" or not self.has_view_or_change_permission(request):
            raise PermissionDenied
        try:
            days = int(request.GET.get("days", CHART_DAYS))
        except ValueError:
            days = CHART_DAYS
        if days not in DASHBOARD_DAYS:
            days = CHART_DAYS
        activity = sync_activity(days=days)
        logs = sync_logs_overview(activity=activity)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Sync overview: the whole hub",
            "subtitle": None,
            "logs": logs,
            "open_count": sum(row["log"].open_error_count for row in logs),
            "connection_count": len({row["log"].connection_id for row in logs}),
            "chart": chart_layout(activity.days),
            "days": activity.days,
            "day_choices": DASHBOARD_DAYS,
            "totals": activity.totals,
            "errors_url": reverse("admin:syncapp_syncerror_changelist"),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/syncapp/synclog/hub_dashboard.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        log = self.get_object(request, object_id)
        if log is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        # The dashboard is read-only, for everyone: nothing to post.
        if request.method != "GET" or not self.has_view_or_change_permission(request, log):
            raise PermissionDenied
        query = request.GET.get("q", "").strip()[:200]
        errors = open_errors(log, query=query)
        page = Paginator(errors, DASHBOARD_ERRORS_PER_PAGE).get_page(request.GET.get("p"))
        activity = sync_activity(connection_id=log.connection_id, entity=log.entity)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Sync log: {log.connection.code}, {entity_verbose_name(log.entity)}",
            "subtitle": None,
            "log": log,
            "entity_name": entity_verbose_name(log.entity),
            "open_count": SyncError.objects.filter(log=log).count(),
            "errors_page": page,
            "query": query,
            "chart": chart_layout(activity.days),
            "days": activity.days,
            "totals": activity.totals,
            "connection_url": reverse("admin:impex_connection_change", args=[log.connection_id]),
            "errors_url": reverse("admin:syncapp_syncerror_changelist") + f"?log__id__exact={log.pk}",
            "original": log,
            "has_view_permission": True,
            "has_change_permission": False,
            "has_delete_permission": False,
            "has_add_permission": False,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/syncapp/synclog/dashboard.html", context)


@admin.register(SyncError)
class SyncErrorAdmin(AuditRecordAdmin):
    list_display = ("external_id", "log", "message", "file_name", "row", "job", "created_at", "updated_at")
    list_filter = ("log__connection", "log__entity")
    search_fields = ("external_id", "message", "file_name")
    list_select_related = ("log", "log__connection", "job")
    show_full_result_count = False
    fields = (
        "log",
        "external_id",
        "message",
        "file_name",
        "row",
        "job",
        "record_event",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields


@admin.register(RecordEvent)
class RecordEventAdmin(AuditRecordAdmin):
    """Single-record updates sent over HTTP: what came, when it was applied, and how it went."""

    list_display = (
        "pk",
        "connection",
        "entity",
        "record_key",
        "status",
        "result",
        "attempts",
        "received_at",
        "applied_at",
    )
    list_filter = ("status", "entity", "connection")
    search_fields = ("record_key", "message")
    list_select_related = ("connection",)
    show_full_result_count = False
    fields = (
        "connection",
        "entity",
        "descriptor_code",
        "record_key",
        "payload",
        "status",
        "result",
        "message",
        "attempts",
        "received_at",
        "next_attempt_at",
        "applied_at",
        "claimed_by",
        "lease_until",
    )
    readonly_fields = fields
