"""Connections the user already holds, as pandas' `con=` takes them, turned into Stores.

`dk.connect(conn)`, and every call given `conn` as its store, come here. What each becomes:

- `sqlite3.Connection`: the store's only connection, for reads and writes (backends/sqlite/connection.py),
  so a call sees the same database, in memory too. A write call refuses to start while the connection
  holds uncommitted changes of the user's; it runs in autocommit mode with its own BEGIN and COMMIT,
  and gives the connection back with the user's settings.
- `duckdb.DuckDBPyConnection`: `conn.cursor()`, the package's own connection to the same database (in
  memory too), closed with the store. A transaction the user has open on theirs stays theirs: a call
  does not see its changes (DuckDB reports a conflict if both change the same rows).
- An ADBC PostgreSQL connection (adbc_driver_postgresql.dbapi): the store's only connection, taken in
  turn by the store's threads (backends/postgres/connection.py `Lent`); refused while the user's own
  transaction on it holds changes.
- A `psycopg.Connection` (psycopg 3, or psycopg2's): the PostgreSQL backend speaks ADBC, not psycopg,
  so the store connects to the same database with this connection's own parameters (host, port,
  database, user, password, options) through ADBC connections of its own; the user's connection is
  only looked at, never used. Settings made after it connected (SET search_path, ...) are not
  carried over, and a call sees what the user's open transaction has committed only. A write call
  refuses to start while that connection is inside a transaction: its locks could make the call
  wait for ever on the user's own thread.
- An ADBC SQLite connection: refused. ADBC's driver carries its own copy of SQLite, and the store
  touches SQLite files through Python's sqlite3 alone: two copies of SQLite on one file in one process
  corrupt it (backends/sqlite/reader.py).
- A SQLAlchemy `Connection`: its DBAPI connection, as above. A SQLAlchemy `Engine`: a SQLite file or
  the PostgreSQL URL (the engine's connect_args are not seen) as above; an in-memory SQLite database,
  or a DuckDB one (duckdb_engine), through one connection checked out of the engine's pool for the
  store's life and given back at close (the engine is never disposed).

Nothing the user holds is ever closed here, and nothing is imported that the user has not imported:
the kind is told by the classes of modules already loaded. A store keeps the object it was given
alive. While a store lives it is pooled by that object's id, so that calls given the same connection
share it (and its turns); what the package opened for it is released by `store.close()`, or when
the garbage collector takes the store and its backend (after the last call, and the last
load(chunksize=) reading, when the user holds no Store of it).
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import weakref
from collections.abc import Callable
from urllib.parse import quote, urlencode

from .backends import backend_class
from .backends.base import Backend
from .backends.sqlite.connection import main_file
from .errors import InvalidArgumentError, StorageError
from .handle import Store
from .urls import mask

ACCEPTED = (
    "a store URL (e.g. 'sqlite:///path/to/file.db'), a Store, or a connection you hold: a sqlite3.Connection, "
    "a SQLAlchemy Engine or Connection, an ADBC PostgreSQL connection (adbc_driver_postgresql), "
    "a psycopg.Connection, or a duckdb.DuckDBPyConnection"
)

_STORES: weakref.WeakValueDictionary[int, BorrowedStore] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


class BorrowedStore(Store):
    """A Store over a connection the user holds (`borrowed`, kept alive by the store). Closing it
    releases what the package opened for it, never the user's connection; so does the garbage
    collection of its backend (after the store, and after any load(chunksize=) still reading)."""

    def __init__(self, conn, backend: Backend, release: tuple[Callable[[], object], ...] = ()):
        super().__init__(backend.url, backend, ("borrowed", id(conn)))
        self.borrowed = conn
        self._release = weakref.finalize(backend, _release, release)
        # The backend keeps its store in turn (a cycle, for the garbage collector): while a load(chunksize=)
        # of it is still reading, a call given the same connection finds this store, and waits its turn.
        backend.borrowed_store = self

    @property
    def address(self) -> None:
        """None: the connection you lent is reachable from this process only."""
        return None

    def close(self) -> None:
        with _LOCK:
            if _STORES.get(id(self.borrowed)) is self:
                del _STORES[id(self.borrowed)]
        if not self.closed:
            with contextlib.suppress(Exception):  # the user may have closed the connection under it already
                self.backend.close()
            self._release()
            self.closed = True


def borrow(conn, **options) -> Store:
    """The Store over `conn`, a connection the user holds (the same one while it lives)."""
    if options:
        raise InvalidArgumentError(
            f"connect() options {sorted(options)} apply to store URLs; a connection you pass is used with the "
            f"settings it has"
        )
    with _LOCK:
        store = _STORES.get(id(conn))
        if store is None or store.closed:
            backend, release = _backend(conn)
            store = _STORES[id(conn)] = BorrowedStore(conn, backend, release)
        return store


def _release(release) -> None:
    """Close what the package opened beside a backend (run at close, or when the backend is collected:
    none of it may refer to the backend). What is not listed closes itself when collected."""
    for close in release:
        with contextlib.suppress(Exception):
            close()


def _is(obj, module: str, name: str) -> bool:
    """Whether `obj` is an instance of module.name, looked up only if the module is loaded already."""
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(obj, cls)


def _backend(conn) -> tuple[Backend, tuple]:
    """The backend over `conn`, and what to release with it besides."""
    if isinstance(conn, sqlite3.Connection):
        return backend_class("sqlite").borrowing(conn), ()
    if _is(conn, "duckdb", "DuckDBPyConnection"):
        return backend_class("duckdb").borrowing(conn), ()
    if _is(conn, "psycopg", "Connection") or _is(conn, "psycopg2.extensions", "connection"):
        return _beside_psycopg(conn)
    if _is(conn, "adbc_driver_manager.dbapi", "Connection"):
        return _adbc(conn)
    if _is(conn, "sqlalchemy.engine", "Connection"):
        try:
            dbapi = conn.connection.dbapi_connection
        except Exception as e:  # noqa: BLE001 - closed or invalidated: SQLAlchemy says which
            raise InvalidArgumentError(f"cannot use the SQLAlchemy Connection given as the store: {e}") from e
        if dbapi is None:
            raise InvalidArgumentError("the SQLAlchemy Connection given as the store has no DBAPI connection")
        return _backend(_unwrapped(dbapi))
    if _is(conn, "sqlalchemy.engine", "Engine"):
        return _engine(conn)
    kind = f"{type(conn).__module__}.{type(conn).__qualname__}"
    raise InvalidArgumentError(f"{kind} is not a store; pass {ACCEPTED}")


def _unwrapped(dbapi):
    """The driver's own connection under a DBAPI one (duckdb_engine wraps DuckDB's)."""
    return getattr(dbapi, "_ConnectionWrapper__c", dbapi)


def _sqlite_file(path: str) -> tuple[Backend, tuple]:
    """The package's own SQLite store on a file, and its connections to release."""
    backend = backend_class("sqlite")(f"sqlite:///{path}")
    return backend, (backend.releaser(),)


