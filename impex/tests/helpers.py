"""Builders for import tests: write Kore TSV and BSPK CSV files, run impex_import and read its JSON."""

import csv
import io
import json
import os
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.utils import timezone


def kore_name(api: str, sequence: int, *, mode: str = "NET", integration: str = "INT1", source: str = "ERP") -> str:
    """Return a Kore file name `{source}_{sequence}_{integration}_{API}.{mode}`."""
    return f"{source}_{sequence:07d}_{integration}_{api}.{mode}"


def bspk_name(file_type: str, timestamp: str = "202611011000", *, company: str = "Acme", version: str = "V2") -> str:
    """Return a BSPK file name `TYPE_VERSION_CompanyName_YYYYMMDDHHMM.csv`."""
    return f"{file_type}_{version}_{company}_{timestamp}.csv"


def columns_of(rows: list[dict]) -> list[str]:
    """Return the keys of all rows, in the order they first appear."""
    return list(dict.fromkeys(key for row in rows for key in row))


def table_text(rows: list[dict], *, delimiter: str, columns: list[str] | None = None) -> str:
    """Return rows (dicts) as delimited text with a header row; keys a row lacks are empty cells."""
    columns = columns or columns_of(rows)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    return out.getvalue()


def write_kore(
    folder: Path,
    api: str,
    sequence: int,
    rows: list[dict],
    *,
    mode: str = "NET",
    integration: str = "INT1",
    columns: list[str] | None = None,
) -> Path:
    """Write a Kore tab-delimited file with a header row and return its path."""
    path = Path(folder) / kore_name(api, sequence, mode=mode, integration=integration)
    path.write_text(table_text(rows, delimiter="\t", columns=columns), encoding="utf-8", newline="")
    return path


def write_bspk(
    folder: Path,
    file_type: str,
    rows: list[dict],
    *,
    timestamp: str = "202611011000",
    columns: list[str] | None = None,
) -> Path:
    """Write a BSPK comma-separated file with a header row and return its path."""
    path = Path(folder) / bspk_name(file_type, timestamp)
    path.write_text(table_text(rows, delimiter=",", columns=columns), encoding="utf-8", newline="")
    return path


def write_raw(folder: Path, name: str, content: str | bytes) -> Path:
    """Write a file exactly as given (text as UTF-8) and return its path."""
    path = Path(folder) / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def run_import(*paths: Path | str, **options) -> tuple[int, dict]:
    """Run impex_import --json on the paths; return its exit code and the JSON of its last line."""
    out = io.StringIO()
    args = [str(p) for p in paths]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value not in (None, False):
            args += [flag, str(value)]
    code = 0
    try:
        call_command("impex_import", *args, "--json", stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        code = exc.code
    lines = out.getvalue().strip().splitlines()
    return code, json.loads(lines[-1])


def only_file(report: dict) -> dict:
    """Return the one file of an import report."""
    assert len(report["files"]) == 1, report
    return report["files"][0]


def file_named(report: dict, name: str) -> dict:
    """Return the file of an import report that has this name."""
    matches = [f for f in report["files"] if f["name"] == name]
    assert len(matches) == 1, report
    return matches[0]


def counts(file_result: dict) -> dict:
    """Return the counts of one file of an import report."""
    return {k: file_result[k] for k in ("created", "updated", "unchanged", "retired", "failed")}


def customer_row(customer_id: str, **values) -> dict:
    """Return a KS_CUSTOMERS row with an e-mail address derived from the id."""
    return {"customer_id": customer_id, "email": f"{customer_id.lower()}@example.com", **values}


def product_row(product_id: str, variant_id: str, sku: str, **values) -> dict:
    """Return a KS_PRODUCTS row (one variant of a product)."""
    return {"product_id": product_id, "title": f"Product {product_id}", "variant_id": variant_id, "sku": sku, **values}


def special_order_row(special_order_id: str, **values) -> dict:
    """Return a valid SPECIAL-ORDERS row."""
    row = {
        "special_order_id": special_order_id,
        "store_id": "S1",
        "client_id": "CL1",
        "order_type": "REPAIR",
        "status": "OPEN",
        "created_at": "2026-11-01T10:00:00Z",
    }
    row.update(values)
    return row


def process_env(**extra) -> dict:
    """Return the environment of a manage.py process working on this test's database and folders."""
    import os

    from django.conf import settings

    from impex.services.sql import database_url

    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        # Every process of one deployment shares the key: the cluster drops tasks signed with another one.
        "SECRET_KEY": settings.SECRET_KEY,
        "IMPEX_ROOT": str(settings.IMPEX_ROOT),
        "IMPEX_CACHE_DIR": str(settings.IMPEX_CACHE_DIR),
        "IMPEX_ALLOWED_HOSTS_OUTBOUND": ",".join(settings.IMPEX_ALLOWED_HOSTS_OUTBOUND),
        "IMPEX_ALLOWED_LOCAL_ROOTS": ",".join(settings.IMPEX_ALLOWED_LOCAL_ROOTS),
        "SFTP_HOSTS": json.dumps(settings.SFTP_HOSTS),
        **{k: str(v) for k, v in extra.items()},
    }


def inbox_of(conn) -> Path:
    """Return (and make) a connection's default local inbox, IMPEX_ROOT/<code>/inbox."""
    folder = Path(settings.IMPEX_ROOT) / conn.code / "inbox"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def aged(path: Path) -> Path:
    """Give a file (or a link itself) a modification time in the past, as a file that has sat there a while."""
    past = time.time() - 60
    os.utime(path, (past, past), follow_symlinks=False)
    return path


LAPSED = timedelta(seconds=1)


def lapse(rows) -> int:
    """End now the leases held on rows (a queryset with lease_until), as a machine whose clock is past them sees
    them: the test sets the state instead of waiting for it. Return how many leases it ended."""
    return rows.exclude(lease_until=None).update(lease_until=timezone.now() - LAPSED)
