"""Domain errors of the order domain, with messages a user can act on."""


class OrderError(Exception):
    """Base of the order domain's errors."""


class IllegalTransition(OrderError):
    """A transition the order's state or a guard does not allow; nothing was changed."""


class ExporterFailed(OrderError):
    """An exporter could not hand the order on; retry says whether trying again later may succeed."""

    def __init__(self, message: str, *, retry: bool = True, http_status: int | None = None, response: str = ""):
        super().__init__(message)
        self.message = message
        self.retry = retry
        self.http_status = http_status
        # The start of the receiver's answer: kept with the run, shown only to who may change the exporter.
        self.response = response


CANCEL_REFUSED = "order {} has shipped: it can no longer be cancelled"
AMEND_REFUSED = "order {} has shipped: it can no longer be amended"


class OrderShipped(OrderError):
    """The order has shipped: it can no longer be cancelled or amended; nothing was changed."""
