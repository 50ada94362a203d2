"""Choices of the impex domain."""

from django.db import models


class Convention(models.TextChoices):
    BSPK = "bspk", "BSPK (TYPE_VERSION_Company_YYYYMMDDHHMM.csv)"
    KORE = "kore", "Kore ({source}_{sequence}_{integration}_{API}.{mode})"


class FileFormat(models.TextChoices):
    CSV = "csv", "CSV"
    TSV = "tsv", "TSV"
    XML = "xml", "XML"


class Entity(models.TextChoices):
    SPECIAL_ORDER = "special_order", "Special order"
    SPECIAL_ORDER_LINE_ITEM = "special_order_line_item", "Special order line item"
    SPECIAL_ORDER_EVENT = "special_order_event", "Special order event"
    CUSTOMER = "customer", "Customer"
    PRODUCT_VARIANT = "product_variant", "Product variant (and its product)"
    STOCK_LEVEL = "stock_level", "Stock level"
    PRICE = "price", "Price"
    ORDER = "order", "Order"
    ORDER_LINE = "order_line", "Order line"
    SHIPMENT = "shipment", "Shipment"


class ColumnType(models.TextChoices):
    STRING = "string"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    CHOICE = "choice"
    REFERENCE = "reference"


class BooleanStyle(models.TextChoices):
    YN = "Y/N", "Y / N"
    TRUE_FALSE = "true/false", "true / false"
    ONE_ZERO = "1/0", "1 / 0"


class GroupDirection(models.TextChoices):
    IMPORT = "import"
    EXPORT = "export"


class Mode(models.TextChoices):
    FULL = "FULL", "Full refresh"
    NET = "NET", "Net (new and changed)"
    DELTA = "DELTA", "Delta (upsert only)"


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ERRORED = "errored"


class JobSource(models.TextChoices):
    COMMAND = "command"
    ADMIN = "admin"
    SCAN = "scan"


class FileStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    IMPORTED = "imported"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    WAITING = "waiting"


class ChunkStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
