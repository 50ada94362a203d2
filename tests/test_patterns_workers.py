"""A patterns connection's names are imported once, whatever runs at once: two imports of copies of the same shop
files, and two scans of its inbox, each in its own process on one database (PostgreSQL, as in CI)."""

import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from impex.models import ImportedFileName, ImportFile
from impex.services.connections import connection_save
from impex.tests.helpers import aged, inbox_of, process_env
from syncapp.models import Customer
from tests.shop import shop_row, write_shop_file
from tests.test_patterns_convention import shop_descriptor

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several processes share the database here: PostgreSQL only (CI runs it)",
    ),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("builtin_installed"),
]

N = 3000


@pytest.fixture
def shop(builtin_installed):
    from impex.models import DataGroup

    group = DataGroup.objects.create(code="shop-import", name="Shop platform", direction="import")
    group.descriptors.add(shop_descriptor())
    conn, _ = connection_save(code="shop", convention="patterns", groups=["shop-import"])
    return conn


def shop_files(folder) -> list:
    """Three exports: everyone, then two that change some of them (the names carry no order: they arrive so)."""
    folder.mkdir(parents=True, exist_ok=True)
    everyone = [shop_row("First", f"Person {i}", f"p{i}@example.com") for i in range(N)]
    second = [shop_row("Second", f"Person {i}", f"p{i}@example.com") for i in range(0, N, 3)]
    third = [shop_row("Third", f"Person {i}", f"p{i}@example.com") for i in range(1, N, 3)]
    return [
        write_shop_file(folder, "customers_export_1.csv", everyone),
        write_shop_file(folder, "customers_export_2.csv", second),
        write_shop_file(folder, "customers_export_3.csv", third),
    ]


def manage(*args, log):
    return subprocess.Popen(
        [sys.executable, "manage.py", *map(str, args)],
        cwd=settings.BASE_DIR,
        env=process_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def run_all(commands: list[tuple], tmp_path) -> list[tuple[int, dict, str]]:
    """Start the commands at once; return each one's exit code, last JSON line and output once all have ended."""
    logs = [tmp_path / f"run-{n}.log" for n in range(len(commands))]
    handles = [open(log, "wb") for log in logs]
    runs = [manage(*command, log=handle) for command, handle in zip(commands, handles, strict=True)]
    for run in runs:
        run.wait(timeout=600)
    for handle in handles:
        handle.close()
    results = []
    for run, log in zip(runs, logs, strict=True):
        text = log.read_text()
        results.append((run.returncode, json.loads(text.strip().splitlines()[-1]), text))
    return results


def expected_first_names() -> dict:
    return {f"p{i}@example.com": ("Second", "Third", "First")[i % 3] for i in range(N)}


def test_two_imports_racing_on_copies_of_the_same_shop_files_import_each_name_once(shop, tmp_path):
    commands = [("impex_import", *shop_files(tmp_path / copy), "--connection", "shop", "--json") for copy in ("a", "b")]

    results = run_all(commands, tmp_path)

    assert [code for code, _, _ in results] == [0, 0], "\n".join(text for _, _, text in results)
    statuses: dict[str, list[str]] = {}
    for _, report, _ in results:
        for f in report["files"]:
            statuses.setdefault(f["name"], []).append(f["status"])
    assert {name: sorted(s) for name, s in statuses.items()} == {
        f"customers_export_{n}.csv": ["duplicate", "imported"] for n in (1, 2, 3)
    }
    assert dict(Customer.objects.values_list("email", "first_name")) == expected_first_names()
    assert set(Customer.objects.values_list("connection__code", flat=True)) == {"shop"}
    assert ImportedFileName.objects.filter(connection=shop).count() == 3


def test_two_scans_of_a_patterns_inbox_at_once_take_and_import_each_file_once(shop, tmp_path):
    for path in shop_files(inbox_of(shop)):
        aged(path)

    results = run_all([("impex_scan", "--connection", "shop", "--json")] * 2, tmp_path)

    assert [code for code, _, _ in results] == [0, 0], "\n".join(text for _, _, text in results)
    imported = ImportFile.objects.filter(connection=shop, status="imported")
    assert sorted(imported.values_list("name", flat=True)) == [f"customers_export_{n}.csv" for n in (1, 2, 3)]
    assert not ImportFile.objects.filter(connection=shop).exclude(status="imported").exists()
    assert dict(Customer.objects.values_list("email", "first_name")) == expected_first_names()
