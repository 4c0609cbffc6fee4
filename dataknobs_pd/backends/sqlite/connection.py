"""The store's one sqlite3 connection under its lock, its transactions and savepoints, errors
classified, and its reads (through reader processes, reader.py, or the sqlite3 connection).

Sharing: the sqlite3 connection is used under `lock` only, and no statement is left open on it
between calls (SQLite will not drop the stage while one is). A write call holds the lock and
SQLite's write lock (BEGIN IMMEDIATE) from its start to its end, so whether its table exists is
decided and acted on with no other writer in between: thread, store or process. In this
process the file is touched through Python's sqlite3 alone (the SQLite library pandas and
SQLAlchemy use): reads go through a reader process (ADBC's driver there, Arrow back; WAL: they
see the last commit and never wait for a writer) when one is ready, else through the shared
connection a page at a time; the thread inside a write transaction reads through the shared
connection, so that it sees what the transaction did so far. Stores of one file share one
Connection (Backend.pool_key: the resolved path).

A file that does not exist is not created until the first write: until then the connection is one to
an empty database in memory (its catalogue table only), so that reads and listings find nothing, and a
load from a mistyped path creates nothing. Every use looks again whether the file has appeared meanwhile
(another Store, process or tool created it) and opens it when it has.

Borrowed: over a sqlite3 connection the user holds (dataknobs_pd.borrowed), that connection is
the shared one and the only one (no ADBC readers: reads see the same database, also in memory).
It keeps the user's settings; a write call refuses to start while it holds a transaction of the
user's (that work is theirs to commit), runs in autocommit mode with its own BEGIN IMMEDIATE and
COMMIT, and gives the connection back as it was. It is never closed here.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

from ...errors import DataKnobsError, InvalidArgumentError, StorageError, WriteError
from ...failures import RowError
from .names import META_T, STAGE_T
from .reader import READERS, ReadError, Readers

CATALOGUE = f"CREATE TABLE IF NOT EXISTS {META_T} (name TEXT PRIMARY KEY, schema TEXT NOT NULL)"

# Errors a row can cause (the engine halves the chunk to find it); any other is the store's.
_ROW_CODES = ("SQLITE_CONSTRAINT", "SQLITE_TOOBIG", "SQLITE_MISMATCH", "SQLITE_ERROR", "SQLITE_RANGE")

_ERRORS = {  # SQLite extended result name -> row error class
    "SQLITE_CONSTRAINT_PRIMARYKEY": RowError.KeyConflict,
    "SQLITE_CONSTRAINT_UNIQUE": RowError.Constraint,
    "SQLITE_CONSTRAINT_NOTNULL": RowError.NotNull,
    "SQLITE_CONSTRAINT_CHECK": RowError.CheckConstraint,
    "SQLITE_CONSTRAINT_FOREIGNKEY": RowError.ForeignKey,
    "SQLITE_TOOBIG": RowError.OutOfRange,
    "SQLITE_MISMATCH": RowError.TypeConversion,
}


class Connection:
    """The shared sqlite3 connection (`sqlite`) and its lock, transactions and reads."""

    def __init__(self, url: str, path: str, timeout: float, borrowed: sqlite3.Connection | None = None):
        self.url, self.path, self.timeout = url, path, timeout
        self.lock = threading.RLock()
        self.depth = 0  # transactions and savepoints open
        self.owner: int | None = None  # the thread inside the write transaction
        self.begun: tuple | None = None  # at its start: the changes made so far and the schema's version
        self.own = borrowed is None  # False: the user's connection, never closed here
        self.readers: Readers | None = None  # the reader processes, for a file of our own
        self.absent = False  # True: no file at `path` yet; `sqlite` is an empty database in memory
        if borrowed is not None:
            self.sqlite = borrowed
            with self.sql("reading the database"):
                if not borrowed.in_transaction:  # else at our first write: nothing joins the user's transaction
                    borrowed.execute(CATALOGUE)
            return
        if path != ":memory:" and not os.path.exists(path):
            self.absent = True
            self.sqlite = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self.sqlite.execute(CATALOGUE)
            return
        self.sqlite = self._open()

    def _open(self) -> sqlite3.Connection:
        """The connection to the file (created if it is not there), set up; the readers warmed for it."""
        path = self.path
        try:
            c = sqlite3.connect(path, timeout=self.timeout, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as e:
            raise self.storage_error(e, "cannot open the database") from e
        try:
            if path != ":memory:":
                c.execute("PRAGMA journal_mode=WAL").fetchall()
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA temp_store=MEMORY")
            c.execute("PRAGMA foreign_keys=ON")
            c.execute(CATALOGUE)
        except sqlite3.Error as e:
            c.close()
            raise self.storage_error(e, "cannot open the database") from e
        if path != ":memory:":  # reads through reader processes: start one now, for the first read
            self.readers = READERS
            READERS.warm()
        return c

    def _appear(self, create: bool) -> None:
        """While there is no file: open it once it exists, or create it (`create`, for a write). Under the lock."""
        if not self.absent or not (create or os.path.exists(self.path)):
            return
        stand_in, self.sqlite = self.sqlite, self._open()
        self.absent = False
        stand_in.close()

    def missing(self) -> str | None:
        """What is wrong when there is no database file at the store's path yet (None: there is one)."""
        with self.lock:
            self._appear(False)
            if not self.absent:
                return None
        return (
            f"there is no SQLite database at {self.path!r} (no such file; nothing was created): check the path, "
            f"or save a table to create the database"
        )

    # -- the shared connection ---------------------------------------------------------------
    @contextmanager
    def sql(self, doing: str):
        """The shared connection, under the lock; what sqlite3 raises becomes a StorageError saying what failed."""
        with self.lock:
            try:
                self._appear(False)
                with plain(self.sqlite, not self.own):
                    yield self.sqlite
            except sqlite3.Error as e:
                raise self.storage_error(e, doing) from e

    def storage_error(self, e: sqlite3.Error, doing: str) -> StorageError:
        name = getattr(e, "sqlite_errorname", None) or type(e).__name__
        if name == "SQLITE_FULL":
            why = "the disk is full"
        elif name.startswith("SQLITE_BUSY"):
            why = (
                f"the database is locked by another writer, still after waiting {self.timeout:g}s "
                f"(connect with timeout= to wait longer)"
            )
        else:
            why = str(e)
        return StorageError(f"{doing} in {self.url}: {why} ({name})")

    def write_error(self, e: sqlite3.Error, table: str) -> DataKnobsError:
        """A row's fault (WriteError, for the engine to narrow down), or the store's (StorageError)."""
        name = getattr(e, "sqlite_errorname", None) or ""
        if name.startswith(_ROW_CODES) and not self.lost():
            return WriteError(str(e), _ERRORS.get(name, RowError.WriteError), name)
        return StorageError(f"{self.storage_error(e, f'writing to {table!r}')}; nothing of this call was written")

    def lost(self) -> bool:
        """Inside our transaction, and SQLite has rolled it back (a full disk, an I/O error, ON CONFLICT ROLLBACK)."""
        return self.depth > 0 and not self.sqlite.in_transaction

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def transaction(self):
        with self.lock:
            if self.depth:
                with self.savepoint():
                    yield
                return
            with self._autocommit():
                self._appear(True)  # a write creates the file
                with self.sql("starting a write transaction") as c:
                    c.execute("BEGIN IMMEDIATE")  # the write lock now: existence is decided under it
                    if not self.own:
                        c.execute(CATALOGUE)
                    self.begun = (self.sqlite.total_changes, self._schema_version(c))
                self.depth, self.owner = 1, threading.get_ident()
                try:
                    yield
                    with self.sql("committing") as c:
                        if not self.own:  # nothing of ours stays on the user's connection
                            c.execute(f"DROP TABLE IF EXISTS {STAGE_T}")
                        c.execute("COMMIT")
                except BaseException as e:
                    if self.sqlite.in_transaction:  # SQLite may have rolled it back already (a full disk)
                        with self.sql("rolling back") as c:
                            c.execute("ROLLBACK")
                    if isinstance(e, sqlite3.Error):
                        raise self.storage_error(e, "writing") from e
                    raise
                finally:
                    self.depth, self.owner = 0, None

    @contextmanager
    def _autocommit(self):
        """A borrowed connection in autocommit mode for one write call (the BEGIN and COMMIT are ours),
        given back with the user's setting; refused while it holds the user's own transaction."""
        if self.own:
            yield
            return
        c = self.sqlite
        with self.sql("starting a write transaction"):
            if getattr(c, "autocommit", None) is False:  # Python 3.12+: always inside a transaction of its own
                raise InvalidArgumentError(
                    f"the sqlite3 connection given as the store ({self.url}) has autocommit=False, so it always "
                    f"holds a transaction of its own; pass one with the default autocommit setting, or with "
                    f"autocommit=True, to write through it"
                )
            if c.in_transaction:
                raise InvalidArgumentError(
                    f"the sqlite3 connection given as the store ({self.url}) holds uncommitted changes of your own; "
                    f"commit or roll them back first (dataknobs-pd commits or rolls back only its own calls)"
                )
            level, c.isolation_level = c.isolation_level, None  # no implicit BEGIN of the sqlite3 module
        try:
            with plain(c):
                yield
        finally:
            c.isolation_level = level

    @contextmanager
    def savepoint(self):
        with self.lock:
            name = f"dk_{self.depth}"
            with self.sql("opening a savepoint") as c:
                c.execute(f"SAVEPOINT {name}")
            self.depth += 1
            try:
                yield
            except BaseException as e:
                if self.sqlite.in_transaction:
                    with self.sql("rolling back a savepoint") as c:
                        c.execute(f"ROLLBACK TO {name}")
                        c.execute(f"RELEASE {name}")
                elif not isinstance(e, (StorageError, sqlite3.Error)):  # the caller names a raw error
                    raise StorageError(
                        f"SQLite rolled back the whole transaction in {self.url} ({type(e).__name__}: {e}); "
                        f"nothing of this call was written"
                    ) from e
                raise
            else:
                with self.sql("releasing a savepoint") as c:
                    c.execute(f"RELEASE {name}")
            finally:
                self.depth -= 1

    # -- reads -------------------------------------------------------------------------------
    @staticmethod
    def _schema_version(c: sqlite3.Connection) -> int:
        return c.execute("PRAGMA main.schema_version").fetchone()[0]

    def pristine(self) -> bool:
        """This thread is in its write transaction and has written nothing in it yet (no row, no table): the
        last commit, which a reader process sees, is what the transaction sees (the write lock it holds
        keeps every other writer from committing)."""
        if self.owner != threading.get_ident() or self.depth != 1 or self.begun is None:
            return False
        with self.sql("reading the database") as c:
            return (self.sqlite.total_changes, self._schema_version(c)) == self.begun

    def rows(
        self, sql: str, params: list, limit: int | None, batch_rows: int, doing: str, pristine: bool = False
    ) -> Iterator[pa.Table]:
        """Raw result batches: from a reader process (Arrow, no Python objects) when one is ready, else
        through the sqlite3 module. ADBC guesses a column's type from its first rows: if a later value
        contradicts the guess, the rest is read with sqlite3 from where the reader stopped. Inside this
        thread's write transaction through the sqlite3 module only, unless `pristine` says the caller has
        checked that it wrote nothing yet (`pristine()`)."""
        done = 0
        batches = None
        if self.readers is not None and (self.owner != threading.get_ident() or pristine):
            limited = (f"{sql} LIMIT ?", [*params, limit]) if limit is not None else (sql, params)
            batches = self.readers.read(self.path, *limited, min(batch_rows, 1 << 16))
        if batches is not None:
            try:
                for table in _rebatched(batches, batch_rows):
                    done += table.num_rows
                    yield table
                return
            except ReadError as e:
                if "type mismatch" not in str(e).lower():
                    raise StorageError(f"{doing} in {self.url}: {e}") from e
        # A page at a time, each statement run to its end under the lock: the shared connection
        # is free between pages for other threads, and for the caller's own writes.
        while limit is None or done < limit:
            n = batch_rows if limit is None else min(batch_rows, limit - done)
            with self.sql(doing) as c:
                cur = c.execute(f"{sql} LIMIT ? OFFSET ?", [*params, n, done])
                rows, names = cur.fetchall(), [d[0] for d in cur.description]
            if rows:
                yield pa.table([list(col) for col in zip(*rows)], names=names)
            done += len(rows)
            if len(rows) < n:
                return

    def close(self) -> None:
        if self.own:  # a borrowed connection stays open: it is the user's
            with self.lock:
                self.sqlite.close()


def _rebatched(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of `rows` rows (the last one shorter) from record batches of any size."""
    pending: list[pa.RecordBatch] = []
    have = 0
    for batch in batches:
        pending.append(batch)
        have += batch.num_rows
        while have >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, have = rest.to_batches(), rest.num_rows
    if have:
        yield pa.Table.from_batches(pending)


def main_file(database_list: list) -> str:
    """The file of SQLite's main database ('' in memory), from the rows of PRAGMA database_list."""
    return next((file for _, name, file in database_list if name == "main"), "") or ""


@contextmanager
def plain(c: sqlite3.Connection, borrowed: bool = True):
    """A borrowed connection with sqlite3's own row and text factories for a block (the user's may set others)."""
    if not borrowed:
        yield
        return
    saved = c.row_factory, c.text_factory
    c.row_factory, c.text_factory = None, str
    try:
        yield
    finally:
        c.row_factory, c.text_factory = saved
