"""django-import-export resources of the synced entities: the sheets imported and exported on their admin pages.

A sheet uploaded on an entity's page goes through the record pipeline with the entity's built-in
descriptor, as a file does: the descriptor's converters read the values, absent columns are left alone,
rows equal to what is stored are not written, and a bad row is refused alone while the good rows go in.
A sheet has no connection, so it has no ledger entry and no sync log. An export writes the descriptor's
columns formatted as the descriptor exports them, text a spreadsheet would run as a formula neutralised
(SPEC section 12), so an exported sheet imports back unchanged.
"""

import tempfile
from pathlib import Path

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.functional import cached_property
from import_export import fields, resources
from import_export.formats import base_formats
from import_export.results import Error, Result, RowResult
from tablib import Dataset

from impex.builtin import column_names
from impex.choices import ColumnType
from impex.exceptions import ImpexError
from impex.formats.readers import Layout, Record, iter_records, scan
from impex.formats.writers import neutralise_cell
from impex.models import DataDescriptor
from impex.services.columns import compile_descriptor, format_value, value_styles
from impex.services.pipeline import BatchResult, RecordPipeline
from syncapp.models import (
    Customer,
    Price,
    PriceList,
    Product,
    ProductVariant,
    SpecialOrder,
    SpecialOrderEvent,
    SpecialOrderLineItem,
    StockLevel,
)

NUMERIC = (ColumnType.INTEGER, ColumnType.DECIMAL)


class SheetDataset(Dataset):
    """A sheet read by the hub's file reader, with its records as read (one it could not read has an error)."""

    def __init__(self, *, header: list[str], records: list[Record]):
        blank = [""] * len(header)
        super().__init__(*(blank if record.error else record.values for record in records), headers=header)
        self.records = records


def read_sheet(data: str | bytes, *, layout: Layout) -> SheetDataset:
    """Read an uploaded CSV or TSV sheet as files are read: header checks, quoting, cells per row."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sheet"
        path.write_text(text, encoding="utf-8", newline="")
        header = scan(path, layout=layout).header
        records = list(iter_records(path, layout=layout, header=header, as_list=True))
    return SheetDataset(header=header, records=records)


class SheetCSV(base_formats.CSV):
    """A CSV sheet, read as the hub reads CSV files: a row with too many or too few cells is refused alone."""

    def create_dataset(self, in_stream, **kwargs):
        return read_sheet(in_stream, layout=Layout(format="csv"))


class SheetTSV(base_formats.TSV):
    """A tab-delimited sheet, read as the hub reads Kore files."""

    def create_dataset(self, in_stream, **kwargs):
        return read_sheet(in_stream, layout=Layout(format="tsv"))


def sheet_records(dataset: Dataset) -> list[Record]:
    """Return a dataset's rows as pipeline records, numbered as the sheet shows them (the header is row 1)."""
    if isinstance(dataset, SheetDataset):
        # Copies: the pipeline may add a cell to a record, and the dataset may be imported again.
        return [Record(r.index, r.row, None if r.values is None else list(r.values), r.error) for r in dataset.records]
    return [
        Record(index=index, row=index + 2, values=["" if v is None else str(v) for v in row], error=None)
        for index, row in enumerate(dataset)
    ]


class SheetResult(Result):
    """What importing a sheet did: django-import-export's totals and refused rows, and the sheet's name."""

    file_name = ""

    def summary(self) -> str:
        """Say what the import did, in counts."""
        totals = self.totals
        return (
            f"{totals[RowResult.IMPORT_TYPE_NEW]} new, {totals[RowResult.IMPORT_TYPE_UPDATE]} updated, "
            f"{totals[RowResult.IMPORT_TYPE_SKIP]} unchanged, {totals[RowResult.IMPORT_TYPE_INVALID]} refused"
        )


class SafeExportResource(resources.ModelResource):
    """Exports formatted as the entity's descriptor writes them, with text a spreadsheet would run neutralised."""

    descriptor_code = ""

    @cached_property
    def export_styles(self) -> tuple[dict[str, str], dict[str, str]]:
        """Return the descriptor's column types by name and its value styles (none for an entity without one)."""
        if not self.descriptor_code:
            return {}, {}
        descriptor = DataDescriptor.objects.get(code=self.descriptor_code)
        return dict(descriptor.columns.values_list("name", "type")), value_styles(descriptor)

    def export_field(self, field, instance, **kwargs):
        kinds, styles = self.export_styles
        kind = kinds.get(field.column_name, ColumnType.STRING)
        text = format_value(field.get_value(instance), kind=kind, **styles)
        return neutralise_cell(text, numeric=kind in NUMERIC)


