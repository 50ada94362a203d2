"""The development mail backend: each mail saved as a file under var/mail, with one log line, not printed whole."""

import logging
from pathlib import Path

from django.conf import settings
from django.core.mail.backends import filebased

logger = logging.getLogger(__name__)


class DevelopmentFileBackend(filebased.EmailBackend):
    """Django's file-based backend (EMAIL_FILE_PATH, var/mail by default) that says in one line where each mail went."""

    def send_messages(self, email_messages):
        sent = super().send_messages(email_messages)
        if sent:
            where = Path(self._fname)
            if where.is_relative_to(settings.BASE_DIR):
                where = where.relative_to(settings.BASE_DIR)
            for message in email_messages:
                logger.info("Mail to %s saved in %s: %s", ", ".join(message.recipients()), where, message.subject)
        return sent
