"""Several export workers over a flag that two exporters share (SPEC 7): each exporter sends each order once, and the
flag's next flag is set once per order, whichever worker finishes the flag's last delivery.

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
from orders.models import Order, OrderEvent, OrderExportRun, OrderFlag
from orders.tests.helpers import configure, import_catalogue, import_orders, line_row, order_row

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several processes share the database here: PostgreSQL only (CI runs it)",
    ),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("builtin_installed"),
]

ORDERS = 150
WORKERS = 3


def test_three_workers_send_each_order_once_per_exporter_of_a_shared_flag_and_set_the_next_flag_once(
    tmp_path, kore_connection, webhook_receiver
):
    configure("erp", "--flag", "erp", "--kind", "file", "--next-flag", "crm")
    configure("wms", "--flag", "erp", "--kind", "webhook", "--url", webhook_receiver.url + "?wms", "--next-flag", "crm")
    configure("crm", "--flag", "crm", "--kind", "webhook", "--url", webhook_receiver.url + "?crm")
    ids = [f"O{i:04d}" for i in range(ORDERS)]
    import_catalogue(tmp_path / "in")
    import_orders(tmp_path / "in", [order_row(i) for i in ids], [line_row(i, 1) for i in ids])
    assert OrderFlag.objects.filter(flag="erp").count() == 2 * ORDERS

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
    assert Counter((r["exporter"], r["status"]) for r in runs) == {
        ("erp", "done"): ORDERS,
        ("wms", "done"): ORDERS,
        ("crm", "done"): ORDERS,
    }
    assert set(Counter((r["order"], r["exporter"]) for r in runs).values()) == {1}
    receipts = Counter((post.path, post.json["order"]["order_id"]) for post in webhook_receiver.received)
    assert set(receipts.values()) == {1} and len(receipts) == 2 * ORDERS
    assert OrderEvent.objects.filter(kind="flag_set", flag="crm").count() == ORDERS
    assert OrderExportRun.objects.filter(status="done").count() == 3 * ORDERS
    assert set(Order.objects.values_list("state", flat=True)) == {"exported"}
    assert not OrderFlag.objects.exists()
    assert len(list((settings.IMPEX_ROOT / "kore-erp" / "outbox").iterdir())) == 2 * ORDERS
