"""One file name arriving by every way at once (SPEC 3: each file name is imported once): pushes over HTTP
(POST /api/files/), inbox scans and `impex_import --queue`, each a process of its own, released together, while
workers run whatever is queued. The name is imported exactly once; every other copy is a duplicate.

Real processes share the test database, so this runs on PostgreSQL (CI runs it).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection

from impex.models import Connection, ImportedFileName, ImportFile, ImportJob
from impex.services.tokens import api_token_issue
from impex.tests.helpers import customer_row, inbox_of, process_env, write_kore
from syncapp.models import Customer

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several processes share the database here: PostgreSQL only (CI runs it)",
    ),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("builtin_installed"),
]

PUSHES, SCANS, QUEUES, WORKERS = 3, 2, 2, 2
DEADLINE = 240
FINAL = ("completed", "failed", "errored")

# Every process is started ahead and waits for the go file, so that Django's start (a second or more each, on a
# busy machine) does not spread them out: they act within a few milliseconds of each other.
WAIT_FOR_GO = "import os, time\nwhile not os.path.exists({go!r}):\n    time.sleep(0.002)\n"
PUSH = """
import http.client, sys
body = open({body!r}, "rb").read()
connection = http.client.HTTPConnection({host!r}, {port}, timeout=120)
connection.request("POST", "/api/files/", body, {{"Authorization": "Bearer {token}",
                   "Content-Type": "multipart/form-data; boundary={boundary}"}})
answer = connection.getresponse()
print(answer.status, answer.read().decode())
sys.exit(0 if answer.status == 202 else 1)
"""
COMMAND = "from django.core.management import call_command\ncall_command(*{args!r})\n"
# A worker runs every job it finds open until the expected number of jobs have all ended.
WORK = """
from impex.models import ImportJob
from impex.runner import run_job
deadline = time.monotonic() + {deadline}
while time.monotonic() < deadline:
    open_jobs = list(ImportJob.objects.exclude(status__in={final!r}).values_list("pk", flat=True))
    if not open_jobs and ImportJob.objects.count() >= {expected}:
        break
    for pk in open_jobs:
        run_job(pk)
    time.sleep(0.02)
"""


def multipart_body(path: Path, boundary: str) -> bytes:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()


def test_pushes_scans_and_queued_imports_of_one_name_import_it_once(live_server, tmp_path):
    conn = Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")
    token = api_token_issue(connection=conn, by="test")
    env = process_env(IMPEX_INBOX_QUIET_SECONDS=1, PYTHONUNBUFFERED=1)
    server = urlsplit(live_server.url)
    expected_jobs = 0
    for round_, sequence in enumerate((1, 2)):
        rows = [customer_row(f"C-{sequence}-{n}", first_name=f"round {round_}") for n in range(3)]
        source = write_kore(tmp_path, "KS_CUSTOMERS", sequence, rows)
        name = source.name
        body = tmp_path / f"body{round_}"
        body.write_bytes(multipart_body(source, "b0und4ry"))
        inbox = inbox_of(conn)
        past = time.time() - 60  # it has sat there a while: settled at the scans' first look
        os.utime(shutil.copyfile(source, inbox / name), (past, past))
        go = tmp_path / f"go{round_}"
        wait = WAIT_FOR_GO.format(go=str(go))
        scripts = (
            [
                (
                    "push",
                    [
                        sys.executable,
                        "-c",
                        wait
                        + PUSH.format(
                            body=str(body), host=server.hostname, port=server.port, token=token, boundary="b0und4ry"
                        ),
                    ],
                )
                for _ in range(PUSHES)
            ]
            + [
                (
                    "scan",
                    [
                        sys.executable,
                        "manage.py",
                        "shell",
                        "-c",
                        wait + COMMAND.format(args=("impex_scan", "--connection", conn.code, "--json")),
                    ],
                )
                for _ in range(SCANS)
            ]
            + [
                (
                    "queue",
                    [
                        sys.executable,
                        "manage.py",
                        "shell",
                        "-c",
                        wait
                        + COMMAND.format(
                            args=("impex_import", str(source), "--connection", conn.code, "--queue", "--json")
                        ),
                    ],
                )
                for _ in range(QUEUES)
            ]
        )
        expected_jobs += PUSHES + QUEUES + 1  # one scan takes the file; the other finds nothing to take
        work = wait + WORK.format(deadline=DEADLINE, final=FINAL, expected=expected_jobs)
        scripts += [("work", [sys.executable, "manage.py", "shell", "-c", work]) for _ in range(WORKERS)]
        logs = [tmp_path / f"{round_}-{n}-{kind}.log" for n, (kind, _) in enumerate(scripts)]
        procs = []
        for log, (_, command) in zip(logs, scripts, strict=True):
            with open(log, "wb") as out:
                procs.append(
                    subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
                )
        time.sleep(3)  # let them start (each waits for the go file; a late one only races less)
        go.touch()
        codes = [p.wait(timeout=DEADLINE + 60) for p in procs]

        texts = {log.name: log.read_text(errors="replace")[-3000:] for log in logs}
        jobs = list(ImportJob.objects.order_by("pk").values_list("pk", "source", "status", "error"))
        files = list(ImportFile.objects.filter(name=name).values_list("job_id", "status", "message"))
        detail = f"round {round_}\n{json.dumps(texts, indent=1)}\njobs {jobs}\nfiles {files}"
        assert codes == [0] * len(procs), detail
        assert len(jobs) == expected_jobs and {status for _, _, status, _ in jobs} == {"completed"}, detail
        assert Counter(source for _, source, _, _ in jobs[-(PUSHES + QUEUES + 1) :]) == {
            "api": PUSHES,
            "command": QUEUES,
            "scan": 1,
        }, detail
        this_round = ImportFile.objects.filter(name=name, kind="data")
        assert Counter(this_round.values_list("status", flat=True)) == {
            "imported": 1,
            "duplicate": PUSHES + QUEUES,
        }, detail
        assert sum(this_round.values_list("created", flat=True)) == 3, detail
        ledger = ImportedFileName.objects.filter(connection=conn, name=name)
        assert ledger.count() == 1, detail
        assert ledger.get().file == this_round.get(status="imported")
        assert os.listdir(inbox) == []  # the scan took it
        assert sorted(Customer.objects.filter(first_name=f"round {round_}").values_list("customer_id", flat=True)) == [
            f"C-{sequence}-{n}" for n in range(3)
        ]
        assert set(Customer.objects.values_list("connection__code", flat=True)) == {"kore-erp"}

    assert Customer.objects.count() == 6
    assert ImportedFileName.objects.count() == 2
