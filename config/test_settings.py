"""Settings of the test suite: the deployment's (config.settings), with a SECRET_KEY for the session if none is set.

The key goes into the environment, so the processes a test starts (manage.py commands, clusters) inherit it and
share it, as every machine of a deployment must; config.settings refuses to start without one when DEBUG is off.
On PostgreSQL the backend is Django's with a quicker flush between transactional tests (config.test_postgresql).
"""

import os
import secrets

os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

from config.settings import *  # noqa: E402, F403
from config.settings import DATABASES, MIDDLEWARE, Q_CLUSTER, STORAGES, WHITENOISE  # noqa: E402

# The suite runs no collectstatic: pages name static files as they are (the manifest storage would refuse names it
# has no manifest entry for), and no static file is served in-process (WhiteNoise would warn that STATIC_ROOT is
# missing). tests/test_serve.py runs the production server with both, after collectstatic.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
MIDDLEWARE = [m for m in MIDDLEWARE if m != WHITENOISE]

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "config.test_postgresql"
    # A commit returns without waiting for its WAL to reach the disk (~5 ms a commit on the CI machine, ~0.2 ms
    # without): what it wrote is visible to every other session at once and is as atomic as ever; only a crash of the
    # database server itself could lose the last commits, which no test does. The processes a test starts use these
    # settings too.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c synchronous_commit=off"

# django-q2's guard calls the scheduler whenever its count of guard cycles reaches 30 s, so a cluster first looks at
# its schedules 30 s after it starts. A cluster a test starts with Q_SCHEDULER_AT_START=1 counts in cycles of 30 s:
# it looks at its schedules as it starts, then every 30 s as any cluster does. Its guard checks its processes every
# 30 s too, and counts a task's timeout (Q_TIMEOUT + 3 s) down in steps of 30 s, past 0 without stopping the task:
# none of these tests has a task that runs for an hour.
if os.environ.get("Q_SCHEDULER_AT_START"):
    Q_CLUSTER = {**Q_CLUSTER, "guard_cycle": 30}

# Tests script a receiver's answers in the order the POSTs arrive: one POST at a time unless a test asks for more.
IMPEX_WEBHOOK_CONCURRENCY = int(os.environ.get("IMPEX_WEBHOOK_CONCURRENCY", "1"))
