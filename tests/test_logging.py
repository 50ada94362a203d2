"""The cluster's console: django-q2's per-task lines only at LOG_LEVEL=DEBUG, its other lines always."""

import logging

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
