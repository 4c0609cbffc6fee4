"""Opening stores: `connect` (a URL, a Store, or a connection the user holds, to a Store), the handle that
calls given a URL string use (`pooled`), and every backend closed at exit. The Store itself, and the
backends shared between handles, are handle.py's; a connection the user holds, borrowed.py's."""

from __future__ import annotations

import atexit
import inspect
from typing import Any

from .backends import backend_class
from .backends.base import Backend
from .errors import InvalidArgumentError
from .handle import POOL_LOCK, SHARED, Store
from .urls import mask, resolved, scheme_of

__all__ = ["Store", "as_store", "connect", "mask", "pooled"]

_POOL: dict[tuple, Store] = {}  # (url, options) -> the handle that calls given the URL string use


def connect(url: str | Store | Any, **options: Any) -> Store:
    """Open a store: a new handle on it, sharing its connections with every other handle in the process.

    Args:
        url: Where the store is: `memory://NAME`, `sqlite:///path/file.db` (`sqlite:///rel.db` is relative
            to the working folder, `sqlite:////abs.db` absolute), `postgresql://user:pass@host:port/db`,
            `duckdb:///path/file.duckdb`, `parquet://PATH`, `csv://PATH`, `jsonl://PATH` or `delta://PATH`
            (PATH a local folder, relative or absolute, or an fsspec URL such as `s3://bucket/prefix`).
            SQLAlchemy-style driver parts (`postgresql+psycopg://`) name the same stores. Also a connection
            you hold: a `sqlite3.Connection`, a SQLAlchemy `Engine` or `Connection`, an ADBC PostgreSQL
            connection, a `psycopg.Connection` or a `duckdb.DuckDBPyConnection`; it is used as it is and
            never closed by the package. A Store comes back as it is.
        **options: The backend's own settings, e.g. `timeout=` (SQLite, DuckDB: seconds to wait for
            another writer), `pool_size=` (PostgreSQL), `storage_options=` (files and Delta on fsspec),
            `read_only=` (DuckDB). An unknown option raises InvalidArgumentError naming the valid ones.

    Returns:
        The Store. A SQLite file is not created until a table is saved to it.

    Raises:
        UnknownSchemeError: The URL's scheme names no backend (the message lists the valid ones).
        BackendUnavailableError: The backend's optional dependency is missing (the message names the
            `pip install` extra to add).
        InvalidArgumentError: An unknown option, or a bad option value.
        StorageError: The store cannot be opened (e.g. the folder of a SQLite file does not exist).
    """
    if isinstance(url, Store):
        return url
    defaults = {k: options.pop(k) for k in DEFAULTS if k in options}
    for k, v in defaults.items():
        if not isinstance(v, bool):
            raise InvalidArgumentError(f"{k}= must be True or False, got {v!r}")
    if not isinstance(url, str):
        if defaults:
            raise InvalidArgumentError(
                f"{sorted(defaults)} apply to every call on a store URL; with a connection you lent, pass them "
                f"to each call (df.dk.save(conn, table, quarantine=True))"
            )
        from .borrowed import borrow  # on first use: it loads the SQLite backend

        return borrow(url, **options)
    url = resolved(url)  # a local path made absolute: shown as such, and independent of the working folder
    cls = backend_class(scheme_of(url))
    _check_options(cls, scheme_of(url), options)
    key = cls.pool_key(url, options)
    with POOL_LOCK:
        shared = SHARED.get(key)
        if shared is None:
            shared = SHARED[key] = [cls(url, **options), 0]
        shared[1] += 1
        return Store(url, shared[0], key, options, defaults)


DEFAULTS = ("quarantine", "undoable")  # connect() options that are every call's default on that Store


def pooled(url: str, **options) -> Store:
    """The handle that calls given the URL string itself use: one per URL and options, kept open until the
    process exits (so that a store named by its URL stays connected between calls)."""
    key = Backend.pool_key(url, options)  # by URL and options as given, whatever the backend shares
    with POOL_LOCK:
        store = _POOL.get(key)
        if store is None or store.closed:
            store = _POOL[key] = connect(url, **options)
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
    """A Store from a Store (refused once closed), a URL string, or a connection the user holds."""
    if isinstance(store, Store):
        store.backend  # noqa: B018 - a closed handle raises, naming its store
        return store
    if isinstance(store, str):
        return pooled(store)
    return connect(store)


@atexit.register
def _close_all() -> None:
    with POOL_LOCK:
        backends = [backend for backend, _ in SHARED.values()]
        SHARED.clear()
        _POOL.clear()
    for backend in backends:
        try:
            backend.close()
        except Exception:  # noqa: BLE001 - closing at exit must not raise
            pass
