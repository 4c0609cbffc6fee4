"""postgresql:// (also postgres://) — a PostgreSQL server through ADBC's driver (libpq, binary COPY).

Writes: each chunk goes in as Arrow through binary COPY, straight into the table when nothing
can clash (a table created by this call gets its primary key after the load: one index build
is faster than a million insertions), else into a temporary stage from which one statement
inserts (ON CONFLICT DO NOTHING, returning the rows that clashed), upserts (ON CONFLICT DO
UPDATE), updates (UPDATE ... FROM, returning the rows it found) or deletes. A call writing to
a keyed table locks it against other writers (not readers): two calls locking rows in
opposite orders would otherwise deadlock. Reads: Arrow record batches (COPY ... TO STDOUT, or
the binary extended protocol when filter values are bound), with columns, filters, order and
limit in the SQL.
Columns get native types (postgres_types); the dk schema sits in `_dk_schema` of the
connection's schema (the first of its search_path, found at connect). Every statement names
tables through that schema and the stage through pg_temp, so that no temporary or catalogue
table (pg_temp, pg_catalog come first in name lookup) stands in for a user's table.
Connections (postgres_conn) are pooled per backend, that is per URL; a transaction pins one to
the calling thread. Writers of one table take turns: claim() holds an advisory lock on its
name until the transaction ends, so that deciding "create or write into" cannot interleave.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from contextlib import contextmanager

import adbc_driver_manager
import numpy as np
import pyarrow as pa

from ..errors import (
    ConcurrentWriteError,
    ConnectionLostError,
    DataKnobsError,
    InvalidArgumentError,
    RowFailure,
    StorageError,
    TableExistsError,
    WriteError,
)
from ..schema import TableSchema
from ..urls import mask
from . import postgres_types as pgt
from .base import Backend, Failures, absent_message, conflict_message, missing_message, without_rows
from .postgres_conn import TRANSIENT, Conn, Pool
from .postgres_foreign import foreign_schema
from .sql import META, ROW, STAGE, key_match, q, where_sql

_RETRIES = 6
_STAGE = f"pg_temp.{q(STAGE)}"  # qualified: a user table of that name is never taken for it


class PostgresBackend(Backend):
    """PostgreSQL store.

    Options: pool_size (idle connections kept, default 4); fillfactor of keyed tables (default 90:
    the room left in each page lets update_batch rewrite rows in place, HOT, without touching the index).
    """

    chunk_cells = 2_000_000

    def __init__(self, url: str, pool_size: int = 4, fillfactor: int = 90, **options):
        super().__init__(url, **options)
        if not (isinstance(fillfactor, int) and 10 <= fillfactor <= 100):
            raise InvalidArgumentError(f"fillfactor={fillfactor!r} is not valid; use an int from 10 to 100")
        self.fillfactor = fillfactor
        self.uri = "postgresql://" + url.split("://", 1)[1]  # libpq takes both schemes; ADBC wants this one
        self._pool = Pool(self.uri, pool_size, mask(url))
        self._local = threading.local()
        with self._borrow() as c:
            self.nsp = c.query("SELECT current_schema()")[0][0]
            if self.nsp is None:
                path = c.query("SELECT current_setting('search_path')")[0][0]
                raise StorageError(
                    f"{mask(url)}: no schema of the search_path ({path}) exists to hold tables, or this user may "
                    f"not use it; create it or grant USAGE on it first")
            self._meta = self._t(META)
            if c.query("SELECT to_regclass($1) IS NULL", (self._meta,))[0][0]:  # a reader may not create it
                try:
                    c.run(f"CREATE TABLE IF NOT EXISTS {self._meta} (name text PRIMARY KEY, schema text NOT NULL)",
                          doing="creating the table of dk schemas")
                except DataKnobsError:  # another process created it at the same moment
                    if c.query("SELECT to_regclass($1) IS NULL", (self._meta,))[0][0]:
                        raise

    def _t(self, table: str) -> str:
        """The table's name in SQL: quoted, through the store's schema."""
        return f"{q(self.nsp)}.{q(table)}"

    # -- connections -------------------------------------------------------------------------
    @contextmanager
    def _borrow(self):
        """The thread's pinned connection, else one from the pool (autocommit) for this block."""
        c = getattr(self._local, "conn", None)
        if c is not None:
            yield c
            return
        c = self._pool.get()
        try:
            yield c
        finally:
            self._pool.put(c)

    @contextmanager
    def _use(self):
        """A connection inside a transaction (the pinned one, or a transaction for this block)."""
        c = getattr(self._local, "conn", None)
        if c is not None:
            yield c
            return
        with self.transaction():
            yield self._local.conn

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def transaction(self):
        if getattr(self._local, "conn", None) is not None:
            with self.savepoint():
                yield
            return
        c = self._pool.get()
        self._local.conn = c
        try:
            c.run("BEGIN", doing="starting a transaction")
            try:
                yield
                for table in list(c.pending):
                    self._add_key(c, table)
            except BaseException:
                if not c.broken:
                    try:
                        c.run("ROLLBACK", doing="rolling back")
                    except DataKnobsError:
                        c.broken = True
                raise
            try:
                c.run("COMMIT", doing="committing")
            except ConnectionLostError as e:
                raise ConnectionLostError(
                    f"lost the connection to {c.where} while committing: this call may or may not have been "
                    f"written; check the table before running it again ({e.__cause__})") from e
        finally:
            self._local.conn = None
            self._pool.put(c)

    @contextmanager
    def savepoint(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            with self.transaction():
                yield
            return
        name = f"dk_{c.depth}"
        c.run(f"SAVEPOINT {name}", doing="opening a savepoint")
        c.depth += 1
        try:
            yield
        except BaseException:
            c.depth -= 1
            c.forget_above(c.depth)
            if not c.broken:
                c.run(f"ROLLBACK TO SAVEPOINT {name}", doing="rolling back a savepoint")
                c.run(f"RELEASE SAVEPOINT {name}", doing="releasing a savepoint")
            raise
        c.depth -= 1
        c.run(f"RELEASE SAVEPOINT {name}", doing="releasing a savepoint")

    def _add_key(self, c: Conn, table: str) -> None:
        """Add a primary key deferred by create(): one index build after the bulk load is faster."""
        entry = c.pending.pop(table, None)
        if entry:
            try:
                c.run(f"ALTER TABLE {self._t(table)} ADD PRIMARY KEY ({', '.join(q(k) for k in entry[0])})",
                      doing=f"adding the primary key of {table!r}")
            except WriteError as e:  # keys that pandas holds apart and PostgreSQL does not (never seen)
                raise StorageError(f"cannot add the primary key of {table!r}: {e}; nothing was written") from e

    def close(self):
        self._pool.close()

    # -- catalogue ---------------------------------------------------------------------------
    def claim(self, table):
        """Other writers of `table` wait here until this transaction ends (an advisory lock on its name)."""
        pgt.check_name(table, table)
        c = getattr(self._local, "conn", None)
        if c is None:  # outside a transaction the lock would end with the statement
            return
        try:
            c.run("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", (self._t(table),),
                  doing=f"waiting for the other writers of {table!r}")
        except WriteError as e:  # a deadlock found while waiting: the whole call may run again
            if e.code not in TRANSIENT:
                raise
            raise ConcurrentWriteError(
                f"waiting for the other writers of {table!r} ended in a deadlock ({e}); this call was rolled back, "
                f"nothing of it was written: run it again") from e

    def tables(self):
        with self._borrow() as c:
            rows = c.query("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                           " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')", (self.nsp,))
        return sorted(r[0] for r in rows if not r[0].startswith("_dk_"))

    def schema(self, table):
        pgt.check_name(table, table)
        with self._borrow() as c:
            rows = c.query(f"SELECT schema FROM {self._meta} WHERE name = $1", (table,))
            if rows:
                return TableSchema.from_json(rows[0][0], table)
            return foreign_schema(lambda sql, params: c.query(sql, params), self._t(table))

    def create(self, table, schema):
        pgt.check_names(table, schema)
        defs = [d for col in schema.columns for d in pgt.plan(col).ddl(col.nullable)]
        if not schema.key:
            defs.append(f"{q(pgt.SEQ)} bigint GENERATED ALWAYS AS IDENTITY")
        room = f" WITH (fillfactor = {self.fillfactor})" if schema.key and self.fillfactor < 100 else ""
        with self._use() as c:
            try:
                c.run(f"CREATE TABLE {self._t(table)} ({', '.join(defs)}){room}", doing=f"creating table {table!r}")
            except TableExistsError as e:
                raise TableExistsError(
                    f"cannot create table {table!r}: schema {self.nsp!r} already holds a relation of that name (an "
                    f"index, a sequence, or a table another program created meanwhile) ({e})") from e
            self.set_schema(table, schema)
            if schema.key:
                c.pending[table] = (pgt.physical_key(schema), c.depth)

    def set_schema(self, table, schema):
        with self._use() as c:
            c.run(f"INSERT INTO {self._meta} (name, schema) VALUES ($1, $2)"
                  f" ON CONFLICT (name) DO UPDATE SET schema = EXCLUDED.schema", (table, schema.to_json()),
                  doing=f"storing the schema of {table!r}")

    def drop(self, table):
        pgt.check_name(table, table)
        with self._use() as c:
            self.claim(table)
            c.pending.pop(table, None)
            c.run(f"DROP TABLE IF EXISTS {self._t(table)}", doing=f"dropping {table!r}")
            c.run(f"DELETE FROM {self._meta} WHERE name = $1", (table,), doing=f"dropping {table!r}")

    # -- data --------------------------------------------------------------------------------
    def prepare(self, data, schema):
        failures: Failures = {}
        for name in data.column_names:
            col = schema.column(name)
            arr = data.column(name).combine_chunks()
            for i, f in pgt.unstorable(arr, col, pgt.plan(col)).items():
                failures.setdefault(i, f)
        return without_rows(data, failures), failures

    def _lock(self, c: Conn, table: str) -> None:
        """One writer at a time per keyed table: two calls locking rows in different orders would deadlock.

        SHARE ROW EXCLUSIVE conflicts with itself, not with readers; it is taken before any other
        lock on the table in this transaction, so it never needs an upgrade.
        """
        if table not in c.locked and table not in c.pending:
            c.run(f"LOCK TABLE {self._t(table)} IN SHARE ROW EXCLUSIVE MODE", doing=f"locking {table!r} for writing")
            c.locked[table] = c.depth

    def write(self, table, data, schema, mode):
        pgt.check_name(table, table)
        absent = [c.name for c in schema.columns if c.name not in data.column_names and not c.nullable]
        with self._use() as c:
            if schema.key:
                self._lock(c, table)
            if mode == "insert" and not absent:
                wire = pgt.wire_table(data, schema)
                if not schema.key or table in c.pending:  # nothing in the table can clash
                    c.copy(table, wire, schema=self.nsp)
                    return {}
                try:
                    with self.savepoint():
                        c.copy(table, wire, schema=self.nsp)
                    return {}
                except WriteError as e:
                    if e.code != "23505":
                        raise
                return self._retrying(lambda: self._insert_around(c, table, data, schema), table)
            self._add_key(c, table)
            return self._retrying(lambda: self._write_staged(c, table, data, schema, mode, absent), table)

    def _retrying(self, attempt, table: str):
        """Run `attempt` in a savepoint, again after a deadlock or serialization failure.

        When they persist the whole call is given up (halving a chunk would not help): the
        other transaction holds rows this one needs until it ends.
        """
        for n in range(_RETRIES):
            try:
                with self.savepoint():
                    return attempt()
            except WriteError as e:
                if e.code not in TRANSIENT:
                    raise
                if n == _RETRIES - 1:
                    raise ConcurrentWriteError(
                        f"writing to {table!r} kept conflicting with another transaction ({e}; SQLSTATE {e.code}); "
                        f"this call was rolled back, nothing of it was written: run it again") from e
                time.sleep(random.uniform(0.01, 0.05 * 2**n))

    def _insert_around(self, c, table, data, schema) -> Failures:
        """Some keys of the chunk exist: stage the keys alone, find those in the table in one
        statement, and copy the other rows straight in (cheaper than staging whole rows)."""
        pk = pgt.physical_key(schema)
        self._stage(c, table, data.select(schema.key), schema)
        found = set(c.column(f"SELECT s.{q(ROW)} FROM {_STAGE} s WHERE EXISTS (SELECT 1 FROM {self._t(table)} d"
                             f" WHERE {key_match(pk, 'd', 's')})", doing=f"writing to {table!r}"))
        if len(found) < data.num_rows:
            c.copy(table, pgt.wire_table(without_rows(data, found), schema), schema=self.nsp)
        return {i: RowFailure("write", "KeyConflict", conflict_message(schema.key, data, i)) for i in sorted(found)}

    def _write_staged(self, c, table, data, schema, mode, absent) -> Failures:
        """Stage the chunk, then apply it with one statement that also names the rows it could not."""
        p = pgt.plans(schema)
        key = schema.key or []
        pk = pgt.physical_key(schema)
        cols = [n for name in data.column_names for n in p[name].stored]
        values = [n for name in data.column_names if name not in key for n in p[name].stored]
        self._stage(c, table, data, schema)
        t, s, row = self._t(table), _STAGE, q(ROW)
        listed = ", ".join(q(n) for n in cols)
        exists = f"SELECT s.{row} FROM {s} s WHERE EXISTS (SELECT 1 FROM {t} d WHERE {key_match(pk, 'd', 's')})"
        sets = ", ".join(f"{q(n)} = s.{q(n)}" for n in values)
        rows = range(data.num_rows)
        failures: Failures = {}
        doing = f"writing to {table!r}"
        if absent and mode in ("insert", "upsert"):
            found = c.column(exists, doing=doing) if key else set()
            if mode == "upsert" and found and values:
                c.run(f"UPDATE {t} d SET {sets} FROM {s} s WHERE {key_match(pk, 'd', 's')}", doing=doing)
            need = absent_message(absent)
            for i in rows:
                if i in found and mode == "insert":
                    failures[i] = RowFailure("write", "KeyConflict", conflict_message(key, data, i))
                elif i not in found:
                    failures[i] = RowFailure("write", "NotNull", need)
        elif mode == "insert":
            inserted = (f"WITH ins AS (INSERT INTO {t} ({listed}) SELECT {listed} FROM {s} s ORDER BY {row}"
                        f" ON CONFLICT ({', '.join(q(k) for k in pk)}) DO NOTHING RETURNING {', '.join(q(k) for k in pk)})"
                        f" SELECT s.{row} FROM {s} s WHERE NOT EXISTS (SELECT 1 FROM ins WHERE {key_match(pk, 'ins', 's')})")
            for i in c.column(inserted, doing=doing):
                failures[i] = RowFailure("write", "KeyConflict", conflict_message(key, data, i))
        elif mode == "upsert":
            action = f"UPDATE SET {', '.join(f'{q(n)} = EXCLUDED.{q(n)}' for n in values)}" if values else "NOTHING"
            c.run(f"INSERT INTO {t} ({listed}) SELECT {listed} FROM {s} s ORDER BY {', '.join(q(k) for k in pk)}"
                  f" ON CONFLICT ({', '.join(q(k) for k in pk)}) DO {action}", doing=doing)
        else:  # update
            if values:
                found = c.column(f"UPDATE {t} d SET {sets} FROM {s} s WHERE {key_match(pk, 'd', 's')}"
                                 f" RETURNING s.{row}", doing=doing)
            else:
                found = c.column(exists, doing=doing)
            for i in rows:
                if i not in found:
                    failures[i] = RowFailure("missing", "MissingKey", missing_message(key, data, i))
        return failures

    def _stage(self, c: Conn, table: str, data: pa.Table, schema: TableSchema) -> None:
        """Load the chunk into the temporary stage, with the table's column types and each row's position."""
        p = pgt.plans(schema)
        stored = [n for name in data.column_names for n in p[name].stored]
        if ROW in stored:  # only a table made elsewhere can have it: the public API refuses the name
            raise InvalidArgumentError(
                f"table {table!r}: column {ROW!r} has the name of dataknobs' own row number; rename it to write by key")
        defs = [d for name in data.column_names for d in p[name].ddl(True)] + [f"{q(ROW)} bigint"]
        c.run(f"DROP TABLE IF EXISTS {_STAGE}", doing="staging")
        c.run(f"CREATE TEMP TABLE {_STAGE} ({', '.join(defs)}) ON COMMIT DROP", doing="staging")
        wire = pgt.wire_table(data, schema, {ROW: pa.array(np.arange(data.num_rows), type=pa.int64())})
        c.copy(STAGE, wire, temporary=True)
        c.run(f"ANALYZE {_STAGE}", doing="staging")  # else the planner may hash the big table

    def delete(self, table, keys, schema):
        pgt.check_name(table, table)
        pk = pgt.physical_key(schema)
        with self._use() as c:
            self._lock(c, table)
            self._add_key(c, table)

            def attempt():
                self._stage(c, table, keys, schema)
                return c.column(f"DELETE FROM {self._t(table)} d USING {_STAGE} s WHERE {key_match(pk, 'd', 's')}"
                                f" RETURNING s.{q(ROW)}", doing=f"deleting from {table!r}")

            found = self._retrying(attempt, table)
        return {i: RowFailure("missing", "MissingKey", missing_message(schema.key, keys, i))
                for i in range(keys.num_rows) if i not in found}

    def read(self, table, schema, columns, where, order, limit, batch_rows):
        pgt.check_name(table, table)
        p = pgt.plans(schema)
        fields = [pa.field(n, schema.column(n).arrow) for n in columns]
        numbers = itertools.count(1)

        def ref(col, op):  # nanosecond columns compare as exact numbers: epoch nanoseconds
            pc_ = p[col]
            if pc_.ns:
                return f"(EXTRACT(EPOCH FROM {q(col)}) * 1000000000 + {q(pc_.companion)})"
            return q(col)

        def enc(col, values):
            return _params(col, values, schema.column(col).arrow, p[col])

        clause, params = where_sql(where, enc, param=lambda: f"${next(numbers)}", column_sql=ref)
        terms = [(n, asc) for c, asc in order for n in p[c].stored]
        if not terms:
            terms = [(k, True) for k in pgt.physical_key(schema)]
        selected = [n for c in columns for n in p[c].stored]
        sql = f"SELECT {', '.join(q(n) for n in selected) or 'NULL'} FROM {self._t(table)}{clause}"
        # a missing value compared with < = ... (NaN, NaT, NA) matches no row, as SQL NULL does
        params = [pa.nulls(1, pa.null()) if v is None else v for v in params]
        bound = pa.record_batch(params, names=[f"p{i}" for i in range(len(params))]) if params else None
        return self._fetch(table, sql, terms, limit, bound, fields, [(schema.column(f.name), p[f.name]) for f in fields],
                           batch_rows)

    def _fetch(self, table, sql, terms, limit, bound, fields, plans, batch_rows):
        out_schema = pa.schema(fields)
        with self._borrow() as c:
            if not terms and c.query("SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2",
                                     (self._t(table), pgt.SEQ)):
                terms = [(pgt.SEQ, True)]  # keyless: insertion order
            if terms:
                sql += " ORDER BY " + ", ".join(f"{q(n)} {'ASC' if asc else 'DESC'}" for n, asc in terms)
            if limit is not None:
                sql += f" LIMIT {int(limit)}"  # an int checked by the caller: COPY cannot take bound values
            cur = c.raw.cursor()
            try:
                try:
                    cur.execute(sql, bound)
                    reader = cur.fetch_record_batch()
                except adbc_driver_manager.Error as e:
                    raise c.error(e, f"reading {table!r}") from e
                held, count, empty = [], 0, True
                for batch in _batches(reader, c, self, table):
                    parts, i = [], 0
                    for col, pc_ in plans:
                        k = len(pc_.stored)
                        parts.append(pgt.from_wire([batch.column(i + j) for j in range(k)], col, pc_))
                        i += k
                    held.append(pa.Table.from_arrays(parts, schema=out_schema))
                    count += batch.num_rows
                    while count >= batch_rows:
                        whole = pa.concat_tables(held)
                        yield whole.slice(0, batch_rows)
                        empty = False
                        rest = whole.slice(batch_rows)
                        held, count = ([rest] if rest.num_rows else []), rest.num_rows
                if count or empty:
                    yield pa.concat_tables(held) if held else out_schema.empty_table()
            finally:
                cur.close()


def _batches(reader, c: Conn, backend: PostgresBackend, table: str):
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (adbc_driver_manager.Error, pa.ArrowException) as e:
            if isinstance(e, adbc_driver_manager.Error):
                raise c.error(e, f"reading {table!r}") from e
            c.broken = True
            raise ConnectionLostError(f"reading {table!r} from {mask(backend.url)} failed: {e}") from e
        yield batch


def _params(col: str, values: list, t: pa.DataType, p: pgt.PgColumn) -> list:
    """Filter values as one-value Arrow arrays of the type compared with (None for a null)."""
    try:
        arr = pa.array(values, type=t, from_pandas=True)
        wire = arr.cast(pa.int64()) if p.ns else pgt.to_wire(arr, p)[0]
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
        raise InvalidArgumentError(f"where= value(s) {values!r} for column {col!r} do not fit its type {t}: {e}") from e
    return [wire.slice(i, 1) if arr[i].is_valid else None for i in range(len(arr))]
