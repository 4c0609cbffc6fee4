"""The DuckDB database's connections: the file opened (waiting while another process holds it), a
connection per thread made from the root one, the thread's open transaction, and statements run with
DuckDB's errors turned into this package's."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from ...errors import ConcurrentWriteError, InvalidArgumentError, StorageError
from ...urls import mask
from ..sql import STAGE
from . import checks


def open_database(path: str, read_only: bool, config: dict, timeout: float, url: str) -> duckdb.DuckDBPyConnection:
    """Open the database, waiting up to `timeout` seconds while another process has the file open."""
    if not path.startswith(":memory:"):
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise StorageError(f"cannot open {mask(url)}: folder {parent!r} does not exist")
    deadline = time.monotonic() + timeout
    while True:
        try:
            return duckdb.connect(path, read_only=read_only, config=config)
        except duckdb.IOException as e:
            if "lock" not in str(e).lower():
                raise StorageError(f"cannot open {mask(url)}: {e}") from e
            if time.monotonic() >= deadline:
                raise StorageError(
                    f"cannot open {mask(url)}: another process has this DuckDB file open, and DuckDB lets "
                    f"only one process at a time open a file for writing (waited {timeout:g}s; pass timeout= "
                    f"to wait longer, close the store in the other process, or open the file with "
                    f"read_only=True from every process that only reads). DuckDB said: {e}"
                ) from e
            time.sleep(0.05)
        except duckdb.InvalidInputException as e:  # e.g. an unknown setting in config=
            raise InvalidArgumentError(f"cannot open {mask(url)}: {e}") from e
        except duckdb.Error as e:
            raise StorageError(f"cannot open {mask(url)}: {e}") from e


@dataclass
class Tx:
    """One thread's open transaction. DuckDB's BEGIN is sent with the first statement, so that a
    writer waiting in claim() takes its snapshot after the writer before it has committed."""

    cur: duckdb.DuckDBPyConnection
    begun: bool = False
    broken: bool = False  # a statement failed: DuckDB has aborted the transaction
    claimed: dict = field(default_factory=dict)  # table (casefolded) -> the lock this transaction holds
    created: set = field(default_factory=set)  # tables made by this transaction: nothing in them can clash
    keyed: set = field(default_factory=set)  # of those, the ones that get a PRIMARY KEY before commit
    refused: checks.Refused | None = None  # the chunk the engine is narrowing down
    tables: dict = field(default_factory=dict)  # name -> checks.Table, read once per transaction
    probe: duckdb.DuckDBPyConnection | None = None  # a second connection, for what may fail


class Connections:
    """The root connection the threads' own are made from, each thread's connection (DuckDB connections
    are not shared between threads) and its open transaction (`tx`, set by the backend)."""

    def __init__(self, root: duckdb.DuckDBPyConnection, url: str):
        self.root = root
        self.url = url
        self.local = threading.local()
        self._guard = threading.Lock()
        self._cursors: list[tuple[threading.Thread, duckdb.DuckDBPyConnection]] = []

    @property
    def tx(self) -> Tx | None:
        """The calling thread's open transaction."""
        return getattr(self.local, "tx", None)

    @tx.setter
    def tx(self, tx: Tx | None) -> None:
        self.local.tx = tx

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's connection to the database."""
        cur = getattr(self.local, "cur", None)
        if cur is None:
            cur = self.new_cursor()
            self.local.cur = cur
            with self._guard:
                for _, c in [e for e in self._cursors if not e[0].is_alive()]:
                    c.close()
                self._cursors = [e for e in self._cursors if e[0].is_alive()] + [(threading.current_thread(), cur)]
        return cur

    def new_cursor(self) -> duckdb.DuckDBPyConnection:
        try:
            cur = self.root.cursor()
        except duckdb.Error as e:
            raise StorageError(f"{mask(self.url)} is closed or broken: {e}") from e
        cur.execute("SET arrow_large_buffer_size = true")  # strings come back as large_string, no 2 GB cap
        return cur

    def fail(self, e: duckdb.Error, doing: str, tx: Tx | None = None) -> StorageError:
        """The error to raise for a DuckDB error; a failed statement has aborted DuckDB's transaction."""
        if tx is not None:
            tx.broken = True
        if isinstance(e, duckdb.TransactionException) and "conflict" in str(e).lower():
            return ConcurrentWriteError(
                f"{doing}: another transaction changed the same rows at the same time ({e}); "
                f"this call was rolled back, nothing of it was written: run it again"
            )
        whole = (
            " (DuckDB ends the transaction on a failed statement, so nothing of this call was written)" if tx else ""
        )
        return StorageError(f"{doing} in {mask(self.url)}: {e}{whole}")

    def run(self, tx: Tx, sql: str, params=None, doing: str = "writing", numpy: bool = False):
        """A statement inside the transaction (BEGIN first when it is the first one), its result read whole
        (DuckDB refuses other work on a connection with a result pending): rows, or columns as numpy."""
        if tx.broken:
            raise StorageError(f"{doing}: this call's DuckDB transaction was aborted by an earlier error")
        try:
            if not tx.begun:
                tx.cur.execute("BEGIN TRANSACTION")
                tx.begun = True
            result = tx.cur.execute(sql, params)
            return result.fetchnumpy() if numpy else result.fetchall()
        except duckdb.Error as e:
            raise self.fail(e, doing, tx) from e

    def query(self, sql: str, params=None, doing: str = "reading the catalogue") -> list[tuple]:
        """A statement in the open transaction, else on this thread's connection."""
        tx = self.tx
        if tx is not None:
            return self.run(tx, sql, params, doing)
        try:
            return self.cursor().execute(sql, params).fetchall()
        except duckdb.Error as e:
            raise self.fail(e, doing) from e

    def close(self) -> None:
        with self._guard:
            cursors, self._cursors = self._cursors, []
        for _, cur in cursors:
            try:
                cur.close()
            except duckdb.Error:
                pass
        self.root.close()


@contextmanager
def staged(cur: duckdb.DuckDBPyConnection, data: pa.Table):
    """`data` visible to `cur` as the view `_dk_stage` (an Arrow scan, no copy)."""
    cur.register(STAGE, data)
    try:
        yield
    finally:
        try:
            cur.unregister(STAGE)
        except duckdb.Error:  # an aborted transaction refuses even this; the next register replaces it
            pass
