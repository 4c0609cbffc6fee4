"""PostgreSQL connections: a small pool of ADBC connections, statements, and driver errors classified.

Connections run in autocommit; transactions are explicit BEGIN/COMMIT (see session.py) so that
nothing is left open between calls (an idle open transaction would hold locks). Errors become a
WriteError (the data is at fault: the engine narrows the chunk down), ConnectionLostError (the
server is gone: the call ends), ConcurrentWriteError (another transaction created the same
catalogue entry first) or another StorageError, with the SQLSTATE and the constraint name.
A password is found the way the masked URL finds it (up to the last "@"), given to libpq
percent-encoded, and scrubbed from every message. `Lent` stands in for the pool when the
connection is one the user holds (dataknobs_pd.borrowed).
"""

from __future__ import annotations

import contextlib
import os
import threading
from urllib.parse import quote, unquote, urlsplit

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as pgdb
import numpy as np
import pyarrow as pa

from ...errors import (
    ConcurrentWriteError,
    ConnectionLostError,
    DataKnobsError,
    InvalidArgumentError,
    StorageError,
    TableExistsError,
    TableNotFoundError,
    WriteError,
)
from ...failures import RowError
from ...urls import password_of

_CLASSES = {  # SQLSTATE -> row error class (by exact code, then by class)
    "23502": RowError.NotNull,
    "23514": RowError.CheckConstraint,
    "23503": RowError.ForeignKey,
    "23505": RowError.Constraint,
    "22001": RowError.OutOfRange,
    "22003": RowError.OutOfRange,
    "22008": RowError.OutOfRange,
    "22015": RowError.OutOfRange,
    "54000": RowError.OutOfRange,
    "23": RowError.Constraint,
    "22": RowError.TypeConversion,
}
_ROW_CLASSES = ("22", "23", "40", "54", "P0", "XX")  # errors about the data: the engine narrows them down
TRANSIENT = ("40P01", "40001")  # deadlock, serialization failure: worth another try
UNIQUE = "23505"


