"""Late BSPK files racing (SPEC section 4, issue 17): two processes importing 09:00 and 10:00 files of one TYPE at
once end as one ordering would, because the "behind" check runs under the connection's hold.

Real `manage.py` processes share the test database: PostgreSQL only (CI runs it)."""

import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from impex.models import ConnectionState
from impex.tests.helpers import process_env, special_order_row, write_bspk
from syncapp.models import SpecialOrder

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several processes share the database here: PostgreSQL only (CI runs it)",
    ),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("builtin_installed"),
]


def test_two_processes_importing_an_older_and_a_newer_file_at_once_never_apply_the_older_over_the_newer(
    tmp_path, bspk_connection
):
    ids = [f"SO-{n:05d}" for n in range(3000)]  # big enough that the two imports overlap
    files = {}
    for status, stamp in (("OPEN", "202611010900"), ("READY", "202611011000")):
        (tmp_path / status).mkdir()
        rows = [special_order_row(i, status=status) for i in ids]
        files[status] = write_bspk(tmp_path / status, "SPECIAL-ORDERS", rows, timestamp=stamp)
    env = process_env()
    runs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "impex_import", "--json", str(path)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in (files["READY"], files["OPEN"])
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]

    ready, late = (json.loads(out.strip().splitlines()[-1])["files"][0] for out in outputs)
    assert ready["status"] == "imported", outputs
    # Either order is fine: 09:00 first (both go in), or 10:00 first (09:00 is behind); never 09:00 over 10:00.
    assert late["status"] in ("imported", "rejected"), outputs
    if late["status"] == "rejected":
        assert "is behind: SPECIAL-ORDERS of 202611011000 is already applied" in late["errors"][0]["message"]
    assert set(SpecialOrder.objects.values_list("status", flat=True)) == {"READY"}
    assert SpecialOrder.objects.count() == 3000
    state = ConnectionState.objects.get(connection=bspk_connection)
    assert state.last_applied_timestamps == {"SPECIAL-ORDERS": "202611011000"}
