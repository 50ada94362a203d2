"""Logging pieces of the settings: the cluster's console says what matters, not four lines for every task."""

import logging
import re

# The lines django-q2 writes at INFO for every task: queued, taken by a worker, its result, made from a schedule.
# A task's name may hold spaces (the hub names its tasks: "import job #24", "orders feed pass").
PER_TASK_LINE = re.compile(r"Enqueued \[|\S+ processing .+ '|Processed '|\S+ created task .+ from schedule \[")


class TaskLinesAtDebug(logging.Filter):
    """Drop django-q2's per-task INFO lines (a scan every minute is four of them) unless LOG_LEVEL is DEBUG; its
    start, stop and failure lines stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        return not PER_TASK_LINE.match(record.getMessage())
