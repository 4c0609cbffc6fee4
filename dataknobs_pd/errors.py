"""The exception hierarchy: everything the package raises derives from DataKnobsError."""

from __future__ import annotations


class DataKnobsError(Exception):
    """Base class of every error raised by dataknobs_pd."""


class InvalidArgumentError(DataKnobsError, ValueError):
    """A bad argument, option, table or column name, or URL: nothing was read or written."""


class TableExistsError(DataKnobsError):
    """save(if_exists="fail") found the table already there."""


class TableNotFoundError(DataKnobsError):
    """The table named does not exist in the store."""


class KeyRequiredError(DataKnobsError):
    """The operation matches rows by key, and no key could be resolved."""


class SchemaMismatchError(DataKnobsError):
    """The frame does not fit the stored table (unknown columns, a different key, ...)."""


class UnsupportedDtypeError(DataKnobsError, TypeError):
    """A column's dtype (or its values) cannot be stored by this package or this backend."""


class BackendUnavailableError(DataKnobsError, ImportError):
    """The URL scheme is unknown, or the backend's optional dependency is not installed."""


class UnknownSchemeError(BackendUnavailableError, InvalidArgumentError):
    """The URL's scheme names no backend (the message lists the valid ones)."""


class StorageError(DataKnobsError, OSError):
    """The store's storage refused or lost something: a missing bucket, refused credentials,
    a file replaced by another writer."""


class ConnectionLostError(StorageError):
    """The connection to the server broke mid-call; the server rolled the open transaction back."""


class ConcurrentWriteError(StorageError):
    """Another writer kept conflicting with this call; the call was rolled back."""


class BatchError(DataKnobsError):
    """errors="raise" and at least one row failed: nothing was written. `.result` holds the report."""

    def __init__(self, message: str, result):
        super().__init__(message)
        self.result = result


class WriteError(DataKnobsError):
    """A backend could not write a chunk; nothing of that chunk was written.

    Backends raise it already classified: `error` is one of the row error classes
    (see failures.RowError), `code` the backend's own code (SQLite extended result name,
    SQLSTATE, ...). The batch engine narrows the chunk down to the rows at fault.
    """

    def __init__(self, message: str, error: str = "WriteError", code: str | None = None):
        super().__init__(message)
        self.error = error
        self.code = code


class InternalError(DataKnobsError, RuntimeError):
    """An invariant of the package does not hold: a bug, to be reported with its traceback."""

    def __init__(self, what: str):
        super().__init__(f"internal error (a bug in dataknobs-pd; please report it with this traceback): {what}")
