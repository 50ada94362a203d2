"""The demo (`impex_demo`) imports every sample file with the engine, and the Makefile and CI script are in place."""

import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from impex.demo import DEMO_CONNECTIONS, SAMPLES_DIR
from impex.models import Connection, ImportedFileName, ImportJob, Problem, RowError
from orders.models import Order, OrderLine, Shipment
from syncapp.models import (
    Customer,
    Price,
    Product,
    ProductVariant,
    SpecialOrder,
    SpecialOrderEvent,
    SpecialOrderLineItem,
    StockLevel,
)

PASSWORD = "x-test-pass-123"
ROOT = Path(settings.BASE_DIR)
EVENTS_FILE = "SPECIAL-ORDER-EVENTS_V2_Acme_202611010900.csv"
EXPECTED_DESCRIPTORS = {
    "SPECIAL-ORDERS_V2_Acme_202611010900.csv": "SPECIAL-ORDERS",
    "SPECIAL-ORDER-LINE-ITEMS_V2_Acme_202611010900.csv": "SPECIAL-ORDER-LINE-ITEMS",
    EVENTS_FILE: "SPECIAL-ORDER-EVENTS",
    "ERP_0000001_INT1_KS_CUSTOMERS.FULL": "KS_CUSTOMERS",
    "ERP_0000002_INT1_KS_PRODUCTS.FULL": "KS_PRODUCTS",
    "ERP_0000003_INT1_KS_INVENTORY.NET": "KS_INVENTORY",
    "ERP_0000003_INT1_KS_PRICES.NET": "KS_PRICES",
    "ERP_0000004_INT1_KS_ORDERS.NET": "KS_ORDERS",
    "ERP_0000004_INT1_KS_ORDER_LINES.NET": "KS_ORDER_LINES",
    "ERP_0000005_INT1_KS_ORDERS.NET": "KS_ORDERS",
    "ERP_0000005_INT1_KS_ORDER_LINES.NET": "KS_ORDER_LINES",
    "ERP_0000005_INT1_KS_SHIPMENTS.NET": "KS_SHIPMENTS",
    # Imported after the first export pass: O-2003 amended, O-2005 cancelled.
    "ERP_0000006_INT1_KS_ORDERS.NET": "KS_ORDERS",
    # The shop platform's own name, read by the patterns connection shop.
    "customers_export_1.csv": "SHOP_CUSTOMERS",
}
EXPECTED_ROWS = {
    SpecialOrder: 5,
    SpecialOrderLineItem: 8,
    SpecialOrderEvent: 10,
    Customer: 13,
    Product: 4,
    ProductVariant: 8,
    StockLevel: 10,
    Price: 14,
    Order: 5,
    OrderLine: 9,
    Shipment: 2,
}


@pytest.fixture(autouse=True)
def var_dir(tmp_path, settings):
    """Give every test its own VAR_DIR, where impex_demo keeps the password it generated."""
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


def run_demo(*args):
    """Run impex_demo (with a fixed password unless other arguments are given); return its JSON and its output."""
    out = io.StringIO()
    call_command("impex_demo", "--json", *(args or ("--password", PASSWORD)), stdout=out)
    text = out.getvalue()
    return json.loads(text.strip().splitlines()[-1]), text


def can_log_in(password):
    """Whether the admin logs in with this password, through the admin's login form (and its throttling)."""
    client = Client()
    client.post(reverse("admin:login"), {"username": "admin", "password": password})
    return "_auth_user_id" in client.session


def files_of(payload):
    """All file reports of the demo's jobs, by name."""
    return {f["name"]: f for job in payload["jobs"] for f in job["files"]}


def snapshot():
    """Row counts and last write of every demo entity, and the imported-names ledger."""
    state = {
        model.__name__: (model.objects.count(), max(model.objects.values_list("updated_at", flat=True)))
        for model in EXPECTED_ROWS
    }
    state["ledger"] = ImportedFileName.objects.count()
    return state


