"""A lines file amending many orders, its chunks applied by several worker processes at once (SPEC sections 6, 7):
each order is amended once (one new version, one timeline row) and loses the lines the file no longer holds.

Real `manage.py impex_job` processes share the test database, so this runs on PostgreSQL (CI runs it).
"""

import json
import subprocess
import sys
from collections import Counter

import pytest
from django.conf import settings
from django.db import connection

from impex.models import ImportChunk, ImportFile
from impex.services.jobs import job_create
from impex.services.lifecycle import job_enqueue
from impex.tests.helpers import process_env, write_kore
from orders.models import Order, OrderEvent, OrderLine
from orders.tests.helpers import _next_sequence, import_catalogue, import_orders, line_row, order_row

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several processes share the database here: PostgreSQL only (CI runs it)",
    ),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("builtin_installed"),
]

ORDERS = 200
WORKERS = 2


def test_two_workers_on_a_lines_file_in_many_chunks_amend_each_order_once(tmp_path, kore_connection):
    ids = [f"O{i:04d}" for i in range(ORDERS)]
    import_catalogue(tmp_path / "in")
    import_orders(
        tmp_path / "in",
        [order_row(i) for i in ids],
        [line_row(i, n, sku) for i in ids for n, sku in ((1, "SKU1"), (2, "SKU2"), (3, "SKU3"))],
    )
    # Every order keeps lines 1 and 2 and loses line 3; even ones take a new quantity on line 1.
    rows = [
        row
        for n, i in enumerate(ids)
        for row in (line_row(i, 1, "SKU1", quantity=2 if n % 2 == 0 else 1), line_row(i, 2, "SKU2"))
    ]
    path = write_kore(tmp_path, "KS_ORDER_LINES", _next_sequence("kore-erp"), rows)
    job = job_create(paths=[path], connection=kore_connection)
    job_enqueue(job=job)
    env = process_env(IMPEX_CHUNK_ROWS=25, IMPEX_POLL_SECONDS=0.1)
    logs = [tmp_path / f"worker-{n}.log" for n in range(WORKERS)]
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "impex_job", str(job.pk), "--json"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * WORKERS, "\n".join(log.read_text() for log in logs)

    f = ImportFile.objects.get(job=job)
    assert (f.status, f.failed) == ("imported", 0)
    assert ImportChunk.objects.filter(file=f).count() == len(rows) // 25
    amended = Counter(OrderEvent.objects.filter(kind="amended").values_list("order__order_id", flat=True))
    assert amended == dict.fromkeys(ids, 1)
    assert set(Order.objects.values_list("version", flat=True)) == {2}
    assert set(OrderLine.objects.values_list("line_no", flat=True)) == {1, 2}
    assert OrderLine.objects.count() == 2 * ORDERS
    messages = dict(OrderEvent.objects.filter(kind="amended").values_list("order__order_id", "message"))
    assert messages["O0000"] == "amended: line 1 quantity 1 -> 2; line 3 removed"
    assert messages["O0001"] == "amended: line 3 removed"
    (result,) = json.loads(logs[0].read_text().strip().splitlines()[-1])["files"]
    assert (result["status"], result["updated"], result["unchanged"]) == ("imported", ORDERS // 2, ORDERS * 3 // 2)
