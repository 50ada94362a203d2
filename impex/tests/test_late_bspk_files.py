"""Late BSPK files (SPEC sections 4 and 12): a file older than the newest applied one of its TYPE and connection is
rejected as "behind" and changes nothing; other TYPEs, other connections and files of one zip are not held back."""

import importlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from impex.models import Connection, ConnectionState
from impex.tests.helpers import (
    aged,
    bspk_name,
    file_named,
    inbox_of,
    only_file,
    run_import,
    special_order_row,
    table_text,
    write_bspk,
    write_raw,
)
from syncapp.models import SpecialOrder, SpecialOrderLineItem

BEHIND = "timestamp 202611010900 is behind: SPECIAL-ORDERS of 202611011000 is already applied"


def special_orders(folder: Path, timestamp: str, status: str, *, company: str = "Acme", so: str = "SO-1") -> Path:
    """Write a SPECIAL-ORDERS file of one special order in the given status."""
    rows = [special_order_row(so, status=status)]
    return write_raw(folder, bspk_name("SPECIAL-ORDERS", timestamp, company=company), table_text(rows, delimiter=","))


def error_folder(conn: Connection) -> set[str]:
    folder = Path(settings.IMPEX_ROOT) / conn.code / "error"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def scan(code: str) -> tuple[dict, int]:
    """Run impex_scan --json for one connection; return its JSON and exit code."""
    out = io.StringIO()
    exit_code = 0
    try:
        call_command("impex_scan", "--json", "--connection", code, stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        exit_code = exc.code
    return json.loads(out.getvalue().strip().splitlines()[-1]), exit_code


def test_a_special_orders_file_older_than_the_applied_one_is_rejected_as_behind_and_changes_nothing(
    tmp_path, bspk_connection
):
    assert run_import(special_orders(tmp_path, "202611011000", "READY"))[0] == 0
    late = special_orders(tmp_path, "202611010900", "OPEN")

    code, report = run_import(late)

    assert code == 1
    result = only_file(report)
    assert result["status"] == "rejected"
    assert BEHIND in result["errors"][0]["message"]
    assert SpecialOrder.objects.get().status == "READY"
    assert error_folder(bspk_connection) == {late.name, f"{late.name}.reason.txt"}
    reason = (Path(settings.IMPEX_ROOT) / bspk_connection.code / "error" / f"{late.name}.reason.txt").read_text()
    assert BEHIND in reason
    state = ConnectionState.objects.get(connection=bspk_connection)
    assert state.last_applied_timestamps == {"SPECIAL-ORDERS": "202611011000"}


def test_a_late_file_found_by_the_inbox_scan_is_rejected_as_behind(bspk_connection, settings):
    settings.IMPEX_INBOX_QUIET_SECONDS = 0
    inbox = inbox_of(bspk_connection)
    aged(special_orders(inbox, "202611011000", "READY"))
    assert scan(bspk_connection.code)[1] == 0
    aged(special_orders(inbox, "202611010900", "OPEN"))

    payload, code = scan(bspk_connection.code)

    assert code == 1
    (entry,) = payload["connections"]
    (result,) = entry["files"]
    assert result["status"] == "rejected" and BEHIND in result["errors"][0]["message"]
    assert SpecialOrder.objects.get().status == "READY"


def test_files_of_another_type_are_not_compared(tmp_path, bspk_connection):
    assert run_import(special_orders(tmp_path, "202611011000", "READY"))[0] == 0
    items = write_bspk(
        tmp_path,
        "SPECIAL-ORDER-LINE-ITEMS",
        [{"line_item_id": "L1", "special_order_id": "SO-1", "product_name": "Ring", "quantity": "1"}],
        timestamp="202611010900",
    )

    code, report = run_import(items)

    assert (code, only_file(report)["status"]) == (0, "imported")
    assert SpecialOrderLineItem.objects.get().line_item_id == "L1"


def test_files_of_another_connection_are_not_compared(tmp_path, bspk_connection):
    Connection.objects.create(code="globex-pos", name="Globex POS", convention="bspk", company_name="Globex")
    assert run_import(special_orders(tmp_path, "202611011000", "READY"))[0] == 0

    code, report = run_import(special_orders(tmp_path, "202611010900", "OPEN", company="Globex", so="SO-2"))

    assert (code, only_file(report)["status"]) == (0, "imported")
    assert dict(SpecialOrder.objects.values_list("special_order_id", "status")) == {"SO-1": "READY", "SO-2": "OPEN"}


def test_a_zip_holding_both_timestamps_imports_both_oldest_first(tmp_path, bspk_connection):
    (tmp_path / "files").mkdir()
    newer = special_orders(tmp_path / "files", "202611011000", "READY")
    older = special_orders(tmp_path / "files", "202611010900", "OPEN")
    archive = tmp_path / "both.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for member in (newer, older):
            z.write(member, arcname=member.name)

    code, report = run_import(archive)

    assert code == 0
    assert file_named(report, older.name)["status"] == "imported"
    assert file_named(report, newer.name)["status"] == "imported"
    assert SpecialOrder.objects.get().status == "READY"


@pytest.mark.parametrize("how", ["rejected", "dry run"])
def test_a_newer_file_that_was_not_applied_holds_no_older_one_back(tmp_path, bspk_connection, how):
    if how == "rejected":
        bad = write_raw(tmp_path, bspk_name("SPECIAL-ORDERS", "202611011000"), "special_order_id,nonsense\nSO-1,x\n")
        assert only_file(run_import(bad)[1])["status"] == "rejected"
    else:
        assert run_import(special_orders(tmp_path, "202611011000", "READY"), dry_run=True)[0] == 0

    code, report = run_import(special_orders(tmp_path, "202611010900", "OPEN"))

    assert (code, only_file(report)["status"]) == (0, "imported")
    assert SpecialOrder.objects.get().status == "OPEN"


def test_the_migration_takes_the_newest_applied_timestamp_of_each_type_from_the_ledger(tmp_path, bspk_connection):
    from django.apps import apps

    migration = importlib.import_module("impex.migrations.0018_connection_state_last_applied_timestamps")
    run_import(special_orders(tmp_path, "202611010800", "OPEN"), special_orders(tmp_path, "202611011000", "READY"))
    ConnectionState.objects.filter(connection=bspk_connection).update(last_applied_timestamps={})

    migration.fill_from_ledger(apps, None)

    state = ConnectionState.objects.get(connection=bspk_connection)
    assert state.last_applied_timestamps == {"SPECIAL-ORDERS": "202611011000"}
    code, report = run_import(special_orders(tmp_path, "202611010900", "OPEN"))
    assert (code, only_file(report)["status"]) == (1, "rejected")


def test_the_rejected_rows_file_of_a_bspk_file_is_named_after_the_newest_applied_one_of_its_type(
    tmp_path, bspk_connection
):
    from impex.models import ImportFile
    from impex.services.rejected import rejected_rows_name

    bad = special_orders(tmp_path, "202611010900", "NOT-A-STATUS")
    run_import(bad, special_orders(tmp_path, "209912312300", "OPEN", so="SO-2"))  # a sender's clock far ahead

    name = rejected_rows_name(ImportFile.objects.get(name=bad.name))

    assert name == "SPECIAL-ORDERS_V2_Acme_209912312301.csv"