class SheetResource(SafeExportResource):
    """A synced entity's sheets: imported through the record pipeline with its descriptor, exported as it writes."""

    def get_result_class(self):
        return SheetResult

    def import_data(self, dataset, dry_run=False, raise_errors=False, **kwargs):
        """Apply a sheet's rows through the descriptor's pipeline in one transaction, rolled back on a dry run."""
        result = self.get_result_class()()
        result.file_name = kwargs.get("file_name") or ""
        header = [str(name).strip() for name in dataset.headers or []]
        records = sheet_records(dataset)
        result.diff_headers = header
        result.total_rows = len(records)
        try:
            applied = self.apply_sheet(header=header, records=records, dry_run=dry_run)
        except ImpexError as exc:
            if raise_errors:
                raise
            result.append_base_error(Error(exc))
            return result
        totals = applied.totals
        result.totals[RowResult.IMPORT_TYPE_NEW] = totals.created
        result.totals[RowResult.IMPORT_TYPE_UPDATE] = totals.updated
        result.totals[RowResult.IMPORT_TYPE_SKIP] = totals.unchanged
        result.totals[RowResult.IMPORT_TYPE_INVALID] = totals.failed
        errors: dict[int, dict[str, list[str]]] = {}
        for problem in applied.problems:
            errors.setdefault(problem.row, {}).setdefault(problem.column or NON_FIELD_ERRORS, []).append(
                problem.message
            )
        # An unreadable row has no cells; the pipeline may have added one for a key column the sheet lacks.
        cells = {record.row: record.values or [] for record in records}
        for row in sorted(errors):
            values = dict(zip(header, cells[row], strict=False))
            result.append_invalid_row(row, values, ValidationError(errors[row]))
        return result

    def apply_sheet(self, *, header: list[str], records: list[Record], dry_run: bool) -> BatchResult:
        """Run the records through the pipeline as one batch (a sheet has no connection: no ledger, no sync log)."""
        descriptor = DataDescriptor.objects.get(code=self.descriptor_code)
        compiled = compile_descriptor(descriptor, tz=timezone.get_current_timezone_name())
        pipeline = RecordPipeline(compiled=compiled, header=header, connection_id=None, in_file=False)
        try:
            with transaction.atomic():
                applied = pipeline.apply(records, final=True)
                if compiled.spec.after_file is not None:
                    compiled.spec.after_file()
                if dry_run:
                    transaction.set_rollback(True)
        finally:
            pipeline.drop()
        return applied


class CustomerResource(SheetResource):
    """Customers in the KS_CUSTOMERS layout."""

    descriptor_code = "KS_CUSTOMERS"
    parent_customer_id = fields.Field(attribute="parent__customer_id", column_name="parent_customer_id")

    class Meta:
        model = Customer
        fields = export_order = column_names("KS_CUSTOMERS")

    def get_queryset(self):
        return super().get_queryset().select_related("parent")


class ProductResource(SafeExportResource):
    """Products, exported only: no descriptor of their own; KS_PRODUCTS sheets (the variants' page) bring them."""

    class Meta:
        model = Product
        fields = export_order = ("product_id", "title", "slug", "status")


class ProductVariantResource(SheetResource):
    """Product variants in the KS_PRODUCTS layout: one row per variant, carrying its product's title and slug."""

    descriptor_code = "KS_PRODUCTS"
    product_id = fields.Field(attribute="product__product_id", column_name="product_id")
    title = fields.Field(attribute="product__title", column_name="title")
    slug = fields.Field(attribute="product__slug", column_name="slug")

    class Meta:
        model = ProductVariant
        fields = export_order = column_names("KS_PRODUCTS")

    def get_queryset(self):
        return super().get_queryset().select_related("product")


class StockLevelResource(SheetResource):
    """Stock levels in the KS_INVENTORY layout, keyed by sku and location."""

    descriptor_code = "KS_INVENTORY"
    sku = fields.Field(attribute="variant__sku", column_name="sku")

    class Meta:
        model = StockLevel
        fields = export_order = column_names("KS_INVENTORY")

    def get_queryset(self):
        return super().get_queryset().select_related("variant")


class PriceListResource(SafeExportResource):
    """Price lists by code, exported only: a KS_PRICES sheet (the prices' page) creates the lists it names."""

    class Meta:
        model = PriceList
        fields = export_order = ("code",)


class PriceResource(SheetResource):
    """Prices in the KS_PRICES layout, keyed by price list, sku and minimum quantity."""

    descriptor_code = "KS_PRICES"
    price_list = fields.Field(attribute="price_list__code", column_name="price_list")
    sku = fields.Field(attribute="variant__sku", column_name="sku")

    class Meta:
        model = Price
        fields = export_order = column_names("KS_PRICES")

    def get_queryset(self):
        return super().get_queryset().select_related("price_list", "variant")


class SpecialOrderResource(SheetResource):
    """Special orders in the BSPK SPECIAL-ORDERS layout (the column created_at is the field ordered_at)."""

    descriptor_code = "SPECIAL-ORDERS"
    created_at = fields.Field(attribute="ordered_at", column_name="created_at")

    class Meta:
        model = SpecialOrder
        fields = export_order = column_names("SPECIAL-ORDERS")


class SpecialOrderLineItemResource(SheetResource):
    """Special order line items in the BSPK SPECIAL-ORDER-LINE-ITEMS layout."""

    descriptor_code = "SPECIAL-ORDER-LINE-ITEMS"
    special_order_id = fields.Field(attribute="special_order__special_order_id", column_name="special_order_id")

    class Meta:
        model = SpecialOrderLineItem
        fields = export_order = column_names("SPECIAL-ORDER-LINE-ITEMS")

    def get_queryset(self):
        return super().get_queryset().select_related("special_order")


class SpecialOrderEventResource(SheetResource):
    """Special order events in the BSPK SPECIAL-ORDER-EVENTS layout."""

    descriptor_code = "SPECIAL-ORDER-EVENTS"
    special_order_id = fields.Field(attribute="special_order__special_order_id", column_name="special_order_id")

    class Meta:
        model = SpecialOrderEvent
        fields = export_order = column_names("SPECIAL-ORDER-EVENTS")

    def get_queryset(self):
        return super().get_queryset().select_related("special_order")
