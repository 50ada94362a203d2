"""What an exporter kind does with one order, and what it reports back to the chain."""

from dataclasses import dataclass

from orders.choices import ExportRunStatus


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

    def problems(self, exporter) -> list[tuple[str, str]]:
        """Return (field, message) for each setting this kind needs that the exporter lacks."""
        return []
