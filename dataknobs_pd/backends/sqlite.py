"""sqlite:/// — the embedded default, on the standard library's sqlite3.

Values are stored in SQLite's own classes (INTEGER, REAL, TEXT, BLOB): timestamps and
durations as integers in their unit, dates as ISO text, decimals as exact text, nested
values as JSON. The dk schema in `_dk_schema` turns them back into their Arrow types.
Writes are executemany() into the table, or into a temporary stage first when keys
must be matched (conflicts, upserts, updates), then one INSERT/UPDATE ... SELECT.

Sharing: the store's one sqlite3 connection is used under `lock` only, and no statement is left
open on it between calls (SQLite will not drop the stage while one is). A write call holds the
lock and SQLite's write lock (BEGIN IMMEDIATE) from its start to its end, so whether its table
exists is decided and acted on with no other writer in between: thread, store or process.
Reads go through ADBC connections of their own (WAL: they see the last commit and never wait
for a writer), or the shared connection a page at a time.
Names: statements name user tables `main."t"` and the stage `temp."_dk_stage"`, so nothing
shadows anything; a table is found by its exact name, and a new name SQLite would fold into
an existing one (it folds ASCII case) is refused rather than let one table stand in for another.
"""

from __future__ import annotations

import json
import os
import sqlite3
import string
import threading
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import (
    ConcurrentWriteError,
    DataKnobsError,
    InvalidArgumentError,
    RowFailure,
    StorageError,
    WriteError,
)
from ..schema import Column, TableSchema
from .base import Backend, Failures, absent_message, conflict_message, missing_message, without_rows
from .sql import META, ROW, STAGE, key_match, q, where_sql

INT64_MAX = 2**63 - 1
ROWIDS = ("rowid", "_rowid_", "oid")  # SQLite's names for a row's id, unless a column takes them
SEQ = "_dk_seq"  # the row id of a keyless table whose columns take all of ROWIDS
META_T = f"main.{q(META)}"
STAGE_T = f"temp.{q(STAGE)}"
# Errors a row can cause (the engine halves the chunk to find it); any other is the store's.
_ROW_CODES = ("SQLITE_CONSTRAINT", "SQLITE_TOOBIG", "SQLITE_MISMATCH", "SQLITE_ERROR", "SQLITE_RANGE")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

_ERRORS = {  # SQLite extended result name -> row error class
    "SQLITE_CONSTRAINT_PRIMARYKEY": "KeyConflict",
    "SQLITE_CONSTRAINT_UNIQUE": "Constraint",
    "SQLITE_CONSTRAINT_NOTNULL": "NotNull",
    "SQLITE_CONSTRAINT_CHECK": "CheckConstraint",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "ForeignKey",
    "SQLITE_TOOBIG": "OutOfRange",
    "SQLITE_MISMATCH": "TypeConversion",
}


def _storage(t: pa.DataType) -> tuple[str, pa.DataType | None]:
    """(declared SQL type, Arrow type of the stored values); None means JSON text."""
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_timestamp(t) or pa.types.is_duration(t):
        return "INTEGER", pa.int64()
    if pa.types.is_floating(t):
        return "REAL", pa.float64()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BLOB", pa.binary()
    if pa.types.is_nested(t):
        return "TEXT", None
    return "TEXT", pa.string()


def encode(arr: pa.Array | pa.ChunkedArray, t: pa.DataType) -> list:
    """Logical Arrow values -> Python values SQLite stores."""
    _, st = _storage(t)
    if st is None:
        return [None if v is None else json.dumps(v, default=str) for v in arr.to_pylist()]
    stored = arr.cast(st) if arr.type != st else arr
    if pa.types.is_floating(st) or (pa.types.is_integer(st) and stored.null_count == 0):
        return stored.to_numpy(zero_copy_only=False).tolist()  # NaN stands for NULL in REAL
    return stored.to_pylist()


def decode(values, t: pa.DataType) -> pa.Array:
    """Values read from SQLite (a Python list, or an Arrow array from ADBC) -> the logical type."""
    _, st = _storage(t)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if values.null_count == len(values):  # ADBC types an all-NULL column as int64
            return pa.nulls(len(values), t)
        values = values if st is not None else values.to_pylist()
    if st is None:
        return pa.array([None if v is None else json.loads(v) for v in values], type=t)
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type=st)
    return arr.cast(t)


