"""The PostgreSQL Backend: wires the session's connections to the catalogue, the writes, the reads and the
tables loaded aside, each in its own module (catalogue.py, staging.py, reading.py, aside.py).

Writes: each chunk goes in as Arrow through binary COPY, straight into the table when nothing
can clash (a table created by this call gets its primary key after the load), else into a
temporary stage from which one statement upserts, updates or deletes (staging.py). An insert into
a keyed table first finds the chunk's keys that are there already when that is cheap (the table
was empty as the call began; for a one-integer key, the table's keys in the chunk's range, read
by the index) and copies the other rows in; else it tries COPY in a savepoint, and only when a
key exists already (23505) are the chunk's keys staged to find which (for the call's later
chunks too), and the other rows copied in. Writers of one table take turns (claim: an advisory
lock on its name until the transaction ends), and a call writing to a keyed table locks it against
other writers, not readers: two calls locking rows in opposite orders would otherwise deadlock.
Every statement names tables through the store's schema (the first of the search_path, found at
connect) and the stage through pg_temp, so that no temporary or catalogue table stands in for a
user's table.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import InvalidArgumentError, WriteError
from ...failures import Unholdable, absent_columns
from ...schema import TableSchema
from ...urls import mask
from ..base import Backend, without_rows
from ..capabilities import IMAGE_COLUMNS
from ..sql import META, q
from . import aside as aside_
from . import catalogue, reading, staging
from .catalogue import relation
from .connection import UNIQUE, Lent, Pool
from .session import Session, Transaction
from .types import check_name, check_names, physical_key, plan, unstorable, wire_table


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
            self.nsp = catalogue.find_schema(c, self.url)
        self._meta = self._t(META)

    def _t(self, table: str) -> str:
        """The table's name in SQL: quoted, through the store's schema."""
        return relation(self.nsp, table)

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

    def releaser(self):
        return self.session.close

    def check_before_writes(self, check) -> None:
        """Run `check()` before each transaction begins; it may refuse by raising (a store beside a connection
        the user holds refuses while that connection is inside a transaction of its own)."""
        self.session.guard = check

    # -- catalogue (catalogue.py) --------------------------------------------------------------
    def tables(self):
        with self.session.borrow() as c:
            return catalogue.tables(c, self.nsp)

    def schema(self, table):
        check_name(table, table)
        with self.session.borrow() as c:
            return catalogue.read_schema(c, self.nsp, table)

    def create(self, table, schema):
        check_names(table, schema)
        sql = catalogue.create_sql(self.nsp, table, schema, self.fillfactor, self.url)
        with self.session.use() as tx:
            catalogue.create(tx.conn, self.nsp, table, sql)
            self.set_schema(table, schema)
            if schema.key:  # one index build after the bulk load is faster than a million insertions
                tx.defer_key(self._t(table), table, physical_key(schema))

    def set_schema(self, table, schema):
        with self.session.use() as tx:
            catalogue.store_schema(tx.conn, self.nsp, table, schema)

    def add_columns(self, table, columns):
        check_names(table, TableSchema(columns=list(columns)))
        with self.session.use() as tx:
            catalogue.add_columns(tx.conn, self.nsp, table, list(columns), self.url)

    def drop(self, table):
        check_name(table, table)
        with self.session.use() as tx:
            self.claim(table)
            tx.forget(table)
            catalogue.drop(tx.conn, self.nsp, table)

    # -- writing (staged statements: staging.py) -----------------------------------------------
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
            return tx.retrying(
                lambda: staging.write_staged(tx.conn, self.nsp, table, data, schema, mode, self.url), table
            )

    def _insert(self, tx: Transaction, table: str, data: pa.Table, schema: TableSchema) -> np.ndarray | None:
        """COPY the chunk straight in, less the rows whose key is known to be there already; when that is
        not known and a key exists (23505), find which by staging the keys, and copy the others."""
        jsonb = staging.jsonb_columns(tx.conn, self.nsp, table, schema)
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

    def _found(self, tx: Transaction, table: str, data: pa.Table, schema: TableSchema) -> np.ndarray | None:
        """Which rows' keys are in the table (a bool per row), when that is cheap to know; else None.

        Known without staging anything: none, when the table was empty as this call began or, for a
        key of one integer column, when the chunk's keys lie outside the range the table held then;
        otherwise the table's keys within the chunk's range are fetched (by the index), unless there
        are many more of them than rows in the chunk. A failed COPY would cost as much as a good one.
        """
        pk = physical_key(schema)
        if table not in tx.bounds:
            tx.bounds[table] = staging.key_bounds(tx.conn, self.nsp, table, pk, schema)
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

    def _insert_around(self, tx: Transaction, table: str, data: pa.Table, schema: TableSchema) -> np.ndarray:
        """Stage the keys alone, find those in the table, and copy the other rows straight in."""
        return staging.insert_around(tx.conn, self.nsp, table, data, schema, self.url)

    def write_imaged(self, table, data, schema, mode, images):
        check_name(table, table)
        with self.session.use() as tx:
            tx.lock(self._t(table), table)
            tx.add_key(table)
            if mode == "delete":
                return tx.retrying(
                    lambda: staging.delete_staged(tx.conn, self.nsp, table, data, schema, self.url, images), table
                )
            return tx.retrying(
                lambda: staging.write_staged(tx.conn, self.nsp, table, data, schema, mode, self.url, images), table
            )

    def delete(self, table, keys, schema):
        check_name(table, table)
        with self.session.use() as tx:
            tx.lock(self._t(table), table)
            tx.add_key(table)
            return tx.retrying(lambda: staging.delete_staged(tx.conn, self.nsp, table, keys, schema, self.url), table)

    # -- a new table loaded by many writers at once (capabilities.ParallelLoad; aside.py) ---------
    def open_aside(self, table, schema):
        check_names(table, schema)
        return aside_.open_aside(self.session, self.nsp, table, schema, self.fillfactor)

    def clear_aside(self, aside, part, schema):
        with self.session.use() as tx:  # a second try of the partition waits for the first's transaction
            aside_.clear_aside(tx.conn, self.nsp, aside, part)

    def write_aside(self, aside, part, data, schema, rows):
        with self.session.use() as tx:
            aside_.write_aside(tx.conn, self.nsp, aside, part, data, schema, rows)

    def take_aside(self, aside, schema, part, rows, keys):
        return aside_.take_aside(self.session, self.nsp, aside, schema, part, rows)

    def swap_in(self, aside, table, schema):
        check_names(table, schema)
        with self.session.use() as tx:
            aside_.rename_aside(tx.conn, self.nsp, aside, table)
            self.set_schema(table, schema)
            tx.defer_key(self._t(table), table, physical_key(schema))

    def drop_aside(self, aside):
        with self.session.borrow() as c:
            aside_.drop_aside(c, self.nsp, aside)

    # -- reading (reading.py) --------------------------------------------------------------------
    def read_keys(self, table, schema, keys, columns):
        check_name(table, table)
        with self.session.use() as tx:
            return reading.read_keys(tx.conn, self.session, self.nsp, table, schema, keys, columns, self.url)

    def written_by(self, undo, batch_id):
        batch, written = q(IMAGE_COLUMNS[0]), q(IMAGE_COLUMNS[2])  # dk_batch_id, dk_columns
        with self.session.use() as tx:
            sql = f"SELECT DISTINCT {written} FROM {relation(self.nsp, undo)} WHERE {batch} = $1"
            return [r[0] for r in tx.conn.query(sql, (batch_id,), doing=f"reading {undo!r}")]

    def read_images(self, table, schema, undo, undo_schema, batch_id, kept, columns):
        check_name(table, table)
        return reading.read_images(self.session, self.nsp, table, schema, undo, undo_schema, batch_id, kept, columns)

    def read(self, table, schema, columns, where, order, limit, batch_rows):
        check_name(table, table)
        return reading.read(self.session, self.nsp, table, schema, columns, where, order, limit, batch_rows)