class Conn:
    """One ADBC connection: statements that raise classified errors, and whether it broke."""

    __slots__ = ("broken", "raw", "secret", "where")

    def __init__(self, raw, where: str, secret: tuple[str, ...]):
        self.raw = raw
        self.where, self.secret = where, secret  # the masked URL for messages; the password's spellings to scrub
        self.broken = False

    def run(self, sql: str, params=None, doing: str = "running a statement") -> None:
        self._call(lambda cur: cur.execute(sql, params), doing)

    def query(self, sql: str, params=None, doing: str = "reading") -> list:
        return self._call(lambda cur: (cur.execute(sql, params), cur.fetchall())[1], doing)

    def positions(self, sql: str, n: int, params=None, doing: str = "writing") -> np.ndarray:
        """A bool per row of a chunk of `n`: whether the one-column result (row positions) names it."""

        def go(cur):
            cur.execute(sql, params)
            found = cur.fetch_arrow_table().column(0).to_numpy(zero_copy_only=False)
            out = np.zeros(n, dtype=bool)
            out[found.astype(np.int64)] = True
            return out

        return self._call(go, doing)

    def column(self, sql: str, params=None, doing: str = "reading") -> np.ndarray:
        """The first column of the result, as NumPy."""

        def go(cur):
            cur.execute(sql, params)
            return cur.fetch_arrow_table().column(0).to_numpy(zero_copy_only=False)

        return self._call(go, doing)

    def copy(self, table: str, data: pa.Table, temporary: bool = False, schema: str | None = None) -> None:
        """Binary COPY of Arrow data into an existing table of `schema` (its columns named by the data)."""
        self._call(
            lambda cur: cur.adbc_ingest(table, data, mode="append", db_schema_name=schema, temporary=temporary),
            f"writing to {table!r}",
        )

    def _call(self, fn, doing: str):
        cur = self.raw.cursor()
        try:
            return fn(cur)
        except adbc_driver_manager.Error as e:
            raise self.error(e, doing) from e
        finally:
            cur.close()

    def error(self, e: adbc_driver_manager.Error, doing: str) -> DataKnobsError:
        """Classify a driver error: connection lost, a row error (WriteError) or a plain failure."""
        state = getattr(e, "sqlstate", None) or ""
        if connection_error(e):
            self.broken = True
            return ConnectionLostError(
                f"lost the connection to {self.where} while {doing}: {self.scrub(text(e))}; the server rolled "
                f"back the open transaction, so nothing of this call was written. Run it again "
                f"(if_exists='upsert' is safe to repeat)"
            )
        details = {k.decode(): v.decode(errors="replace") for k, v in (getattr(e, "details", None) or [])}
        message = self.scrub(details.get("PG_DIAG_MESSAGE_PRIMARY") or text(e))
        constraint = details.get("PG_DIAG_CONSTRAINT_NAME")
        if constraint and f'"{constraint}"' not in message:
            message += f' (constraint "{constraint}")'
        if details.get("PG_DIAG_MESSAGE_DETAIL"):
            message += f": {details['PG_DIAG_MESSAGE_DETAIL']}"
        if state == "42P07":
            return TableExistsError(f"{doing}: {message}")
        if state in ("42P01", "3F000"):
            return TableNotFoundError(f"{doing}: {message} in {self.where}")
        if state == UNIQUE and details.get("PG_DIAG_SCHEMA_NAME") == "pg_catalog":
            # two transactions made the same catalogue entry (CREATE of one name): the other committed first
            return ConcurrentWriteError(
                f"{doing}: another transaction did the same at the same moment and committed first; "
                f"this call was rolled back, nothing of it was written: run it again"
            )
        if state[:2] in _ROW_CLASSES:
            error = _CLASSES.get(state) or _CLASSES.get(state[:2], RowError.WriteError)
            if state == UNIQUE and (constraint or "").endswith("_pkey"):
                error = RowError.KeyConflict
            return WriteError(message, error, state)
        return StorageError(f"PostgreSQL refused {doing} [{state or 'no SQLSTATE'}]: {message}")

    def scrub(self, message: str) -> str:
        return scrub(message, self.secret)

    def alive(self) -> bool:
        try:
            self.query("SELECT 1")
            return True
        except DataKnobsError:
            return False

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a broken connection may refuse a clean close
            self.raw.close()


class Pool:
    """Idle connections of one backend (one per URL); at most `size` kept, more opened when needed."""

    def __init__(self, uri: str, size: int, where: str):
        self.uri, self.secret = libpq_uri(uri)
        self.size, self.where = size, where
        self.idle: list[Conn] = []
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.closed = False

    def get(self) -> Conn:
        with self.lock:
            if self.pid != os.getpid():  # a forked child must not touch the parent's sockets
                self.idle, self.pid = [], os.getpid()
            idle = self.idle.pop() if self.idle else None
        while idle is not None:  # a pooled connection may have been closed by the server meanwhile
            if idle.alive():
                return idle
            idle.close()
            with self.lock:
                idle = self.idle.pop() if self.idle else None
        try:
            return Conn(pgdb.connect(self.uri, autocommit=True), self.where, self.secret)
        except adbc_driver_manager.Error as e:
            # not chained: the driver's own message is shown here, scrubbed, and nowhere else
            raise StorageError(f"cannot connect to {self.where}: {scrub(text(e), self.secret)}") from None

    def put(self, c: Conn) -> None:
        with self.lock:
            if not (c.broken or self.closed or len(self.idle) >= self.size or self.pid != os.getpid()):
                self.idle.append(c)
                return
        c.close()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            idle, self.idle = self.idle, []
            mine = self.pid == os.getpid()
        for c in idle if mine else []:
            c.close()


