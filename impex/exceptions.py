"""Domain errors of impex, with messages a user can act on."""

from django.core.exceptions import NON_FIELD_ERRORS


class ImpexError(Exception):
    """Base of impex's domain errors."""


class FileNameError(ImpexError):
    """A file name does not follow the connection's naming convention."""


class FileRejected(ImpexError):
    """A whole file is refused (bad encoding, header, structure, size...); nothing of it is written."""


class ArchiveError(ImpexError):
    """A zip archive is unsafe or unusable (path traversal, bomb, nothing the group knows)."""


class RowError(ImpexError):
    """One row is refused; the other rows of its file go on."""

    def __init__(self, message: str, *, column: str = "", value: str = ""):
        super().__init__(message)
        self.message = message
        self.column = column
        self.value = value


class ConfigurationError(ImpexError):
    """A connection, descriptor or group is set up in a way that cannot work."""


class LocationRefused(ConfigurationError):
    """A folder or host the hub may not use: outside the allowed roots, the hub's own files, or an unlisted host."""


class IllegalTransition(ImpexError):
    """A status change the transition table does not allow; nothing was changed."""


class JobNotCancellable(ImpexError):
    """Only a queued or running job is cancelled; this one had ended, and nothing was changed."""


class LeaseLost(ImpexError):
    """This worker's claim on a job ran out and another worker took the job over."""


class ImportStuck(ImpexError):
    """An import gave up waiting for the database (a lock held elsewhere, a time limit); it can be run again."""


class ConnectionInvalid(ConfigurationError):
    """A connection's settings break its rules; errors maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(
            "\n".join(
                message if field == NON_FIELD_ERRORS else f"{field}: {message}"
                for field, messages in errors.items()
                for message in messages
            )
        )
        self.errors = errors


class ConnectionDeleteRefused(ImpexError):
    """A connection cannot be deleted (yet): deleting it would forget which file names it has imported."""


class SampleUnreadable(ImpexError):
    """A sample file (or pasted header) cannot be read as a table: its message says why."""


class DescriptorInvalid(ConfigurationError):
    """A new descriptor breaks its rules: errors by descriptor field, and each column's errors by attribute."""

    def __init__(self, errors: dict[str, list[str]], column_errors: list[dict[str, list[str]]]):
        lines = [message for messages in errors.values() for message in messages]
        lines += [
            f"column {index + 1}: {message}"
            for index, found in enumerate(column_errors)
            for messages in found.values()
            for message in messages
        ]
        super().__init__("\n".join(lines))
        self.errors = errors
        self.column_errors = column_errors


class UnknownEntity(ImpexError):
    """A name that no registered entity has; the message lists those there are."""


class FullSyncRefused(ImpexError):
    """A full sync cannot start (no scheduled export of the entity, or one that cannot run); nothing was changed."""
