"""Store: a URL resolved to a backend instance, pooled per URL, with the password masked."""

from __future__ import annotations

import atexit
import inspect
import threading

from .backends import backend_class
from .backends.base import Backend
from .errors import InvalidArgumentError, TableNotFoundError
from .names import check_table_name
from .urls import mask, scheme_of

_POOL: dict[tuple, Store] = {}
_POOL_LOCK = threading.Lock()


class Store:
    """A connected store. Use `dk.connect(url)`; `close()` or a with-block releases it."""

    def __init__(self, url: str, backend: Backend, pool_key: tuple, options: dict | None = None):
        self._url = url
        self._options = options or {}
        self.backend = backend
        self._pool_key = pool_key
        self.closed = False

    @property
    def url(self) -> str:
        return mask(self._url)

    @property
    def scheme(self) -> str:
        return scheme_of(self._url)

    def tables(self) -> list[str]:
        """The tables in this store."""
        return self.backend.tables()

    def drop(self, table: str) -> None:
        """Remove a table; TableNotFoundError if there is none of that name."""
        check_table_name(table)
        if self.backend.schema(table) is None:
            raise TableNotFoundError(f"no table {table!r} in {self.url}; tables: {self.tables()}")
        with self.backend.transaction():
            self.backend.drop(table)

    def history(self, table: str):
        """The versions of a table, newest first (version, timestamp, operation, rows, ...), on stores
        that keep history (delta://); elsewhere an InvalidArgumentError."""
        import pandas as pd

        check_table_name(table)
        return pd.DataFrame(self.backend.history(table))

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
            raise TableNotFoundError(f"no table {table!r} in {self.url}; tables: {self.tables()}")
        return s

    def close(self) -> None:
        """Release the connections and forget this store in the pool."""
        with _POOL_LOCK:
            if _POOL.get(self._pool_key) is self:
                del _POOL[self._pool_key]
        if not self.closed:
            self.backend.close()
            self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dask_tokenize__(self):  # Dask names the tasks of a lazy load by their arguments, this store among them
        return (type(self).__name__, self._url, id(self))

    def __repr__(self):
        return f"<Store {self.url}>"


def connect(url, **options) -> Store:
    """Return the Store for `url` (the same pooled instance for the same URL and options), or over a
    connection the user holds (a sqlite3, SQLAlchemy, ADBC, psycopg or DuckDB one: see borrowed.py)."""
    if isinstance(url, Store):
        return url
    if not isinstance(url, str):
        from .borrowed import borrow

        return borrow(url, **options)
    scheme = scheme_of(url)
    key = (url, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _POOL_LOCK:
        store = _POOL.get(key)
        if store is None or store.closed:
            cls = backend_class(scheme)
            _check_options(cls, scheme, options)
            store = _POOL[key] = Store(url, cls(url, **options), key, options)
        return store


def _check_options(cls, scheme: str, options: dict) -> None:
    """Unknown connect() options are an error naming the valid ones (the backend's keyword arguments)."""
    params = inspect.signature(cls.__init__).parameters.values()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    valid = [p.name for p in params if p.name not in ("self", "url") and p.kind in named]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InvalidArgumentError(
            f"unknown option(s) {unknown} for {scheme}:// stores; valid: {', '.join(valid) if valid else 'none'}"
        )


def as_store(store) -> Store:
    """A Store from a Store, a URL string, or a connection the user holds."""
    if isinstance(store, Store):
        if store.closed:  # reopen with the same options (storage_options, pool_size, ...), or the same connection
            borrowed = getattr(store, "borrowed", None)
            return connect(store._url if borrowed is None else borrowed, **store._options)
        return store
    return connect(store)


@atexit.register
def _close_all() -> None:
    for store in list(_POOL.values()):
        try:
            store.close()
        except Exception:  # noqa: BLE001 - closing at exit must not raise
            pass
