"""Several order export workers at once (SPEC section 7): no order is exported twice.

Real `manage.py orders_export` processes share the test database, so this runs on PostgreSQL (CI runs it).
"""

import json
import subprocess
import sys
from collections import Counter

import pytest
from django.conf import settings
from django.db import connection

from impex.tests.helpers import process_env
from orders.models import Order, OrderExportRun, OrderFlag
from orders.tests.helpers import configure, import_catalogue, import_orders, line_row, order_row

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several processes share the database here: PostgreSQL only (CI runs it)",
    ),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("builtin_installed"),
]

ORDERS = 500
WORKERS = 3


def test_three_workers_racing_over_500_flagged_orders_export_each_exactly_once(
    tmp_path, kore_connection, webhook_receiver
):
    configure(
        "crm",
        "--flag",
        "crm",
        "--kind",
        "webhook",
        "--url",
        webhook_receiver.url,
        "--secret",
        "k",
        "--next-flag",
        "erp",
    )
    configure("erp", "--flag", "erp", "--kind", "file")
    ids = [f"O{i:04d}" for i in range(ORDERS)]
    import_catalogue(tmp_path / "in")
    import_orders(tmp_path / "in", [order_row(i) for i in ids], [line_row(i, 1) for i in ids])
    assert OrderFlag.objects.filter(flag="crm").count() == ORDERS

    logs = [tmp_path / f"worker-{n}.log" for n in range(WORKERS)]
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "orders_export", "--json"],
            cwd=settings.BASE_DIR,
            env=process_env(),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * WORKERS

    runs = [run for log in logs for run in json.loads(log.read_text().strip().splitlines()[-1])["runs"]]
    per_run = Counter((r["order"], r["exporter"], r["status"]) for r in runs)
    assert set(per_run.values()) == {1}
    assert Counter((r["exporter"], r["status"]) for r in runs) == {("crm", "done"): ORDERS, ("erp", "done"): ORDERS}
    assert sum(1 for log in logs if json.loads(log.read_text().strip().splitlines()[-1])["runs"]) >= 2, (
        "the work was not shared: one worker did it all"
    )
    receipts = Counter(post.json["order"]["order_id"] for post in webhook_receiver.received)
    assert receipts == dict.fromkeys(ids, 1)
    assert OrderExportRun.objects.filter(status="done").count() == 2 * ORDERS
    assert set(Order.objects.values_list("state", flat=True)) == {"exported"}
    assert not OrderFlag.objects.exists()
    outbox = settings.IMPEX_ROOT / "kore-erp" / "outbox"
    assert len(list(outbox.iterdir())) == 2 * ORDERS