@pytest.mark.django_db
def test_demo_imports_every_sample_file(impex_root):
    payload, text = run_demo()

    files = files_of(payload)
    samples = {p.name for p in SAMPLES_DIR.iterdir() if p.is_file() and p.suffix != ".py"}
    assert set(files) == samples == set(EXPECTED_DESCRIPTORS)
    assert {name: (f["status"], f["descriptor"]) for name, f in files.items()} == {
        name: ("imported", code) for name, code in EXPECTED_DESCRIPTORS.items()
    }
    assert {model: model.objects.count() for model in EXPECTED_ROWS} == EXPECTED_ROWS
    events = files[EVENTS_FILE]
    assert (events["created"], events["failed"]) == (10, 1)
    assert [(e["column"], e["value"]) for e in events["errors"]] == [("special_order_id", "SO-9999")]
    assert RowError.objects.count() == 1
    # The console says each job's status as its page does: the job with the refused row is not just "completed".
    assert re.search(r"Import job #\d+ \(acme-pos\): Completed with errors", text), text
    assert "\n" in SpecialOrder.objects.get(special_order_id="SO-1004").description
    assert "Réparation — 修理" in SpecialOrder.objects.get(special_order_id="SO-1003").description
    assert Customer.objects.get(customer_id="C-1007").parent.customer_id == "C-1010"
    shop = Customer.objects.filter(connection__code="shop")
    assert sorted(shop.values_list("customer_id", "company_name")) == [
        ("ada@shop.co", "Analytical Ltd"),
        ("alan@shop.co", "Bletchley & Co"),
        ("grace@shop.co", ""),
    ]
    assert Connection.objects.get(code="shop").convention == "patterns"

    # One amended and one cancelled order, each sent again by the exporter that had sent it; one open problem.
    assert payload["orders"] == {
        "O-2001": "on_hold",
        "O-2002": "completed",
        "O-2003": "exported",
        "O-2004": "partially_shipped",
        "O-2005": "cancelled",
    }
    amended = Order.objects.get(order_id="O-2003")
    assert (amended.version, str(amended.total)) == (2, "199.0000")
    assert amended.events.filter(message="amended: total 189.00 -> 199.00; shipping_method express -> next-day")
    outbox = sorted(p.name for p in (impex_root / "kore-erp" / "outbox").iterdir())
    assert {"erp-file_O-2003_v2_exported.tsv", "erp-file_O-2005_v1_cancelled.tsv"} <= set(outbox)
    [problem] = Problem.objects.filter(resolved_at__isnull=True)
    assert (problem.connection.code, problem.kind) == ("acme-pos", "import-job")

    acme = Connection.objects.get(code="acme-pos")
    assert (acme.convention, acme.company_name, acme.timezone, acme.contacts) == (
        "bspk",
        "Acme",
        "Europe/London",
        "integration@acme.example",
    )
    assert Connection.objects.get(code="kore-erp").integration_id == "INT1"
    inbox = impex_root / "acme-pos" / "inbox"
    assert acme.inbox == str(inbox)
    # Scanned at once: the samples went from the inbox to the archive; the README stays.
    assert sorted(p.name for p in inbox.iterdir()) == ["README.txt"]
    archive = impex_root / "acme-pos" / "archive"
    assert sorted(p.name for p in archive.iterdir()) == sorted(DEMO_CONNECTIONS[0].files)

    assert f"Admin login: admin / {PASSWORD} at http://127.0.0.1:8000/admin/" in text
    assert can_log_in(PASSWORD)


@pytest.mark.django_db
def test_demo_twice_imports_nothing_the_second_time_and_says_so():
    first, _ = run_demo()
    before = snapshot()
    jobs = ImportJob.objects.count()

    payload, text = run_demo()

    assert payload["jobs"] == []
    assert ImportJob.objects.count() == jobs == 4
    assert snapshot() == before
    acme, kore = (first["connections"][0]["job"], first["connections"][1]["job"])
    assert f"acme-pos: the 3 sample files were imported before (job #{acme}); nothing to do" in text
    assert f"kore-erp: the 9 sample files were imported before (job #{kore}); nothing to do" in text
    later = first["connections"][1]["later_job"]
    assert f"kore-erp: the later sample file was imported before (job #{later}); nothing to do" in text
    assert "Importing" not in text
    assert [(c["code"], c["job"], len(c["imported_before"])) for c in payload["connections"]] == [
        ("acme-pos", None, 3),
        ("kore-erp", None, 9),
        ("shop", None, 1),
    ]
    assert Connection.objects.count() == 3
    assert can_log_in(PASSWORD)