def _postgres(url: str, guard: Callable[[], None] | None = None) -> tuple[Backend, tuple]:
    """The package's own PostgreSQL store on a URL, and its connections to release."""
    backend = backend_class("postgresql")(url)
    if guard is not None:
        backend.check_before_writes(guard)
    return backend, (backend.releaser(),)


def _adbc(conn) -> tuple[Backend, tuple]:
    vendor = conn.adbc_get_info().get("vendor_name")
    if vendor == "PostgreSQL":
        return backend_class("postgresql").borrowing(conn), ()
    if vendor != "SQLite":
        raise InvalidArgumentError(f"ADBC connections to {vendor} cannot be a store; pass {ACCEPTED}")
    raise InvalidArgumentError(
        "an ADBC SQLite connection cannot be a store: ADBC's driver carries its own copy of SQLite, and two "
        "copies of SQLite using one file in one process corrupt it (neither sees the other's locks), while the "
        "store uses Python's sqlite3. Pass a sqlite3.Connection, or the file's URL ('sqlite:///path/to/file.db') "
        "once no ADBC SQLite connection to that file is open in this process"
    )


def _engine(engine) -> tuple[Backend, tuple]:
    dialect = engine.dialect.name
    if dialect == "postgresql":
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return _postgres(url)
    if dialect not in ("sqlite", "duckdb"):
        raise InvalidArgumentError(f"a SQLAlchemy Engine over {dialect} cannot be a store; pass {ACCEPTED}")
    try:
        raw = engine.raw_connection()
    except Exception as e:  # noqa: BLE001 - the driver's error, whatever its class
        raise StorageError(f"cannot connect through the SQLAlchemy Engine given as the store: {e}") from e
    try:
        conn = _unwrapped(raw.dbapi_connection)
        if dialect == "duckdb":
            return backend_class("duckdb").borrowing(conn), (raw.close,)
        path = main_file(conn.execute("PRAGMA database_list").fetchall())
        if not path:  # in memory: reachable through this connection only, so keep it
            return backend_class("sqlite").borrowing(conn), (raw.close,)
    except BaseException:
        raw.close()
        raise
    raw.close()  # a file: the package's own store on it
    return _sqlite_file(path)


def _beside_psycopg(conn) -> tuple[Backend, tuple]:
    """The PostgreSQL store on the database of a psycopg connection, with connections of its own."""
    if conn.closed:
        raise InvalidArgumentError("the psycopg connection given as the store is closed")
    info = conn.info
    params = dict(info.get_parameters() if hasattr(info, "get_parameters") else info.dsn_parameters)
    params.setdefault("port", str(info.port))  # the default one is left out: shown in the URL all the same
    url = _pg_url(params, info.password)

    def idle() -> None:  # before each write call
        if conn.info.transaction_status:  # 0: idle, outside any transaction
            raise InvalidArgumentError(
                f"the psycopg connection given as the store ({mask(url)}) is inside a transaction of your own; "
                f"commit or roll it back first: dataknobs-pd writes through connections of its own, and what "
                f"your transaction holds could make it wait for ever"
            )

    return _postgres(url, guard=idle)


def _pg_url(params: dict, password: str | None) -> str:
    """A postgresql:// URL of libpq parameters (the password in its place, where it is masked)."""
    params = {k: v for k, v in params.items() if v not in (None, "") and k != "password"}
    user, host, port = params.pop("user", ""), params.pop("host", ""), params.pop("port", "")
    db = params.pop("dbname", "")
    if params.get("hostaddr") == host:  # libpq reports the address it resolved: the host says it already
        del params["hostaddr"]
    where = ""
    if host and not host.startswith("/") and "," not in host:
        where = f"[{host}]" if ":" in host else host
    elif host:  # a socket folder, or several hosts: libpq takes them as parameters
        params["host"] = host
    if port and where:
        where += f":{port}"
    elif port:
        params["port"] = port
    cred = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    url = f"postgresql://{cred + '@' if cred else ''}{where}/{quote(db, safe='')}"
    return url + ("?" + urlencode(params) if params else "")
