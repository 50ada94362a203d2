"""Builders for order tests: import customers, products, orders and lines through impex_import, as files arrive."""

from pathlib import Path

from impex.tests.helpers import customer_row, run_import, write_kore


def _next_sequence(connection: str) -> int:
    from django.db.models import Max

    from impex.models import ImportFile

    last = ImportFile.objects.filter(connection__code=connection).aggregate(n=Max("sequence"))["n"]
    return (last or 0) + 1


def order_row(order_id: str, customer_id: str = "CU1", *, total: str = "30", currency: str = "EUR", **values) -> dict:
    """Return a KS_ORDERS row."""
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "order_date": "2026-11-01T10:00:00Z",
        "currency": currency,
        "total": total,
        **values,
    }


def line_row(order_id: str, line_no: int, sku: str = "SKU1", *, quantity: int = 1, unit_price: str = "10") -> dict:
    """Return a KS_ORDER_LINES row."""
    return {
        "order_id": order_id,
        "line_no": str(line_no),
        "sku": sku,
        "quantity": str(quantity),
        "unit_price": unit_price,
    }


def import_rows(folder: Path, api: str, rows: list[dict], *, connection: str = "kore-erp") -> dict:
    """Write one Kore file of rows (the next sequence number) and import it; return the report's one file."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = write_kore(Path(folder), api, _next_sequence(connection), rows)
    code, report = run_import(path, connection=connection)
    assert code == 0, report
    (result,) = report["files"]
    assert result["status"] == "imported" and result["failed"] == 0, result
    return result


def import_catalogue(folder: Path, *, customers=("CU1", "CU2"), inactive=(), skus=("SKU1", "SKU2", "SKU3")) -> None:
    """Import customers (some inactive) and one product with a variant per SKU."""
    import_rows(
        folder,
        "KS_CUSTOMERS",
        [customer_row(c, active="false" if c in inactive else "true") for c in (*customers, *inactive)],
    )
    import_rows(
        folder,
        "KS_PRODUCTS",
        [{"product_id": "P1", "title": "Shirt", "variant_id": f"V-{s}", "sku": s} for s in skus],
    )


def import_orders(folder: Path, orders: list[dict], lines: list[dict]) -> None:
    """Import a KS_ORDERS file, then a KS_ORDER_LINES file (orders with lines are confirmed as the lines go in)."""
    import_rows(folder, "KS_ORDERS", orders)
    if lines:
        import_rows(folder, "KS_ORDER_LINES", lines)


def configure(*args: str) -> dict:
    """Run orders_exporter with the arguments and --json; return its JSON."""
    import io
    import json

    from django.core.management import call_command

    out = io.StringIO()
    call_command("orders_exporter", *args, "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def export_pass(*args: str) -> list[dict]:
    """Run orders_export --json; return its runs."""
    import io
    import json

    from django.core.management import call_command

    out = io.StringIO()
    call_command("orders_export", *args, "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])["runs"]
