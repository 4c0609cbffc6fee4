"""The DuckDB backend: connections and transactions, the catalogue, writes and reads (see __init__)."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from ...errors import (
    ConcurrentWriteError,
    InternalError,
    InvalidArgumentError,
    SchemaMismatchError,
    StorageError,
    WriteError,
)
from ...failures import inserted
from ...schema import TableSchema
from ...urls import mask
from ..base import Backend, rebatch, without_rows
from ..sql import META, ROW, STAGE, key_match, order_sql, q, where_sql
from . import checks
from .columns import foreign_column, literal, params, plan, staged, unholdable


@dataclass
class _Tx:
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
        self.read_only, self.primary_key = bool(read_only), bool(primary_key)
        self._start(self._open(float(timeout), dict(config or {})))

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
        self._root = root
        self._local = threading.local()
        self._guard = threading.Lock()
        self._cursors: list[tuple[threading.Thread, duckdb.DuckDBPyConnection]] = []
        self._claims: dict[str, threading.Lock] = {}
        self._messages: dict[tuple[str, str], str] = {}  # DuckDB's message for each CHECK, probed once
        try:
            cur = self._cursor()
            self._where = tuple(cur.execute("SELECT current_database(), current_schema()").fetchall()[0])
            if not self.read_only:
                cur.execute(f"CREATE TABLE IF NOT EXISTS {q(META)} (name VARCHAR NOT NULL, schema VARCHAR NOT NULL)")
        except duckdb.Error as e:
            self.close()  # release the file
            raise StorageError(f"cannot open {mask(self.url)}: {e}") from e
        self._has_meta = bool(self._catalogue_rows(META))

    def _open(self, timeout: float, config: dict) -> duckdb.DuckDBPyConnection:
        """Open the database, waiting up to `timeout` seconds while another process has the file open."""
        if not self.path.startswith(":memory:"):
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise StorageError(f"cannot open {mask(self.url)}: folder {parent!r} does not exist")
        deadline = time.monotonic() + timeout
        while True:
            try:
                return duckdb.connect(self.path, read_only=self.read_only, config=config)
            except duckdb.IOException as e:
                if "lock" not in str(e).lower():
                    raise StorageError(f"cannot open {mask(self.url)}: {e}") from e
                if time.monotonic() >= deadline:
                    raise StorageError(
                        f"cannot open {mask(self.url)}: another process has this DuckDB file open, and DuckDB lets "
                        f"only one process at a time open a file for writing (waited {timeout:g}s; pass timeout= "
                        f"to wait longer, close the store in the other process, or open the file with "
                        f"read_only=True from every process that only reads). DuckDB said: {e}"
                    ) from e
                time.sleep(0.05)
            except duckdb.InvalidInputException as e:  # e.g. an unknown setting in config=
                raise InvalidArgumentError(f"cannot open {mask(self.url)}: {e}") from e
            except duckdb.Error as e:
                raise StorageError(f"cannot open {mask(self.url)}: {e}") from e

    # -- connections ---------------------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's connection to the database (DuckDB connections are not shared between threads)."""
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._new_cursor()
            self._local.cur = cur
            with self._guard:
                for _, c in [e for e in self._cursors if not e[0].is_alive()]:
                    c.close()
                self._cursors = [e for e in self._cursors if e[0].is_alive()] + [(threading.current_thread(), cur)]
        return cur

    def _new_cursor(self) -> duckdb.DuckDBPyConnection:
        try:
            cur = self._root.cursor()
        except duckdb.Error as e:
            raise StorageError(f"{mask(self.url)} is closed or broken: {e}") from e
        cur.execute("SET arrow_large_buffer_size = true")  # strings come back as large_string, no 2 GB cap
        return cur

    def _fail(self, e: duckdb.Error, doing: str, tx: _Tx | None = None) -> StorageError:
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

    def _run(self, tx: _Tx, sql: str, params=None, doing: str = "writing", numpy: bool = False):
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
            raise self._fail(e, doing, tx) from e

    def _query(self, sql: str, params=None, doing: str = "reading the catalogue") -> list[tuple]:
        tx = getattr(self._local, "tx", None)
        if tx is not None:
            return self._run(tx, sql, params, doing)
        try:
            return self._cursor().execute(sql, params).fetchall()
        except duckdb.Error as e:
            raise self._fail(e, doing) from e

    @contextmanager
    def _tx(self):
        """The open transaction, or one for this block."""
        tx = getattr(self._local, "tx", None)
        if tx is not None:
            yield tx
            return
        with self.transaction():
            yield self._local.tx

    @contextmanager
    def _staged(self, cur, data: pa.Table):
        """`data` visible to `cur` as the view `_dk_stage` (an Arrow scan, no copy)."""
        cur.register(STAGE, data)
        try:
            yield
        finally:
            try:
                cur.unregister(STAGE)
            except duckdb.Error:  # an aborted transaction refuses even this; the next register replaces it
                pass

    # -- transactions --------------------------------------------------------------------------
    @contextmanager
    def transaction(self):
        if getattr(self._local, "tx", None) is not None:
            with self.savepoint():
                yield
            return
        tx = _Tx(self._cursor())
        self._local.tx = tx
        try:
            try:
                yield
                self._flush(tx)
                for table in sorted(tx.keyed):  # one index build after the load is cheaper than per row
                    key = self.schema(table).key
                    self._run(
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
                    raise self._fail(e, "committing") from e
        finally:
            self._local.tx = None
            for lock in tx.claimed.values():
                lock.release()
            if tx.probe is not None:
                tx.probe.close()

    @contextmanager
    def savepoint(self):
        """DuckDB has no savepoints. None is needed: a write raises WriteError before it writes anything,
        and any other error (after which DuckDB's transaction is aborted) ends the whole call."""
        tx = getattr(self._local, "tx", None)
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
        tx = getattr(self._local, "tx", None)
        name = table.casefold()  # DuckDB's names are case-insensitive
        if tx is None or name in tx.claimed:
            return
        with self._guard:
            lock = self._claims.setdefault(name, threading.Lock())
        lock.acquire()
        tx.claimed[name] = lock

    def close(self):
        with self._guard:
            cursors, self._cursors = self._cursors, []
        for _, cur in cursors:
            try:
                cur.close()
            except duckdb.Error:
                pass
        self._root.close()

    # -- catalogue -----------------------------------------------------------------------------
    def _catalogue_rows(self, table: str) -> list[tuple]:
        db, nsp = self._where
        return self._query(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?"
            " AND table_name = ? AND NOT temporary",
            [db, nsp, table],
        )

    def tables(self):
        db, nsp = self._where
        rows = self._query(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND NOT temporary",
            [db, nsp],
        )
        return sorted(r[0] for r in rows if not r[0].lower().startswith("_dk_"))

    def schema(self, table):
        if not self._catalogue_rows(table):
            return None
        if self._has_meta:
            rows = self._query(f"SELECT schema FROM {q(META)} WHERE name = ?", [table])
            if rows:
                return TableSchema.from_json(rows[0][0], table)
        return self._foreign_schema(table)

    def _foreign_schema(self, table: str) -> TableSchema:
        """A schema for a table this package did not create, from the types DuckDB reads its columns as."""
        db, nsp = self._where
        cols = self._query(
            "SELECT column_name, is_nullable FROM duckdb_columns() WHERE database_name = ?"
            " AND schema_name = ? AND table_name = ? ORDER BY column_index",
            [db, nsp, table],
        )
        keys = self._query(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE database_name = ?"
            " AND schema_name = ? AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [db, nsp, table],
        )
        key = list(keys[0][0]) if keys else None
        names = ", ".join(q(c) for c, _ in cols)
        tx = getattr(self._local, "tx", None)
        try:
            cur = tx.cur if tx is not None else self._cursor()
            if tx is not None and not tx.begun:
                self._run(tx, "SELECT 1")
            arrow = cur.sql(f"SELECT {names} FROM {q(table)} LIMIT 0").to_arrow_table().schema
        except duckdb.Error as e:
            raise self._fail(e, f"reading the columns of {table!r}", tx) from e
        return TableSchema(
            columns=[foreign_column(c, arrow.field(c).type, bool(n) and c not in (key or [])) for c, n in cols], key=key
        )

    def create(self, table, schema):
        folded: dict[str, str] = {}
        for c in schema.columns:  # DuckDB's column names are case-insensitive
            other = folded.setdefault(c.name.casefold(), c.name)
            if other != c.name:
                raise SchemaMismatchError(
                    f"columns {other!r} and {c.name!r} of table {table!r} differ only by case, "
                    f"which DuckDB cannot keep apart; rename one of them"
                )
        with self._tx() as tx:
            self._flush(tx)
            defs, notes = [], []
            for c in schema.columns:
                p = plan(c)
                sql = p.sql or self._type_of(tx, c.arrow)
                defs.append(f"{q(c.name)} {sql}{'' if c.nullable else ' NOT NULL'}")
                if p.comment:
                    notes.append((c.name, p.comment))
            self._run(tx, f"CREATE TABLE {q(table)} ({', '.join(defs)})", doing=f"creating table {table!r}")
            for name, note in notes:
                self._run(
                    tx, f"COMMENT ON COLUMN {q(table)}.{q(name)} IS {literal(note)}", doing=f"creating table {table!r}"
                )
            tx.created.add(table)
            if self.primary_key and schema.key:
                tx.keyed.add(table)
            self._store_schema(tx, table, schema)

    def add_columns(self, table, columns):
        with self._tx() as tx:
            self._flush(tx)
            have = {c.casefold(): c for c in self.schema(table).names}
            for c in columns:
                other = have.setdefault(c.name.casefold(), c.name)
                if other != c.name:
                    raise SchemaMismatchError(
                        f"column {c.name!r} differs only by case from column {other!r} of "
                        f"table {table!r}, which DuckDB cannot keep apart; rename it"
                    )
                p = plan(c)
                self._run(
                    tx,
                    f"ALTER TABLE {q(table)} ADD COLUMN {q(c.name)} {p.sql or self._type_of(tx, c.arrow)}",
                    doing=f"adding column {c.name!r} to {table!r}",
                )
                if p.comment:
                    self._run(
                        tx,
                        f"COMMENT ON COLUMN {q(table)}.{q(c.name)} IS {literal(p.comment)}",
                        doing=f"adding column {c.name!r} to {table!r}",
                    )
            tx.tables.pop(table, None)

    def _type_of(self, tx: _Tx, t: pa.DataType) -> str:
        """The type DuckDB gives an Arrow type (nested ones with parts columns.py does not name)."""
        with self._staged(tx.cur, pa.table({"c": pa.array([], type=t)})):
            return self._run(tx, f"DESCRIBE SELECT c FROM {q(STAGE)}")[0][1]

    def set_schema(self, table, schema):
        with self._tx() as tx:
            self._flush(tx)
            old = self.schema(table)
            for c in schema.columns:  # an ENUM whose categories grew (or a column that became one)
                was = old.get(c.name) if old is not None else None
                new = plan(c).sql
                if was is not None and new is not None and plan(was).sql != new:
                    self._run(
                        tx,
                        f"ALTER TABLE {q(table)} ALTER COLUMN {q(c.name)} SET DATA TYPE {new}",
                        doing=f"adding categories to column {c.name!r} of {table!r}",
                    )
            self._store_schema(tx, table, schema)

    def _store_schema(self, tx: _Tx, table: str, schema: TableSchema) -> None:
        self._run(tx, f"DELETE FROM {q(META)} WHERE name = ?", [table], doing=f"storing the schema of {table!r}")
        self._run(
            tx,
            f"INSERT INTO {q(META)} VALUES (?, ?)",
            [table, schema.to_json()],
            doing=f"storing the schema of {table!r}",
        )
        self._has_meta = True

    def drop(self, table):
        with self._tx() as tx:
            self.claim(table)
            self._flush(tx)
            self._run(tx, f"DROP TABLE IF EXISTS {q(table)}", doing=f"dropping {table!r}")
            if self._has_meta:
                self._run(tx, f"DELETE FROM {q(META)} WHERE name = ?", [table], doing=f"dropping {table!r}")
            tx.created.discard(table)
            tx.keyed.discard(table)
            tx.tables.pop(table, None)

    # -- writing -------------------------------------------------------------------------------
    def prepare(self, data, schema):
        facts = unholdable(data, schema)
        return without_rows(data, facts), facts

    def write(self, table, data, schema, mode):
        tx = getattr(self._local, "tx", None)
        if tx is None:
            with self.transaction():
                return self.write(table, data, schema, mode)
        refused = tx.refused
        start = refused.locate(table, mode, data) if refused is not None else None
        if start is None:  # a new chunk
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

    def _flush(self, tx: _Tx) -> None:
        """Write the slices of a refused chunk found fine, in one go."""
        refused, tx.refused = tx.refused, None
        if refused is not None and refused.fine:
            data, existed = refused.pending()
            self._apply(tx, refused.table, data, self.schema(refused.table), refused.mode, existed)

    def _existed(self, tx: _Tx, table: str, data: pa.Table, schema: TableSchema) -> np.ndarray | None:
        """Which rows' keys are in the table: one semi-join against the staged keys."""
        if not schema.key or table in tx.created or not data.num_rows:
            return None
        keys = staged(data.select(schema.key), schema)
        keys = keys.append_column(ROW, pa.array(np.arange(data.num_rows, dtype=np.int64)))
        with self._staged(tx.cur, keys):
            found = self._run(
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
                lambda s, p: self._run(tx, s, p), table, qualified, self._where
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
            tx.probe = self._new_cursor()
        try:
            with self._staged(tx.probe, stage):
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
        with self._staged(tx.cur, stage):
            if old.any() and mode in ("upsert", "update") and values:
                sets = ", ".join(f"{q(n)} = s.{q(n)}" for n in values)
                self._run(
                    tx,
                    f"UPDATE {t} SET {sets} FROM {s} s WHERE s.{q(checks.OLD)} AND {key_match(key, t, 's')}",
                    doing=f"updating {table!r}",
                )
            if new:
                names = ", ".join(q(n) for n in data.column_names)
                only = f" WHERE NOT {q(checks.OLD)}" if old.any() else ""
                self._run(tx, f"INSERT INTO {t} ({names}) SELECT {names} FROM {s}{only}", doing=f"writing to {table!r}")

    def delete(self, table, keys, schema):
        with self._tx() as tx:
            self._flush(tx)
            existed = self._existed(tx, table, keys, schema)
            if existed is None:
                return np.zeros(keys.num_rows, dtype=bool)
            if existed.any():
                t = q(table)
                with self._staged(tx.cur, staged(keys.filter(pa.array(existed)), schema)):
                    self._run(
                        tx,
                        f"DELETE FROM {t} USING {q(STAGE)} s WHERE {key_match(schema.key, t, 's')}",
                        doing=f"deleting from {table!r}",
                    )
            return existed

    # -- reading -------------------------------------------------------------------------------
    def read(self, table, schema, columns, where, order, limit, batch_rows):
        cols = [schema.column(c) for c in columns]
        plans = [plan(c) for c in cols]

        def compare(col, op="<"):  # e.g. decimals kept as text compare as numbers
            return plan(schema.column(col)).compare.format(q(col)) if op not in ("==", "!=", "in", "not in") else q(col)

        clause, bound = where_sql(where, lambda col, values: params(schema.column(col), values), column_sql=compare)
        select = ", ".join(f"{p.select.format(q(c.name))} AS {q(c.name)}" for c, p in zip(cols, plans))
        # Without a key, no ORDER BY: DuckDB returns rows in insertion order (preserve_insertion_order).
        sql = f"SELECT {select} FROM {q(table)}{clause}{order_sql(order, schema.key, None, compare)}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = pa.schema([pa.field(c.name, c.arrow) for c in cols])
        return rebatch(self._stream(table, sql, bound, plans, out.names, batch_rows), out, None, batch_rows)

    def _stream(self, table, sql, bound, plans, names, batch_rows):
        tx = getattr(self._local, "tx", None)
        if tx is not None:
            self._flush(tx)
            self._run(tx, "SELECT 1", doing=f"reading {table!r}")  # BEGIN: the read sees this call's writes
            cur = tx.cur
        else:  # its own connection: a caller reading in chunks may use this thread's meanwhile
            cur = self._new_cursor()
        reader = None
        try:
            try:
                reader = cur.sql(sql, params=bound or None).to_arrow_reader(batch_rows)
                for batch in reader:
                    cols = [p.back(batch.column(i)) if p.back else batch.column(i) for i, p in enumerate(plans)]
                    yield pa.table(cols, names=names)
            except duckdb.Error as e:
                raise self._fail(e, f"reading {table!r}", tx) from e
        finally:  # a caller may stop early: the connection must not keep a pending result
            if reader is not None:
                reader.close()
            if tx is None:
                cur.close()
