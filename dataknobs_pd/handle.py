"""Store: a handle on a backend. Backends are shared in the process by what they open (a SQLite file by
its resolved path, however the URL spells it; other stores by URL and options), and counted: closing a
handle releases that handle only, and the last holder closes the backend (store.py opens them)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from . import batchlog, companions
from .backends.base import Backend
from .backends.capabilities import History, no_history
from .errors import InvalidArgumentError, TableNotFoundError
from .names import check_table_name
from .urls import mask, scheme_of

if TYPE_CHECKING:
    import pandas as pd

SHARED: dict[tuple, list] = {}  # pool key -> [backend, handles open on it]
POOL_LOCK = threading.RLock()  # guards SHARED, and store.py's handles by URL


class Store:
    """A handle on a connected store. Use `dk.connect(url)`; `close()` or a with-block releases this
    handle only: the connections stay open while another handle in the process holds them.

    Every function that takes a store (`dk.save`, `dk.load`, ...) takes a Store or the URL itself.
    """

    def __init__(
        self,
        url: str,
        backend: Backend,
        pool_key: tuple | None,
        options: dict | None = None,
        defaults: dict | None = None,
    ):
        self._url = url
        #: what every writing call on this handle does unless it says otherwise: quarantine=, undoable=
        self.defaults = dict(defaults or {})
        self._options = options or {}
        self._backend = backend
        self._pool_key = pool_key
        self.closed = False

    @property
    def backend(self) -> Backend:
        if self.closed:
            raise InvalidArgumentError(
                f"this Store of {self.url} was closed; dk.connect() opens another (closing a Store "
                f"releases that handle only: other Stores of the same store go on working)"
            )
        return self._backend

    @property
    def url(self) -> str:
        """Where the store is: its URL with any password masked (***), and the path of a local file or
        folder made absolute (`sqlite:///flights.db` shows as `sqlite:////home/me/flights.db`)."""
        return mask(self._url)

    @property
    def address(self) -> tuple[str, dict] | None:
        """How another process opens this store: its URL (password and all) and options; None when only this
        process can reach it (an in-process store, a connection you lent). Never print it: `url` is masked."""
        if self.backend.in_process:
            return None
        return self._url, dict(self._options)

    @property
    def scheme(self) -> str:
        """The URL's scheme, without a driver part: "sqlite", "postgresql", "parquet", ..."""
        return scheme_of(self._url)

    def tables(self) -> list[str]:
        """The names of the tables in this store, sorted (the package's own bookkeeping tables left out).

        Returns:
            The table names; an empty list for a store that holds none yet (also for a SQLite file that
                does not exist yet: listing it does not create it).
        """
        return companions.hidden(self.backend.tables())

    def drop(self, table: str) -> None:
        """Remove a table, its rows and its stored dk schema.

        Args:
            table: The table's name.

        Raises:
            TableNotFoundError: There is no table of that name (the message lists the tables there).
        """
        check_table_name(table)
        if self.backend.schema(table) is None:
            raise TableNotFoundError(self.table_not_found(table))
        with self.backend.transaction():
            self.backend.drop(table)
            for other in companions.of(table):  # its batch log, quarantine and undo images
                self.backend.drop(other)

    def table_not_found(self, table: str) -> str:
        """What to say of a table that is not in this store: the tables there, or that there is no store
        at all where the URL points (a SQLite file that does not exist, named by its absolute path)."""
        missing = self.backend.missing()
        if missing is not None:
            return f"no table {table!r} in {self.url}: {missing}"
        return f"no table {table!r} in {self.url}; tables: {self.tables()}"

    def history(self, table: str) -> pd.DataFrame:
        """The versions of a table, newest first, on stores that keep history (delta://).

        Args:
            table: The table's name.

        Returns:
            A DataFrame, one row per version: version, timestamp, operation, rows, and what else the
                store records. Read an earlier version with `dk.load(store, table, version=N)` or `as_of=`.

        Raises:
            InvalidArgumentError: The store keeps no history (every store but delta://).
        """
        import pandas as pd

        check_table_name(table)
        if not isinstance(self.backend, History):
            raise InvalidArgumentError(no_history(self.url))
        return pd.DataFrame(self.backend.history(table))

    def batches(self, table: str) -> pd.DataFrame:
        """The batch log of a table: one row per writing call that was committed, oldest first.

        Args:
            table: The table's name.

        Returns:
            A DataFrame: `batch_id`, `time` (UTC), `operation` (save, update_batch, delete, undo), `total`,
                `succeeded`, `failed`, `quarantined`, `undoable`, `version` (on stores that keep history),
                `undone_by` (the id of the undo that undid it), `key` (the key columns, as JSON). It is the
                table `{table}__batches` of the store, which any tool can read.
        """
        check_table_name(table)
        return batchlog.batches(self.backend, table)

    def set_validation(self, table: str, schema: Any) -> None:
        """Keep a pandera schema with a table: every later write to it through the package, from any
        process or Store, is checked against it (as `validate=` checks a call), as well as against the
        call's own `validate=`.

        Args:
            table: The table's name (it must exist).
            schema: A pandera `DataFrameSchema` or `DataFrameModel`, stored in the store in pandera's own
                JSON; None stops checking the table's writes.

        Raises:
            InvalidArgumentError: pandera cannot serialize the schema whole: a lambda check, or any check
                not registered with pandera (`pandera.extensions.register_check_method`). Pass such a schema
                to each call with `validate=` instead.
                Also: the table cannot keep a schema (a folder of files another tool wrote).
            TableNotFoundError: There is no such table.
        """
        from dataclasses import replace

        from . import checks

        check_table_name(table)
        text = None if schema is None else checks.serialize(schema, table)
        backend = self.backend
        with backend.transaction():
            backend.claim(table)
            stored = backend.schema(table)
            if stored is None:
                raise TableNotFoundError(self.table_not_found(table))
            backend.set_schema(table, replace(stored, checks=text))
        kept = backend.schema(table)
        if kept is None or kept.checks != text:
            raise InvalidArgumentError(
                f"table {table!r} of {self.url} cannot keep checks: the store keeps no dk schema with it (a "
                f"folder of files another tool wrote); save it once with the package (if_exists='replace'), or "
                f"pass the schema to each call with validate="
            )

    def validation(self, table: str) -> Any:
        """The pandera schema a table keeps (`set_validation`), or None.

        Args:
            table: The table's name.
        """
        from . import checks

        return checks.kept(self.schema(table))

    def vacuum(self, table: str, retention: float | None = None) -> list[str]:
        """Remove the files that no reader of the table's current version needs, once older than
        `retention` seconds (the store's own by default), and return their names. File stores keep
        replaced parts for their readers for a while; stores that keep nothing return []."""
        check_table_name(table)
        return self.backend.vacuum(table, retention)

    def schema(self, table: str):
        """The stored dk schema of a table (TableNotFoundError when absent)."""
        check_table_name(table)
        s = self.backend.schema(table)
        if s is None:
            raise TableNotFoundError(self.table_not_found(table))
        return s

    def close(self) -> None:
        """Release this handle; the last handle on a store in the process closes its connections.

        Other handles on the same store, and calls given its URL string, go on working; a connection the
        user lent (see `dk.connect`) is never closed. Closing twice does nothing; using a closed handle
        raises InvalidArgumentError. `with dk.connect(url) as store:` closes it at the end of the block."""
        with POOL_LOCK:
            if self.closed:
                return
            self.closed = True
            key = self._pool_key
            shared = SHARED.get(key) if key is not None else None
            if key is None or shared is None or shared[0] is not self._backend:
                return
            shared[1] -= 1
            if shared[1]:
                return
            del SHARED[key]
        self._backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dask_tokenize__(self):  # Dask names the tasks of a lazy load by their arguments, this store among them
        return (type(self).__name__, self._url, id(self))

    def __repr__(self):
        return f"<Store {self.url}>"