@pytest.mark.django_db
def test_demo_says_how_often_each_inbox_is_scanned_as_the_admin_set_it():
    run_demo("--no-import", "--password", PASSWORD)
    Connection.objects.filter(code="kore-erp").update(scan_seconds=5)
    Connection.objects.filter(code="shop").update(scan_cron="*/10 6-22 * * 1-5")

    _, text = run_demo("--no-import", "--password", PASSWORD)

    scans = [line.strip() for line in text.splitlines() if "new files dropped there" in line]
    assert scans == [
        "new files dropped there are imported: the cluster scans it: every 5 min ('Sync now' in the admin: at once)",
        "new files dropped there are imported: the cluster scans it: every 5 s ('Sync now' in the admin: at once)",
        "new files dropped there are imported: the cluster scans it: cron */10 6-22 * * 1-5 ('Sync now' in the admin: "
        "at once)",
    ]


@pytest.mark.django_db
def test_demo_imports_only_the_sample_files_missing_from_the_ledger():
    first, _ = run_demo()
    acme = Connection.objects.get(code="acme-pos")
    ImportedFileName.objects.filter(connection=acme, name=EVENTS_FILE).delete()
    jobs = ImportJob.objects.count()

    payload, text = run_demo()

    assert ImportJob.objects.count() == jobs + 1
    [report] = payload["jobs"]
    assert [(f["name"], f["status"]) for f in report["files"]] == [(EVENTS_FILE, "imported")]
    assert payload["connections"][0]["job"] == report["job"]
    job = first["connections"][0]["job"]
    assert f"acme-pos: 2 of the 3 sample files were imported before (job #{job}); importing the other 1..." in text
    assert "kore-erp: the 9 sample files were imported before" in text
    assert ImportedFileName.objects.filter(connection=acme, name=EVENTS_FILE).exists()


@pytest.mark.django_db
def test_demo_imports_a_sample_file_whose_content_differs_from_the_ledger_and_reports_the_conflict():
    run_demo()
    kore = Connection.objects.get(code="kore-erp")
    ImportedFileName.objects.filter(connection=kore, name="ERP_0000001_INT1_KS_CUSTOMERS.FULL").update(
        content_hash="0" * 64
    )
    before = snapshot()
    jobs = ImportJob.objects.count()

    with pytest.raises(CommandError, match=r"the demo import did not complete: ERP_0000001_INT1_KS_CUSTOMERS.FULL: "):
        run_demo()

    assert ImportJob.objects.count() == jobs + 1
    assert ImportJob.objects.first().files.get().status == "rejected"
    assert snapshot() == before


@pytest.mark.django_db
def test_demo_first_run_creates_admin_with_a_random_password_kept_in_var_dir(var_dir):
    payload, text = run_demo("--no-import")

    password = payload["admin"]["password"]
    assert (payload["admin"]["created"], payload["admin"]["password_changed"]) == (True, True)
    assert len(password) >= 16
    assert f"Admin login: admin / {password} at http://127.0.0.1:8000/admin/" in text
    stored = var_dir / "demo_admin_password"
    assert stored.read_text() == password + "\n"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert can_log_in(password)
    user = get_user_model().objects.get(username="admin")
    assert (user.is_staff, user.is_superuser, user.is_active) == (True, True, True)


@pytest.mark.django_db
def test_demo_later_run_keeps_the_password_and_prints_it_again(var_dir):
    first, _ = run_demo("--no-import")
    hashed = get_user_model().objects.get(username="admin").password

    payload, text = run_demo("--no-import")

    password = first["admin"]["password"]
    assert payload["admin"] == {"username": "admin", "password": password, "created": False, "password_changed": False}
    assert f"Admin login: admin / {password} at http://127.0.0.1:8000/admin/" in text
    assert get_user_model().objects.get(username="admin").password == hashed
    assert can_log_in(password)