class Lent:
    """An ADBC connection the user holds, as the pool of one of a borrowed store; never closed here.

    Each use takes it in turn (other threads wait) and in autocommit mode, so that a call's BEGIN
    and COMMIT are its own; it is refused while the user's own transaction holds changes, and
    handed back in the user's mode (ADBC then opens the user's next transaction).
    """

    def __init__(self, raw):
        self.conn = Conn(raw, "the PostgreSQL connection given as the store", ())
        self.lock = threading.Lock()
        self.user: int | None = None  # the thread using it
        self.restore = False  # the user's mode was autocommit off

    @property
    def name(self) -> str:
        where = self.conn.where
        return where if where.startswith("the ") else f"the PostgreSQL connection given as the store ({where})"

    def get(self) -> Conn:
        if self.user == threading.get_ident():
            raise StorageError(
                f"{self.name} is busy with a read of this thread that was not read to its end "
                f"(load(chunksize=...)); finish or close it first: a borrowed connection is the store's only one"
            )
        self.lock.acquire()
        self.user = threading.get_ident()
        try:
            self._take()
        except BaseException:
            self.user = None
            self.lock.release()
            raise
        return self.conn

    def _take(self) -> None:
        c = self.conn
        try:
            changed = c.query("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")[0][0]
            self.restore = c.raw.adbc_connection.get_option("adbc.connection.autocommit") == "false"
        except ConnectionLostError:
            raise
        except (DataKnobsError, adbc_driver_manager.Error) as e:  # closed, or a failed transaction of the user's
            raise InvalidArgumentError(
                f"cannot use {self.name}: {e}; if a transaction of yours failed on it, roll it back first"
            ) from e
        if changed:
            raise InvalidArgumentError(
                f"{self.name} holds uncommitted changes of your own; commit or roll them back first "
                f"(dataknobs-pd commits or rolls back only its own calls)"
            )
        if self.restore:  # ends the user's open transaction, which has changed nothing
            self._autocommit(True)

    def _autocommit(self, on: bool) -> None:
        try:
            self.conn.raw.adbc_connection.set_autocommit(on)
        except adbc_driver_manager.Error as e:
            raise self.conn.error(e, "switching autocommit") from e

    def put(self, c: Conn) -> None:
        try:
            if self.restore and not c.broken:
                self._autocommit(False)
        finally:
            self.user = None
            self.lock.release()

    def close(self) -> None:
        """Nothing to release: the connection is the user's."""


def text(e: Exception) -> str:
    """The server's words, without the driver's prefixes."""
    out = str(e)
    for head in ("[libpq] ", "PGRES_FATAL_ERROR ", "ERROR:  "):
        out = out.split(head, 1)[-1] if head in out else out
    return " ".join(out.split())


def libpq_uri(uri: str) -> tuple[str, tuple[str, ...]]:
    """The URI for libpq, its password percent-encoded, and the spellings of that password to scrub.

    libpq ends a password at the first "/" or "@" and then shows the rest as a host or a port.
    """
    raw = password_of(uri.split("?", 1)[0]) or ""  # a query's own "@" is not the password's end
    if any(ch in raw for ch in "/@"):
        start = uri.index(":", uri.index("://") + 3) + 1  # the password follows "://user:"
        uri = uri[:start] + quote(raw, safe="") + uri[start + len(raw) :]
    spellings = {raw, unquote(raw), quote(raw, safe=""), password_of(uri) or "", urlsplit(uri).password or ""}
    spellings |= {unquote(s) for s in spellings}
    return uri, tuple(sorted(spellings - {""}, key=len, reverse=True))


def scrub(message: str, secret: tuple[str, ...]) -> str:
    """`message` without any spelling of the password (longest first)."""
    for s in secret:
        message = message.replace(s, "***")
    return message


def connection_error(e: adbc_driver_manager.Error) -> bool:
    state = getattr(e, "sqlstate", None) or ""
    if state:
        return state[:2] == "08" or state in ("57P01", "57P02", "57P03")
    return isinstance(e, adbc_driver_manager.OperationalError) and str(e).startswith("IO")