def _fold(name: str) -> str:
    """A name as SQLite compares identifiers: ASCII letters without case, anything else exact."""
    return name.translate(_ASCII_LOWER)


def _main(table: str) -> str:
    return f"main.{q(table)}"


class SQLiteBackend(Backend):
    """One connection per store (SQLite serializes writers anyway), guarded by a lock."""

    def __init__(self, url: str, timeout: float = 30.0, **options):
        super().__init__(url, **options)
        path = url.split("://", 1)[1]
        path = path.removeprefix("/")  # sqlite:///rel.db, sqlite:////abs.db
        self.path = path or ":memory:"
        self.timeout = timeout
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise StorageError(f"cannot open {url}: folder {parent!r} does not exist")
        self.lock = threading.RLock()
        self._depth = 0
        try:
            self.conn = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as e:
            raise self._storage_error(e, "cannot open the database") from e
        try:
            with self._sql("cannot open the database") as c:
                if self.path != ":memory:":
                    c.execute("PRAGMA journal_mode=WAL").fetchall()
                c.execute("PRAGMA synchronous=NORMAL")
                c.execute("PRAGMA temp_store=MEMORY")
                c.execute("PRAGMA foreign_keys=ON")
                c.execute(f"CREATE TABLE IF NOT EXISTS {META_T} (name TEXT PRIMARY KEY, schema TEXT NOT NULL)")
        except StorageError:
            self.conn.close()
            raise
        # Reads: a pool of ADBC connections, one per read under way (none for an in-memory database).
        self._adbc, self._adbc_errors, self._adbc_idle, self._adbc_lock = None, (), [], threading.Lock()
        self._closed = False
        if self.path != ":memory:":
            try:
                import adbc_driver_sqlite.dbapi as adbc
            except ImportError:  # reads go through sqlite3, slower
                return
            self._adbc, self._adbc_errors = adbc, (adbc.Error, OSError)  # the Arrow stream raises OSError
            self._adbc_idle.append(self._adbc_connect())

    # -- connections -----------------------------------------------------------------------
    @contextmanager
    def _sql(self, doing: str):
        """The shared connection, under the lock; what sqlite3 raises becomes a StorageError saying what failed."""
        with self.lock:
            try:
                yield self.conn
            except sqlite3.Error as e:
                raise self._storage_error(e, doing) from e

    def _storage_error(self, e: sqlite3.Error, doing: str) -> StorageError:
        name = getattr(e, "sqlite_errorname", None) or type(e).__name__
        if name == "SQLITE_FULL":
            why = "the disk is full"
        elif name.startswith("SQLITE_BUSY"):
            why = (f"the database is locked by another writer, still after waiting {self.timeout:g}s "
                   f"(connect with timeout= to wait longer)")
        else:
            why = str(e)
        return StorageError(f"{doing} in {self.url}: {why} ({name})")

    def _write_error(self, e: sqlite3.Error, table: str) -> DataKnobsError:
        """A row's fault (WriteError, for the engine to narrow down), or the store's (StorageError)."""
        name = getattr(e, "sqlite_errorname", None) or ""
        if name.startswith(_ROW_CODES) and not self._lost():
            return WriteError(str(e), _ERRORS.get(name, "WriteError"), name)
        return StorageError(f"{self._storage_error(e, f'writing to {table!r}')}; nothing of this call was written")

    def _lost(self) -> bool:
        """Inside our transaction, and SQLite has rolled it back (a full disk, an I/O error, ON CONFLICT ROLLBACK)."""
        return self._depth > 0 and not self.conn.in_transaction

    def _adbc_connect(self):
        try:
            return self._adbc.connect(os.path.abspath(self.path), autocommit=True)
        except self._adbc_errors as e:
            raise StorageError(f"cannot open {self.url} for reading: {e}") from e

    @contextmanager
    def _reader(self):
        """An ADBC connection for one read: an idle one, else a new one; returned when the read ends."""
        with self._adbc_lock:
            conn = self._adbc_idle.pop() if self._adbc_idle else None
        conn = conn or self._adbc_connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        with self._adbc_lock:
            if not self._closed:
                self._adbc_idle.append(conn)
                return
        conn.close()

    # -- names -----------------------------------------------------------------------------
    def _check_table(self, table) -> None:
        """Refuse a table name SQLite cannot keep, or keeps for itself, before any statement holds it."""
        if not isinstance(table, str) or not table or "\x00" in table:
            raise InvalidArgumentError(
                f"table name {table!r} cannot be stored in SQLite: use a non-empty string without NUL characters")
        if _fold(table).startswith("sqlite_"):
            raise InvalidArgumentError(
                f"table name {table!r} is reserved: SQLite keeps names starting with 'sqlite_' for its own tables")
        if _fold(table) == META:
            raise InvalidArgumentError(f"table name {table!r} is reserved: it is this store's catalogue")

    @staticmethod
    def _check_columns(table: str, names: list[str]) -> None:
        seen: dict[str, str] = {}
        for name in names:
            if "\x00" in name:
                raise InvalidArgumentError(
                    f"column name {name!r} of table {table!r} contains a NUL character, which SQLite cannot keep")
            other = seen.setdefault(_fold(name), name)
            if other != name:
                raise InvalidArgumentError(
                    f"columns {other!r} and {name!r} of table {table!r} differ only by case, and SQLite takes "
                    f"them for one column; rename one")

    @staticmethod
    def _exists(c: sqlite3.Connection, table: str) -> bool:
        """A table of exactly this name (SQLite itself would also take one differing by ASCII case)."""
        return bool(c.execute("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?",
                              (table,)).fetchall())

    # -- catalogue -------------------------------------------------------------------------
    def tables(self):
        with self._sql("listing the tables") as c:
            rows = c.execute("SELECT name FROM main.sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
        return [n for (n,) in rows if not _fold(n).startswith(("sqlite_", "_dk_"))]

    def schema(self, table):
        self._check_table(table)
        with self._sql(f"reading the schema of {table!r}") as c:
            if not self._exists(c, table):
                return None
            row = c.execute(f"SELECT schema FROM {META_T} WHERE name = ?", (table,)).fetchall()
            if row:
                return TableSchema.from_json(row[0][0], table)
            return self._foreign_schema(c, table)

    def create(self, table, schema):
        self._check_table(table)
        hidden = not schema.key and all(a in {_fold(n) for n in schema.names} for a in ROWIDS)
        self._check_columns(table, schema.names + ([SEQ] if hidden else []))
        defs = [f"{q(c.name)} {_storage(c.arrow)[0]}{'' if c.nullable else ' NOT NULL'}" for c in schema.columns]
        if hidden:  # insertion order needs a row id that no column shadows
            defs.append(f"{q(SEQ)} INTEGER PRIMARY KEY")
        if schema.key:
            defs.append(f"PRIMARY KEY ({', '.join(q(k) for k in schema.key)})")
        with self.transaction(), self._sql(f"creating table {table!r}") as c:
            for kind, other in c.execute(
                "SELECT type, name FROM main.sqlite_master WHERE type IN ('table', 'view', 'index')"
                " AND name = ? COLLATE NOCASE", (table,)
            ).fetchall():
                if kind == "table" and other == table:
                    raise ConcurrentWriteError(
                        f"table {table!r} in {self.url} was created by another writer meanwhile; "
                        f"nothing of this call was written")
                raise InvalidArgumentError(
                    f"table {table!r} cannot be created in {self.url}: SQLite takes it for the {kind} {other!r} "
                    f"already there (it does not tell names apart by case); use {other!r} or another name")
            c.execute(f"CREATE TABLE {_main(table)} ({', '.join(defs)})")
            self.set_schema(table, schema)

    def set_schema(self, table, schema):
        with self._sql(f"storing the schema of {table!r}") as c:
            c.execute(f"INSERT OR REPLACE INTO {META_T} (name, schema) VALUES (?, ?)", (table, schema.to_json()))

    def drop(self, table):
        self._check_table(table)
        with self.transaction(), self._sql(f"dropping table {table!r}") as c:
            if self._exists(c, table):  # DROP TABLE alone would drop a table named so but for case
                c.execute(f"DROP TABLE {_main(table)}")
            c.execute(f"DELETE FROM {META_T} WHERE name = ?", (table,))

    # -- data ------------------------------------------------------------------------------
    def prepare(self, data, schema):
        failures: Failures = {}
        for name in data.column_names:
            col, arr = schema.column(name), data.column(name)
            if pa.types.is_uint64(arr.type):
                bad = pc.fill_null(pc.greater(arr, pa.scalar(INT64_MAX, pa.uint64())), False)
                for i in np.flatnonzero(bad.to_numpy(zero_copy_only=False)):
                    failures.setdefault(int(i), RowFailure(
                        "convert", "OutOfRange",
                        f"column {col.name!r}: {arr[int(i)].as_py()} is beyond SQLite's 64-bit signed integers"))
            if pa.types.is_floating(arr.type) and col.dtype.get("arrow"):
                nan = pc.fill_null(pc.is_nan(arr), False)
                for i in np.flatnonzero(nan.to_numpy(zero_copy_only=False)):
                    failures.setdefault(int(i), RowFailure(
                        "convert", "OutOfRange",
                        f"column {col.name!r}: SQLite keeps no NaN apart from NULL in a {col.dtype['name']} column"))
            if pa.types.is_floating(arr.type):  # SQLite writes whole REAL values as integers: -0.0 comes back 0.0
                v = arr.to_numpy(zero_copy_only=False)
                for i in np.flatnonzero((v == 0) & np.signbit(v)):
                    failures.setdefault(int(i), RowFailure(
                        "convert", "OutOfRange",
                        f"column {col.name!r}: SQLite keeps -0.0 as 0.0 (it stores whole REAL values as integers); "
                        f"write 0.0 if the sign does not matter"))
        return without_rows(data, failures), failures

    def write(self, table, data, schema, mode):
        with self.lock:
            try:
                return self._write(table, data, schema, mode)
            except sqlite3.Error as e:
                raise self._write_error(e, table) from e

    def _write(self, table, data, schema, mode) -> Failures:
        names = data.column_names
        absent = [c.name for c in schema.columns if c.name not in names and not c.nullable]
        if mode != "insert" or absent:
            return self._write_staged(table, data, schema, mode, absent)
        try:  # the clean case: one executemany, nothing else
            with self.savepoint():
                self._insert_rows(table, data, schema)
            return {}
        except sqlite3.IntegrityError as e:
            if not (schema.key and e.sqlite_errorname == "SQLITE_CONSTRAINT_PRIMARYKEY"):
                raise
        # Some keys exist: find them all in one join against the staged keys, insert the rest.
        found = self._found(table, data.select(schema.key), schema)
        self._insert_rows(table, without_rows(data, found), schema)
        return {i: RowFailure("write", "KeyConflict", conflict_message(schema.key, data, i)) for i in sorted(found)}

    def _found(self, table, keys: pa.Table, schema) -> set[int]:
        """Positions of the rows of `keys` whose key is in the table (one join on a staged copy)."""
        self._stage(keys, schema)
        return {r[0] for r in self.conn.execute(
            f"SELECT s.{q(ROW)} FROM {STAGE_T} AS s"
            f" WHERE EXISTS (SELECT 1 FROM {_main(table)} AS d WHERE {key_match(schema.key, 'd', 's')})")}

    def _write_staged(self, table, data, schema, mode, absent) -> Failures:
        """Stage the chunk, find existing keys there, then apply it with one UPDATE ... FROM and
        one INSERT ... SELECT. The table is `d` and the stage `s` in every statement."""
        names = data.column_names
        found = self._found(table, data, schema) if schema.key else set()
        failures: Failures = {}
        rows = range(data.num_rows)
        if mode == "insert":
            failures.update({i: RowFailure("write", "KeyConflict", conflict_message(schema.key, data, i))
                             for i in found})
        elif mode == "update":
            failures.update({i: RowFailure("missing", "MissingKey", missing_message(schema.key, data, i))
                             for i in rows if i not in found})
        if mode in ("insert", "upsert") and absent:
            message = absent_message(absent)
            failures.update({i: RowFailure("write", "NotNull", message) for i in rows if i not in found})
        t = _main(table)
        match = key_match(schema.key, "d", "s") if schema.key else ""
        values = [n for n in names if n not in (schema.key or [])]
        if mode in ("upsert", "update") and found and values:
            sets = ", ".join(f"{q(n)} = s.{q(n)}" for n in values)
            self.conn.execute(f"UPDATE {t} AS d SET {sets} FROM {STAGE_T} AS s WHERE {match}")
        if mode in ("insert", "upsert") and not absent and len(found) < data.num_rows:
            cols = ", ".join(q(n) for n in names)
            new = f"NOT EXISTS (SELECT 1 FROM {t} AS d WHERE {match})" if schema.key else "1"
            self.conn.execute(
                f"INSERT INTO {t} ({cols}) SELECT {cols} FROM {STAGE_T} AS s WHERE {new} ORDER BY s.{q(ROW)}")
        return failures

    def _stage(self, data: pa.Table, schema: TableSchema) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {STAGE_T}")
        cols = ", ".join(q(n) for n in data.column_names)
        self.conn.execute(f"CREATE TABLE {STAGE_T} ({q(ROW)} INTEGER PRIMARY KEY, {cols})")
        columns = [range(data.num_rows)] + [encode(data.column(n), schema.column(n).arrow) for n in data.column_names]
        marks = ", ".join("?" * (data.num_columns + 1))
        self.conn.executemany(f"INSERT INTO {STAGE_T} VALUES ({marks})", zip(*columns))

    def _insert_rows(self, table, data, schema) -> None:
        names = data.column_names
        columns = [encode(data.column(n), schema.column(n).arrow) for n in names]
        marks = ", ".join("?" * len(names))
        self.conn.executemany(
            f"INSERT INTO {_main(table)} ({', '.join(q(n) for n in names)}) VALUES ({marks})", zip(*columns))

    def delete(self, table, keys, schema):
        with self.lock:
            try:
                found = self._found(table, keys, schema)
                self.conn.execute(f"DELETE FROM {_main(table)} AS d WHERE EXISTS"
                                  f" (SELECT 1 FROM {STAGE_T} AS s WHERE {key_match(schema.key, 'd', 's')})")
            except sqlite3.Error as e:
                raise self._write_error(e, table) from e
        return {i: RowFailure("missing", "MissingKey", missing_message(schema.key, keys, i))
                for i in range(keys.num_rows) if i not in found}

    def read(self, table, schema, columns, where, order, limit, batch_rows):
        types = {c.name: c.arrow for c in schema.columns}

        def enc(col, values):
            return encode(pa.array(values, type=types[col], from_pandas=True), types[col])

        def ref(col, op):  # decimals are exact text: compare their numeric value for < and >
            ranged = op not in ("==", "!=", "in", "not in")
            return f"CAST({q(col)} AS REAL)" if pa.types.is_decimal(types[col]) and ranged else q(col)

        clause, params = where_sql(where, enc, column_sql=ref)
        sql = f"SELECT {', '.join(q(c) for c in columns)} FROM {_main(table)}{clause}"
        sql += self._order_by(table, schema, order)
        out = pa.schema([pa.field(c, types[c]) for c in columns])
        done = 0
        for raw in self._rows(sql, params, limit, batch_rows, f"reading table {table!r}"):
            done += raw.num_rows
            yield pa.table([decode(raw.column(i), f.type) for i, f in enumerate(out)], schema=out)
        if not done:
            yield out.empty_table()

    def _order_by(self, table, schema, order) -> str:
        """The order asked for, then the key, else insertion order: one order for every page and path."""
        terms = [f"{q(c)} {'ASC' if asc else 'DESC'}" for c, asc in order]
        if schema.key:
            asked = {c for c, _ in order}
            terms += [q(k) for k in schema.key if k not in asked]
        elif seq := self._seq(table, schema):
            terms.append(seq)
        return " ORDER BY " + ", ".join(terms) if terms else ""

    def _seq(self, table, schema) -> str | None:
        """A name of the row id (insertion order) that no column shadows, if the table has one."""
        taken = {_fold(n) for n in schema.names}
        free = next((a for a in ROWIDS if a not in taken), None)
        if free:
            return free
        with self._sql(f"reading table {table!r}") as c:
            columns = {r[1] for r in c.execute(f"PRAGMA main.table_info({q(table)})").fetchall()}
        return q(SEQ) if SEQ in columns else None

    def _rows(self, sql, params, limit, batch_rows, doing):
        """Raw result batches: through ADBC (Arrow, no Python objects) when it can read this file,
        else the sqlite3 module; ADBC guesses a column's type from its first rows, and if a later
        value contradicts the guess the rest is read with sqlite3 from where ADBC stopped."""
        done = 0
        if self._adbc is not None:
            try:
                for batch in self._adbc_rows(sql, params, limit, batch_rows):
                    done += batch.num_rows
                    yield batch
                return
            except self._adbc_errors as e:
                if "type mismatch" not in str(e).lower():
                    raise StorageError(f"{doing} in {self.url}: {e}") from e
        # A page at a time, each statement run to its end under the lock: the shared connection
        # is free between pages for other threads, and for the caller's own writes.
        while limit is None or done < limit:
            n = batch_rows if limit is None else min(batch_rows, limit - done)
            with self._sql(doing) as c:
                cur = c.execute(f"{sql} LIMIT ? OFFSET ?", [*params, n, done])
                rows, names = cur.fetchall(), [d[0] for d in cur.description]
            if rows:
                yield pa.table([list(col) for col in zip(*rows)], names=names)
            done += len(rows)
            if len(rows) < n:
                return

    def _adbc_rows(self, sql, params, limit, batch_rows):
        if limit is not None:
            sql, params = f"{sql} LIMIT ?", [*params, limit]
        with self._reader() as conn:
            cur = conn.cursor()
            try:
                cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(min(batch_rows, 1 << 16))})
                cur.execute(sql, params)
                pending, rows = [], 0
                for batch in cur.fetch_record_batch():
                    pending.append(batch)
                    rows += batch.num_rows
                    while rows >= batch_rows:
                        table = pa.Table.from_batches(pending)
                        yield table.slice(0, batch_rows)
                        rest = table.slice(batch_rows)
                        pending, rows = rest.to_batches(), rest.num_rows
                if rows:
                    yield pa.Table.from_batches(pending)
            finally:
                cur.close()

    @staticmethod
    def _foreign_schema(c: sqlite3.Connection, table) -> TableSchema | None:
        """A schema for a table this package did not create, from its declared column types."""
        info = c.execute(f"PRAGMA main.table_info({q(table)})").fetchall()
        if not info:
            return None
        cols, key = [], [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
        for _, name, decl, notnull, _, pk in info:
            d = (decl or "").upper()
            if "INT" in d:
                col = Column(name, "int64", pa.int64(), not (notnull or pk), {"name": "Int64"})
            elif any(x in d for x in ("REAL", "FLOA", "DOUB")):
                col = Column(name, "float64", pa.float64(), True, {"name": "float64"})
            elif "BLOB" in d:
                col = Column(name, "bytes", pa.binary(), True, {"name": "object", "na": "none"})
            else:
                col = Column(name, "string", pa.large_string(), True, {"name": "object", "na": "none"})
            cols.append(col)
        return TableSchema(columns=cols, key=key or None)

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self):
        with self.lock:
            if self._depth:
                with self.savepoint():
                    yield
                return
            with self._sql("starting a write transaction") as c:
                c.execute("BEGIN IMMEDIATE")  # the write lock now: existence is decided under it
            self._depth = 1
            try:
                yield
                with self._sql("committing") as c:
                    c.execute("COMMIT")
            except BaseException as e:
                if self.conn.in_transaction:  # SQLite may have rolled it back already (a full disk)
                    with self._sql("rolling back") as c:
                        c.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise self._storage_error(e, "writing") from e
                raise
            finally:
                self._depth = 0

    @contextmanager
    def savepoint(self):
        with self.lock:
            name = f"dk_{self._depth}"
            with self._sql("opening a savepoint") as c:
                c.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException as e:
                if self.conn.in_transaction:
                    with self._sql("rolling back a savepoint") as c:
                        c.execute(f"ROLLBACK TO {name}")
                        c.execute(f"RELEASE {name}")
                elif not isinstance(e, (StorageError, sqlite3.Error)):  # the caller names a raw error
                    raise StorageError(
                        f"SQLite rolled back the whole transaction in {self.url} ({type(e).__name__}: {e}); "
                        f"nothing of this call was written") from e
                raise
            else:
                with self._sql("releasing a savepoint") as c:
                    c.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1

    def close(self):
        with self.lock:
            self.conn.close()
        with self._adbc_lock:
            self._closed = True
            idle, self._adbc_idle = self._adbc_idle, []
        for conn in idle:
            conn.close()
