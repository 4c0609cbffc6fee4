"""The DuckDB backend: wires the connections (connection.py), the catalogue (catalogue.py) and the reads
(reading.py), and holds the transactions and the writes (see __init__)."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import duckdb
import numpy as np
import pyarrow as pa

from ...errors import InternalError, InvalidArgumentError, StorageError, WriteError
from ...failures import inserted
from ...schema import TableSchema
from ...urls import mask
from ..base import Backend, rebatch, without_rows
from ..sql import META, ROW, STAGE, key_match, q
from . import catalogue, checks, reading
from .columns import staged, unholdable
from .connection import Connections, Tx, open_database
from .connection import staged as registered


class DuckDBBackend(Backend):
    """DuckDB store.

    Options: timeout (seconds to wait for another process that has the file open, default 5);
    read_only (open the file for reading only: several processes may then read it at once);
    primary_key (declare each table's key as its PRIMARY KEY, default False: DuckDB maintains
    the index on every write, which costs more than the write itself, and this package keeps
    keys unique by itself); config (a dict of DuckDB settings, e.g. {"memory_limit": "2GB"}).
    """

    chunk_cells = 8_000_000  # big chunks: DuckDB parallelizes within a statement; per-statement costs are fixed

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        read_only: bool = False,
        primary_key: bool = False,
        config: dict | None = None,
    ):
        super().__init__(url)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
            raise InvalidArgumentError(f"timeout={timeout!r} is not valid; use a number of seconds >= 0")
        if config is not None and not isinstance(config, dict):
            raise InvalidArgumentError(f"config={config!r} is not valid; use a dict of DuckDB settings")
        path = url.split("://", 1)[1].removeprefix("/")  # duckdb:///rel.duckdb, duckdb:////abs.duckdb
        self.path = path or ":memory:"
        self.in_process = self.path == ":memory:"  # a database in this process's memory: no other opens it
        self.read_only, self.primary_key = bool(read_only), bool(primary_key)
        self._start(open_database(self.path, self.read_only, dict(config or {}), float(timeout), self.url))

    @classmethod
    def borrowing(cls, conn: duckdb.DuckDBPyConnection) -> DuckDBBackend:
        """A backend beside a DuckDB connection the user holds: its own connection to the same database
        (conn.cursor(), also in memory), closed at close(); the user's is never closed here."""
        try:
            root = conn.cursor()
            row = root.execute(
                "SELECT path, readonly FROM duckdb_databases() WHERE database_name = current_database()"
            ).fetchone()
            if row is None:
                raise InternalError("the current database is always listed")
            path, read_only = row
        except duckdb.Error as e:
            raise StorageError(f"cannot use the DuckDB connection given as the store: {e}") from e
        backend = cls.__new__(cls)  # an alternative constructor: the database is open already
        backend.path, backend.read_only, backend.primary_key = path or ":memory:", read_only, False
        Backend.__init__(backend, f"duckdb:///{backend.path}")
        backend._start(root)
        return backend

    def _start(self, root: duckdb.DuckDBPyConnection) -> None:
        """Take `root` as the connection the threads' own are made from, and find or make the catalogue."""
        self._db = Connections(root, self.url)
        self._guard = threading.Lock()
        self._claims: dict[str, threading.Lock] = {}
        self._messages: dict[tuple[str, str], str] = {}  # DuckDB's message for each CHECK, probed once
        try:
            cur = self._db.cursor()
            self._where: catalogue.Where = tuple(
                cur.execute("SELECT current_database(), current_schema()").fetchall()[0]
            )
            if not self.read_only:
                catalogue.create_meta(self._db)
        except duckdb.Error as e:
            self.close()  # release the file
            raise StorageError(f"cannot open {mask(self.url)}: {e}") from e
        self._has_meta = bool(catalogue.catalogue_rows(self._db, self._where, META))

    @contextmanager
    def _tx(self):
        """The open transaction, or one for this block."""
        tx = self._db.tx
        if tx is not None:
            yield tx
            return
        with self.transaction():
            yield self._db.tx

    # -- transactions --------------------------------------------------------------------------
    @contextmanager
    def transaction(self):
        if self._db.tx is not None:
            with self.savepoint():
                yield
            return
        tx = Tx(self._db.cursor())
        self._db.tx = tx
        try:
            try:
                yield
                self._flush(tx)
                for table in sorted(tx.keyed):  # one index build after the load is cheaper than per row
                    key = self.schema(table).key
                    self._db.run(
                        tx,
                        f"ALTER TABLE {q(table)} ADD PRIMARY KEY ({', '.join(q(k) for k in key)})",
                        doing=f"adding the primary key of {table!r}",
                    )
            except BaseException:
                if tx.begun:
                    try:
                        tx.cur.execute("ROLLBACK")
                    except duckdb.Error:
                        pass
                raise
            if tx.broken:  # something swallowed the error of a failed statement: never commit half a call
                tx.cur.execute("ROLLBACK")
                raise StorageError(
                    f"a statement failed in this call's DuckDB transaction on {mask(self.url)}; "
                    f"it was rolled back, nothing of it was written"
                )
            if tx.begun:
                try:
                    tx.cur.execute("COMMIT")
                except duckdb.Error as e:
                    raise self._db.fail(e, "committing") from e
        finally:
            self._db.tx = None
            for lock in tx.claimed.values():
                lock.release()
            if tx.probe is not None:
                tx.probe.close()

    @contextmanager
    def savepoint(self):
        """DuckDB has no savepoints. None is needed: a write raises WriteError before it writes anything,
        and any other error (after which DuckDB's transaction is aborted) ends the whole call."""
        tx = self._db.tx
        if tx is None:
            with self.transaction():
                yield
            return
        try:
            yield
        except WriteError:
            raise
        except BaseException:
            tx.broken = tx.broken or tx.begun
            raise

    def claim(self, table):
        """Writers of one table take turns: this process's threads share the database, and DuckDB
        would let two transactions add the same key to a table without a PRIMARY KEY."""
        tx = self._db.tx
        name = table.casefold()  # DuckDB's names are case-insensitive
        if tx is None or name in tx.claimed:
            return
        with self._guard:
            lock = self._claims.setdefault(name, threading.Lock())
        lock.acquire()
        tx.claimed[name] = lock

    def close(self):
        self._db.close()

    # -- catalogue (catalogue.py) --------------------------------------------------------------
    def tables(self):
        return catalogue.tables(self._db, self._where)

    def schema(self, table):
        if not catalogue.catalogue_rows(self._db, self._where, table):
            return None
        if self._has_meta:
            stored = catalogue.stored_schema(self._db, table)
            if stored is not None:
                return stored
        return catalogue.foreign_schema(self._db, self._where, table)

    def create(self, table, schema):
        catalogue.check_case(table, schema)
        with self._tx() as tx:
            self._flush(tx)
            catalogue.create_table(self._db, tx, table, schema)
            tx.created.add(table)
            if self.primary_key and schema.key:
                tx.keyed.add(table)
            self._store_schema(tx, table, schema)

    def add_columns(self, table, columns):
        with self._tx() as tx:
            self._flush(tx)
            catalogue.add_columns(self._db, tx, table, self.schema(table).names, list(columns))
            tx.tables.pop(table, None)

    def set_schema(self, table, schema):
        with self._tx() as tx:
            self._flush(tx)
            catalogue.retype(self._db, tx, table, self.schema(table), schema)
            self._store_schema(tx, table, schema)

    def _store_schema(self, tx: Tx, table: str, schema: TableSchema) -> None:
        catalogue.store_schema(self._db, tx, table, schema)
        self._has_meta = True

    def drop(self, table):
        with self._tx() as tx:
            self.claim(table)
            self._flush(tx)
            catalogue.drop(self._db, tx, table, self._has_meta)
            tx.created.discard(table)
            tx.keyed.discard(table)
            tx.tables.pop(table, None)

    # -- writing (what may fail found first: checks.py) ----------------------------------------
    def prepare(self, data, schema):
        facts = unholdable(data, schema)
        return without_rows(data, facts), facts

    def write(self, table, data, schema, mode):
        tx = self._db.tx
        if tx is None:
            with self.transaction():
                return self.write(table, data, schema, mode)
        refused = tx.refused
        start = refused.locate(table, mode, data) if refused is not None else None
        if refused is None or start is None:  # a new chunk
            self._flush(tx)
            existed = self._existed(tx, table, data, schema)
            bad = self._refused_rows(tx, table, data, schema, mode, existed)
            if not bad:
                self._apply(tx, table, data, schema, mode, existed)
                return existed
            refused = tx.refused = checks.Refused(table, mode, data, existed, bad)
            start = 0
        error = refused.refusal(start, data.num_rows)
        if error is not None:
            raise error  # nothing of it was written: the engine narrows it down
        refused.fine.append((start, data.num_rows))
        return None if refused.existed is None else refused.existed[start : start + data.num_rows]

    def _flush(self, tx: Tx) -> None:
        """Write the slices of a refused chunk found fine, in one go."""
        refused, tx.refused = tx.refused, None
        if refused is not None and refused.fine:
            data, existed = refused.pending()
            self._apply(tx, refused.table, data, self.schema(refused.table), refused.mode, existed)

    def _existed(self, tx: Tx, table: str, data: pa.Table, schema: TableSchema) -> np.ndarray | None:
        """Which rows' keys are in the table: one semi-join against the staged keys."""
        if not schema.key or table in tx.created or not data.num_rows:
            return None
        keys = staged(data.select(schema.key), schema)
        keys = keys.append_column(ROW, pa.array(np.arange(data.num_rows, dtype=np.int64)))
        with registered(tx.cur, keys):
            found = self._db.run(
                tx,
                f"SELECT s.{q(ROW)} FROM {q(STAGE)} s WHERE EXISTS (SELECT 1 FROM {q(table)} t"
                f" WHERE {key_match(schema.key, 't', 's')})",
                doing=f"finding existing keys in {table!r}",
                numpy=True,
            )[ROW]
        existed = np.zeros(data.num_rows, dtype=bool)
        existed[found] = True
        return existed

    def _refused_rows(self, tx, table, data, schema, mode, existed) -> dict[int, tuple[str, str]]:
        """{position: (DuckDB's message, code)} of the rows a CHECK constraint of the table refuses."""
        if table in tx.created:  # this package declares no CHECK constraints
            return {}
        info = tx.tables.get(table)
        if info is None:
            db, nsp = self._where
            qualified = f"{q(db)}.{q(nsp)}.{q(table)}"
            info = tx.tables[table] = checks.constraints(
                lambda s, p: self._db.run(tx, s, p), table, qualified, self._where
            )
        if not info.checks:
            return {}
        old = existed if existed is not None else np.zeros(data.num_rows, dtype=bool)
        new = len(inserted(data, schema, mode, old)) > 0
        rows = checks.rows_sql(info, schema.key or [], data.column_names, new, mode != "insert" and bool(old.any()))
        if not rows:
            return {}
        stage = staged(data, schema).append_column(ROW, pa.array(np.arange(data.num_rows, dtype=np.int64)))
        stage = stage.append_column(checks.OLD, pa.array(old))
        if tx.probe is None:
            tx.probe = self._db.new_cursor()
        try:
            with registered(tx.probe, stage):
                found = checks.refused_rows(tx.probe, info, rows)
                out = {}
                for position, check in sorted(found.items()):
                    text = self._messages.get((table, info.checks[check]))
                    if text is None:
                        text = checks.message(tx.probe, info, check, rows, position)
                        self._messages[(table, info.checks[check])] = text
                    out[position] = (text, checks.CODE)
                return out
        except duckdb.Error as e:  # the probing connection only: the writing transaction is untouched
            raise StorageError(f"checking the CHECK constraints of {table!r} in {mask(self.url)}: {e}") from e

    def _apply(self, tx, table, data, schema, mode, existed) -> None:
        """Update the rows whose key existed (upsert, update) and insert the new ones (insert, upsert).
        Which is which DuckDB reads from a flag staged with the rows (cheaper than two Arrow copies)."""
        key = schema.key or []
        old = existed if existed is not None else np.zeros(data.num_rows, dtype=bool)
        stage = staged(data, schema).append_column(checks.OLD, pa.array(old))
        values = [n for n in data.column_names if n not in key]
        new = len(inserted(data, schema, mode, old)) > 0
        t, s = q(table), q(STAGE)
        with registered(tx.cur, stage):
            if old.any() and mode in ("upsert", "update") and values:
                sets = ", ".join(f"{q(n)} = s.{q(n)}" for n in values)
                self._db.run(
                    tx,
                    f"UPDATE {t} SET {sets} FROM {s} s WHERE s.{q(checks.OLD)} AND {key_match(key, t, 's')}",
                    doing=f"updating {table!r}",
                )
            if new:
                names = ", ".join(q(n) for n in data.column_names)
                only = f" WHERE NOT {q(checks.OLD)}" if old.any() else ""
                self._db.run(
                    tx, f"INSERT INTO {t} ({names}) SELECT {names} FROM {s}{only}", doing=f"writing to {table!r}"
                )

    def delete(self, table, keys, schema):
        with self._tx() as tx:
            self._flush(tx)
            existed = self._existed(tx, table, keys, schema)
            if existed is None:
                return np.zeros(keys.num_rows, dtype=bool)
            if existed.any():
                t = q(table)
                with registered(tx.cur, staged(keys.filter(pa.array(existed)), schema)):
                    self._db.run(
                        tx,
                        f"DELETE FROM {t} USING {q(STAGE)} s WHERE {key_match(schema.key, t, 's')}",
                        doing=f"deleting from {table!r}",
                    )
            return existed

    # -- reading (reading.py) --------------------------------------------------------------------
    def read(self, table, schema, columns, where, order, limit, batch_rows):
        sql, bound, plans, out = reading.select(table, schema, columns, where, order, limit)
        return rebatch(self._stream(table, sql, bound, plans, out.names, batch_rows), out, None, batch_rows)

    def _stream(self, table, sql, bound, plans, names, batch_rows):
        tx = self._db.tx
        if tx is not None:
            self._flush(tx)
        yield from reading.stream(self._db, tx, table, sql, bound, plans, names, batch_rows)