@pytest.mark.django_db
def test_demo_later_run_leaves_a_password_the_admin_changed_and_says_how_to_reset_it(var_dir):
    first, _ = run_demo("--no-import")
    user = get_user_model().objects.get(username="admin")
    user.set_password("changed-by-the-admin-42")
    user.save()

    payload, text = run_demo("--no-import")

    assert payload["admin"]["password"] is None
    assert first["admin"]["password"] not in text
    assert (
        "Admin login: admin at http://127.0.0.1:8000/admin/; its password is unchanged, and no longer the one "
        "impex_demo generated. For a new random one: `make run RESET_PASSWORD=1` or "
        "`python manage.py impex_demo --reset-password`" in text
    )
    assert can_log_in("changed-by-the-admin-42")
    assert (var_dir / "demo_admin_password").read_text() == first["admin"]["password"] + "\n"


@pytest.mark.django_db
def test_demo_reset_password_sets_a_new_random_one(var_dir):
    first, _ = run_demo("--no-import")

    payload, text = run_demo("--no-import", "--reset-password")

    new = payload["admin"]["password"]
    assert new != first["admin"]["password"]
    assert (payload["admin"]["created"], payload["admin"]["password_changed"]) == (False, True)
    assert f"Admin login: admin / {new} at" in text
    assert (var_dir / "demo_admin_password").read_text() == new + "\n"
    assert can_log_in(new)
    assert not can_log_in(first["admin"]["password"])


@pytest.mark.django_db
def test_demo_password_option_sets_it_and_keeps_no_copy(var_dir):
    run_demo("--no-import")

    payload, _ = run_demo("--no-import", "--password", PASSWORD)
    later, text = run_demo("--no-import")

    assert payload["admin"]["password"] == PASSWORD
    assert not (var_dir / "demo_admin_password").exists()
    assert later["admin"]["password"] is None
    assert "its password is unchanged" in text
    assert can_log_in(PASSWORD)


@pytest.mark.django_db
def test_demo_refuses_password_with_reset_password_and_changes_nothing(var_dir):
    with pytest.raises(CommandError, match="argument --reset-password: not allowed with argument --password"):
        call_command("impex_demo", "--password", PASSWORD, "--reset-password", stdout=io.StringIO())

    assert not get_user_model().objects.exists()
    assert not Connection.objects.exists()
    assert not var_dir.exists()


@pytest.mark.django_db
def test_demo_prints_the_url_it_is_given():
    payload, text = run_demo("--no-import", "--url", "http://127.0.0.1:8001/admin/")

    assert payload["url"] == "http://127.0.0.1:8001/admin/"
    assert f"Admin login: admin / {payload['admin']['password']} at http://127.0.0.1:8001/admin/\n" in text


@pytest.mark.parametrize(
    ("variables", "url", "reset"),
    [
        ([], "http://127.0.0.1:8000/admin/", False),
        (["ADDR=127.0.0.1:8001"], "http://127.0.0.1:8001/admin/", False),
        (["ADDR=8002"], "http://127.0.0.1:8002/admin/", False),
        (["ADDR=localhost:8003", "RESET_PASSWORD=1"], "http://localhost:8003/admin/", True),
        (["ADDR=[::1]:8004", "RESET_PASSWORD=0"], "http://[::1]:8004/admin/", False),
    ],
)
def test_make_run_passes_the_admin_url_and_reset_password_to_the_demo(variables, url, reset):
    venv = Path(sys.prefix)
    dry_run = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "run", f"VENV={venv}", "-o", f"{venv}/.installed", *variables],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    demo = next(line for line in dry_run.splitlines() if "impex_demo" in line)
    assert shlex.split(demo.split("impex_demo", 1)[1]) == ["--url", url, *(["--reset-password"] if reset else [])]
    assert f"the web server at {url} (Ctrl-C stops both)" in dry_run


def test_makefile_and_ci_script_are_in_place():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "test", "lint", "bench"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"Makefile has no '{target}' target"
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    assert ci.read_text().count("make test") >= 2
