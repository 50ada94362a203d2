"""A thread that renews a lease while a long step runs (a scan's copies, an export's upload)."""

import logging
import threading
from collections.abc import Callable

from django.db import connection as db_connection

log = logging.getLogger(__name__)


class Heartbeat:
    """Call renew every `every` seconds from a thread of its own until the with block ends.

    Inside a transaction (tests) another database connection would wait on its locks: then nothing beats, and
    the step renews in line as it goes.
    """

    def __init__(self, renew: Callable[[], None], *, every: float, name: str):
        self.renew = renew
        self.every = max(1.0, every)
        self.name = name
        self.stop = threading.Event()
        self.thread = None

    def __enter__(self):
        if not db_connection.in_atomic_block:
            self.thread = threading.Thread(target=self._beat, name=self.name, daemon=True)
            self.thread.start()
        return self

    def _beat(self) -> None:
        try:
            while not self.stop.wait(self.every):
                try:
                    self.renew()
                except Exception:  # a busy database, or the lease lost: the step's own renewal says so
                    log.warning("%s: could not renew the lease", self.name, exc_info=True)
        finally:
            db_connection.close()

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        return False
