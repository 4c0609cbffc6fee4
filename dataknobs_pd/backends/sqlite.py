"""sqlite:/// — the embedded default, on the standard library's sqlite3.

Values are stored in SQLite's own classes (INTEGER, REAL, TEXT, BLOB): timestamps and
durations as integers in their unit, dates as ISO text, decimals as exact text, nested
values as JSON. The dk schema in `_dk_schema` turns them back into their Arrow types.
Writes are executemany() into the table, or into a temporary stage first when keys
must be matched (conflicts, upserts, updates), then one INSERT/UPDATE ... SELECT.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataKnobsError, RowFailure, WriteError
from ..schema import Column, TableSchema
from .base import Backend, Failures, absent_message, conflict_message, missing_message, without_rows
from .sql import META, ROW, STAGE, key_match, order_sql, q, where_sql

INT64_MAX = 2**63 - 1

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
    if pa.types.is_integer(st) or pa.types.is_floating(st):
        if stored.null_count == 0 or pa.types.is_floating(st):
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


class SQLiteBackend(Backend):
    """One connection per store (SQLite serializes writers anyway), guarded by a lock."""

    def __init__(self, url: str, timeout: float = 30.0, **options):
        super().__init__(url, **options)
        path = url.split("://", 1)[1]
        path = path[1:] if path.startswith("/") else path  # sqlite:///rel.db, sqlite:////abs.db
        self.path = path or ":memory:"
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise DataKnobsError(f"cannot open {url}: folder {parent!r} does not exist")
        self.conn = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False, isolation_level=None)
        self.lock = threading.RLock()
        self._depth = 0
        with self.lock:
            if self.path != ":memory:":
                self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA temp_store=MEMORY")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {q(META)} (name TEXT PRIMARY KEY, schema TEXT NOT NULL)")
        self.max_params = self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._adbc, self._adbc_errors, self._adbc_lock = None, (), threading.Lock()
        if self.path != ":memory:":
            try:
                import adbc_driver_sqlite.dbapi as adbc

                self._adbc = adbc.connect(os.path.abspath(self.path), autocommit=True)
                self._adbc_errors = (adbc.Error, OSError)  # the Arrow stream raises OSError
            except ImportError:  # reads go through sqlite3, slower
                pass

    # -- catalogue -------------------------------------------------------------------------
    def tables(self):
        rows = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name <> ?"
            " ORDER BY name", (META,)
        ).fetchall()
        return [r[0] for r in rows]

    def schema(self, table):
        row = self.conn.execute(f"SELECT schema FROM {q(META)} WHERE name = ?", (table,)).fetchone()
        if row:
            return TableSchema.from_json(row[0], table)
        return self._foreign_schema(table)

    def create(self, table, schema):
        defs = [f"{q(c.name)} {_storage(c.arrow)[0]}{'' if c.nullable else ' NOT NULL'}" for c in schema.columns]
        if schema.key:
            defs.append(f"PRIMARY KEY ({', '.join(q(k) for k in schema.key)})")
        with self.transaction():
            self.conn.execute(f"CREATE TABLE {q(table)} ({', '.join(defs)})")
            self.set_schema(table, schema)

    def set_schema(self, table, schema):
        self.conn.execute(f"INSERT OR REPLACE INTO {q(META)} (name, schema) VALUES (?, ?)", (table, schema.to_json()))

    def drop(self, table):
        with self.transaction():
            self.conn.execute(f"DROP TABLE IF EXISTS {q(table)}")
            self.conn.execute(f"DELETE FROM {q(META)} WHERE name = ?", (table,))

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
        return without_rows(data, failures), failures

    def write(self, table, data, schema, mode):
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
                raise _write_error(e) from e
        # Some keys exist: find them all in one join against the staged keys, insert the rest.
        found = self._found(table, data.select(schema.key), schema)
        try:
            self._insert_rows(table, without_rows(data, found), schema)
        except sqlite3.DatabaseError as e:
            raise _write_error(e) from e
        return {i: RowFailure("write", "KeyConflict", conflict_message(schema.key, data, i)) for i in sorted(found)}

    def _found(self, table, keys: pa.Table, schema) -> set[int]:
        """Positions of the rows of `keys` whose key is in the table (one join on a staged copy)."""
        self._stage(keys, schema)
        t = q(table)
        match = key_match(schema.key, t, "s")
        return {r[0] for r in self.conn.execute(
            f"SELECT {q(ROW)} FROM {q(STAGE)} s WHERE EXISTS (SELECT 1 FROM {t} WHERE {match})")}

    def _write_staged(self, table, data, schema, mode, absent) -> Failures:
        """Stage the chunk, find existing keys there, then apply it with one UPDATE ... FROM and
        one INSERT ... SELECT."""
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
        t, s = q(table), q(STAGE)
        try:
            values = [n for n in names if n not in (schema.key or [])]
            if mode in ("upsert", "update") and found and values:
                sets = ", ".join(f"{q(n)} = s.{q(n)}" for n in values)
                self.conn.execute(f"UPDATE {t} SET {sets} FROM {s} s WHERE {key_match(schema.key, t, 's')}")
            if mode in ("insert", "upsert") and not absent and len(found) < data.num_rows:
                cols = ", ".join(q(n) for n in names)
                exists = f"EXISTS (SELECT 1 FROM {t} WHERE {key_match(schema.key, t, 's')})" if schema.key else "0"
                self.conn.execute(
                    f"INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} s WHERE NOT {exists} ORDER BY {q(ROW)}")
        except sqlite3.DatabaseError as e:
            raise _write_error(e) from e
        return failures

    def _stage(self, data: pa.Table, schema: TableSchema) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS temp.{q(STAGE)}")
        cols = ", ".join(q(n) for n in data.column_names)
        self.conn.execute(f"CREATE TEMP TABLE {q(STAGE)} ({q(ROW)} INTEGER PRIMARY KEY, {cols})")
        columns = [range(data.num_rows)] + [encode(data.column(n), schema.column(n).arrow) for n in data.column_names]
        marks = ", ".join("?" * (data.num_columns + 1))
        self.conn.executemany(f"INSERT INTO temp.{q(STAGE)} VALUES ({marks})", zip(*columns))

    def _insert_rows(self, table, data, schema) -> None:
        names = data.column_names
        columns = [encode(data.column(n), schema.column(n).arrow) for n in names]
        marks = ", ".join("?" * len(names))
        self.conn.executemany(
            f"INSERT INTO {q(table)} ({', '.join(q(n) for n in names)}) VALUES ({marks})", zip(*columns))

    def delete(self, table, keys, schema):
        found = self._found(table, keys, schema)
        t = q(table)
        self.conn.execute(
            f"DELETE FROM {t} WHERE EXISTS (SELECT 1 FROM {q(STAGE)} s WHERE {key_match(schema.key, t, 's')})")
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
        sql = f"SELECT {', '.join(q(c) for c in columns)} FROM {q(table)}{clause}"
        sql += order_sql(order, schema.key, "rowid")
        out = pa.schema([pa.field(c, types[c]) for c in columns])
        done = 0
        for raw in self._rows(sql, params, limit, batch_rows):
            done += raw.num_rows
            yield pa.table([decode(raw.column(i), f.type) for i, f in enumerate(out)], schema=out)
        if not done:
            yield out.empty_table()

    def _rows(self, sql, params, limit, batch_rows):
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
                    raise DataKnobsError(f"reading {self.url}: {e}") from e
        page = f"{sql} LIMIT ? OFFSET ?"
        rest = -1 if limit is None else limit - done
        with self.lock:
            cur = self.conn.execute(page, [*params, rest, done])
            while rows := cur.fetchmany(batch_rows):
                yield pa.table([list(c) for c in zip(*rows)], names=[d[0] for d in cur.description])

    def _adbc_rows(self, sql, params, limit, batch_rows):
        if limit is not None:
            sql, params = f"{sql} LIMIT ?", [*params, limit]
        with self._adbc_lock:
            cur = self._adbc.cursor()
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

    def _foreign_schema(self, table) -> TableSchema | None:
        """A schema for a table this package did not create, from its declared column types."""
        info = self.conn.execute(f"PRAGMA table_info({q(table)})").fetchall()
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
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                self._depth = 0

    @contextmanager
    def savepoint(self):
        with self.lock:
            name = f"dk_{self._depth}"
            self._depth += 1
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                raise
            else:
                self.conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1

    def close(self):
        with self.lock:
            self.conn.close()
        if self._adbc is not None:
            with self._adbc_lock:
                self._adbc.close()


def _write_error(e: sqlite3.DatabaseError) -> WriteError:
    name = getattr(e, "sqlite_errorname", None)
    return WriteError(str(e), _ERRORS.get(name, "WriteError"), name)
