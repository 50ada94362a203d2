"""Settings of the test suite: the deployment's (config.settings), with a SECRET_KEY for the session if none is set.

The key goes into the environment, so the processes a test starts (manage.py commands, clusters) inherit it and
share it, as every machine of a deployment must; config.settings refuses to start without one when DEBUG is off.
"""

import os
import secrets

os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

from config.settings import *  # noqa: E402, F403
