"""What an exporter kind does with one order, and what it reports back to the chain."""

import logging
from dataclasses import dataclass

from orders.choices import ExportRunStatus
from orders.exceptions import ExporterFailed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """A run that ended well: done (the flag goes on) or held (it waits for staff); with what to show."""

    status: str = ExportRunStatus.DONE
    message: str = ""
    http_status: int | None = None
    location: str = ""
    # The start of the receiver's answer: kept with the run, shown only to who may change the exporter.
    response: str = ""


class ExporterKind:
    """One kind of exporter: run acts on an order for an exporter, or raises orders.exceptions.ExporterFailed."""

    name: str = ""
    # True for a kind that only writes to the database: its run and the flag's outcome commit together.
    in_transaction: bool = False

    def run(self, *, order, exporter, flag) -> Outcome:
        raise NotImplementedError

    def run_many(self, *, items: list, exporter, lost: set) -> list:
        """Run on each (order, flag) of a batch; return for each its Outcome, its ExporterFailed, or None if its
        flag's claim was lost (its pk in lost, which the chain's heartbeat fills) before it started.

        A kind that can share work between the orders of a batch (one query for all their lines) overrides it.
        """
        return [
            run_each(lambda order=order, flag=flag: self.run(order=order, exporter=exporter, flag=flag), flag, lost)
            for order, flag in items
        ]

    def problems(self, exporter) -> list[tuple[str, str]]:
        """Return (field, message) for each setting this kind needs that the exporter lacks."""
        return []


def run_each(run, flag, lost: set):
    """Run one item of a batch: None if its claim was lost, else its Outcome or the ExporterFailed it raised.

    Anything else it raises (a bug, a library's surprise) is an ExporterFailed too: recorded and retried, never a
    dead pass.
    """
    if flag.pk in lost:
        return None
    try:
        return run()
    except ExporterFailed as exc:
        return exc
    except Exception as exc:
        log.exception("exporter run on order %s failed", flag.order_id)
        return ExporterFailed(f"unexpected error: {exc.__class__.__name__}: {exc}")
