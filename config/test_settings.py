"""Settings of the test suite: the deployment's (config.settings), with a SECRET_KEY for the session if none is set.

The key goes into the environment, so the processes a test starts (manage.py commands, clusters) inherit it and
share it, as every machine of a deployment must; config.settings refuses to start without one when DEBUG is off.
On PostgreSQL the backend is Django's with a quicker flush between transactional tests (config.test_postgresql).
"""

import os
import secrets

os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

from config.settings import *  # noqa: E402, F403
from config.settings import DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "config.test_postgresql"
