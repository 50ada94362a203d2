"""The cluster's console: django-q2's per-task lines only at LOG_LEVEL=DEBUG, its other lines always."""

import logging
import os
import subprocess
import sys

PER_TASK = [
    "Enqueued [default] 7f3c",
    "Process-1:2 processing hotel-kilo 'impex.tasks.scan_pass'",
    "Processed 'impex.tasks.scan_pass' (hotel-kilo)",
    "Process-1 created task hotel-kilo from schedule [impex-scan]",
    # The hub names its tasks, with spaces.
    "Process-1:2 processing import job #24 'impex.tasks.import_job_run' [impex-import]",
    "Process-1:2 processing orders feed pass 'orders.tasks.orders_feed'",
    "Processed 'orders.tasks.orders_feed' (orders feed pass)",
    "Process-1 created task orders feed pass from schedule [impex: orders feed]",
]
# caplog.at_level sets the root logger's level, as LOG_LEVEL does.
KEPT = ["Q Cluster impex-hub starting.", "Failed 'impex.tasks.scan_pass' (hotel-kilo) - boom"]


def test_the_cluster_writes_no_line_per_task_at_info(caplog):
    cluster = logging.getLogger("django-q")
    with caplog.at_level(logging.INFO):
        for line in PER_TASK:
            cluster.info(line)
        cluster.info(KEPT[0])
        cluster.error(KEPT[1])
    assert [r.getMessage() for r in caplog.records if r.name == "django-q"] == KEPT


def test_log_level_debug_shows_every_task_line(caplog):
    cluster = logging.getLogger("django-q")
    with caplog.at_level(logging.DEBUG):
        for line in PER_TASK:
            cluster.info(line)
    assert [r.getMessage() for r in caplog.records if r.name == "django-q"] == PER_TASK


def test_django_lines_reach_the_console_once_in_debug(tmp_path):
    """make run (DEBUG on) printed every django.* line twice: Django's console handler and the root's."""
    script = (
        "import logging, django; django.setup(); "
        "logging.getLogger('django.request').warning('Bad Request: /api/files/'); "
        "logging.getLogger('django.utils.autoreload').info('Watching for file changes')"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "1",
        "SECRET_KEY": "walk-" * 12,
        "IMPEX_VAR_DIR": str(tmp_path),
    }
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert done.stderr.splitlines() == ["Bad Request: /api/files/", "Watching for file changes"]


def test_server_errors_are_still_mailed_to_admins_with_debug_off():
    from django.utils.log import AdminEmailHandler

    handlers = logging.getLogger("django").handlers
    assert [type(h) for h in handlers] == [AdminEmailHandler]
