"""dataknobs-pd: save pandas DataFrames to real stores, load them back exactly, update them by key.
For example:

    import dataknobs_pd as dk      # registers the DataFrame accessor `dk`
    res = df.dk.save("sqlite:///flights.db", "flights")
    out = pd.DataFrame.dk.load("sqlite:///flights.db", "flights")
"""

from . import accessor as _accessor  # noqa: F401  (registers df.dk)
from .api import delete, load, save, update_batch
from .errors import (
    BackendUnavailableError,
    BatchError,
    ConcurrentWriteError,
    ConnectionLostError,
    DataKnobsError,
    InvalidArgumentError,
    KeyRequiredError,
    SchemaMismatchError,
    StorageError,
    TableExistsError,
    TableNotFoundError,
    UnsupportedDtypeError,
)
from .quarantine import quarantined
from .result import BatchResult
from .schema import TableSchema
from .store import Store, connect
from .types import TypeMapper
from .undo import undo

__version__ = "1.0.0rc1"  # as in pyproject.toml (`make dist` checks)

__all__ = [
    "quarantined",
    "undo",
    "BackendUnavailableError",
    "BatchError",
    "BatchResult",
    "ConcurrentWriteError",
    "ConnectionLostError",
    "DataKnobsError",
    "InvalidArgumentError",
    "KeyRequiredError",
    "SchemaMismatchError",
    "StorageError",
    "Store",
    "TableExistsError",
    "TableNotFoundError",
    "TableSchema",
    "TypeMapper",
    "UnsupportedDtypeError",
    "connect",
    "delete",
    "load",
    "save",
    "update_batch",
]
