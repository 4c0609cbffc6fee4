"""The SQLite Backend: catalogue, write, delete and read in SQL over the store's connection.

Writes: executemany() straight into the table when nothing can clash; an insert whose keys
clash (a PRIMARY KEY conflict) stages the chunk's keys to find which existed, in one join,
and inserts the others. Upserts, updates and deletes stage the chunk in a temporary table,
find the existing keys there, and apply it with one UPDATE ... FROM, INSERT ... SELECT or
DELETE. The table is `d` and the stage `s` in every statement.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from itertools import compress

import numpy as np
import pyarrow as pa

from ...errors import ConcurrentWriteError, InvalidArgumentError, StorageError
from ...failures import absent_columns, inserted
from ...schema import TableSchema
from ..base import Backend, without_rows
from ..capabilities import IMAGE_COLUMNS, Images
from ..sql import AFTER, META, ROW, copy_images, key_match, q, where_sql
from .connection import Connection, main_file, plain
from .foreign import foreign_schema
from .names import (
    META_T,
    ROWIDS,
    SEQ,
    STAGE_T,
    check_columns,
    check_table,
    exists,
    fold,
    hides_rowid,
    main,
    user_table,
)
from .types import decode, encode, storage, unholdable


class SQLiteBackend(Backend):
    """One connection per store (SQLite serializes writers anyway), guarded by a lock."""

    def __init__(self, url: str, timeout: float = 30.0, **options):
        super().__init__(url, **options)
        path = url.split("://", 1)[1]
        path = path.removeprefix("/")  # sqlite:///rel.db, sqlite:////abs.db
        self.path = path or ":memory:"
        self.in_process = self.path == ":memory:"  # a database in this process's memory: no other opens it
        self.timeout = timeout
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise StorageError(f"cannot open {url}: folder {parent!r} does not exist")
        self.conn = Connection(url, self.path, timeout)

    @classmethod
    def pool_key(cls, url, options):
        """Stores of one file share one connection, however their URLs spell its path."""
        path = url.split("://", 1)[1].removeprefix("/")
        if not path or path == ":memory:":
            return super().pool_key(url, options)
        return ("sqlite", os.path.realpath(path), *super().pool_key("", options)[1:])

    @classmethod
    def borrowing(cls, sqlite: sqlite3.Connection) -> SQLiteBackend:
        """A backend over a sqlite3 connection the user holds: used for everything, never closed
        (see connection.py); its URL names the database file, or :memory:."""
        try:
            with plain(sqlite):
                path = main_file(sqlite.execute("PRAGMA database_list").fetchall())
                (ms,) = sqlite.execute("PRAGMA busy_timeout").fetchone()  # how long it waits for other writers
        except sqlite3.Error as e:
            raise StorageError(f"cannot use the sqlite3 connection given as the store: {e}") from e
        backend = cls.__new__(cls)  # an alternative constructor: nothing to open
        backend.path, backend.timeout = path or ":memory:", ms / 1000
        Backend.__init__(backend, f"sqlite:///{backend.path}")
        backend.conn = Connection(backend.url, backend.path, backend.timeout, borrowed=sqlite)
        return backend

    # -- catalogue -------------------------------------------------------------------------
    def missing(self):
        """A file that does not exist (yet): connect, list and load create nothing; the first write creates it."""
        return self.conn.missing()

    def tables(self):
        with self.conn.sql("listing the tables") as c:
            rows = c.execute("SELECT name FROM main.sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
        return [n for (n,) in rows if user_table(n)]

    def schema(self, table):
        check_table(table)
        with self.conn.sql(f"reading the schema of {table!r}") as c:
            if not exists(c, table):
                return None
            # a borrowed connection may meet the database before this package's catalogue is made in it
            catalogued = self.conn.own or exists(c, META)
            row = catalogued and c.execute(f"SELECT schema FROM {META_T} WHERE name = ?", (table,)).fetchall()
            if row:
                return TableSchema.from_json(row[0][0], table)
            return foreign_schema(c, table)

    def create(self, table, schema):
        check_table(table)
        hidden = not schema.key and hides_rowid(schema.names)
        check_columns(table, schema.names + ([SEQ] if hidden else []))
        defs = [f"{q(c.name)} {storage(c.arrow)[0]}{'' if c.nullable else ' NOT NULL'}" for c in schema.columns]
        if hidden:  # insertion order needs a row id that no column shadows
            defs.append(f"{q(SEQ)} INTEGER PRIMARY KEY")
        if schema.key:
            defs.append(f"PRIMARY KEY ({', '.join(q(k) for k in schema.key)})")
        with self.transaction(), self.conn.sql(f"creating table {table!r}") as c:
            for kind, other in c.execute(
                "SELECT type, name FROM main.sqlite_master WHERE type IN ('table', 'view', 'index')"
                " AND name = ? COLLATE NOCASE",
                (table,),
            ).fetchall():
                if kind == "table" and other == table:
                    raise ConcurrentWriteError(
                        f"table {table!r} in {self.url} was created by another writer meanwhile; "
                        f"nothing of this call was written"
                    )
                raise InvalidArgumentError(
                    f"table {table!r} cannot be created in {self.url}: SQLite takes it for the {kind} {other!r} "
                    f"already there (it does not tell names apart by case); use {other!r} or another name"
                )
            c.execute(f"CREATE TABLE {main(table)} ({', '.join(defs)})")
            self.set_schema(table, schema)

    def set_schema(self, table, schema):
        with self.conn.sql(f"storing the schema of {table!r}") as c:
            c.execute(f"INSERT OR REPLACE INTO {META_T} (name, schema) VALUES (?, ?)", (table, schema.to_json()))

    def drop(self, table):
        check_table(table)
        with self.transaction(), self.conn.sql(f"dropping table {table!r}") as c:
            if exists(c, table):  # DROP TABLE alone would drop a table named so but for case
                c.execute(f"DROP TABLE {main(table)}")
            c.execute(f"DELETE FROM {META_T} WHERE name = ?", (table,))

    def add_columns(self, table, columns):
        check_table(table)
        with self.conn.sql(f"adding columns to {table!r}") as c:
            info = c.execute(f"PRAGMA main.table_info({q(table)})").fetchall()
            names = [r[1] for r in info] + [col.name for col in columns]
            check_columns(table, names)
            if not any(r[5] for r in info) and SEQ not in names and hides_rowid(names):
                raise InvalidArgumentError(
                    f"cannot add {[col.name for col in columns]} to table {table!r}: its rows would lose their "
                    f"order (SQLite names a row's id {', '.join(ROWIDS)}, and no column may take them all)"
                )
            for col in columns:  # DDL is transactional in SQLite: undone with the call's transaction
                c.execute(f"ALTER TABLE {main(table)} ADD COLUMN {q(col.name)} {storage(col.arrow)[0]}")

    # -- data ------------------------------------------------------------------------------
    def prepare(self, data, schema):
        facts = unholdable(data, schema)
        return without_rows(data, facts), facts

    def write(self, table, data, schema, mode):
        with self.conn.lock:
            try:
                return self._write(table, data, schema, mode)
            except sqlite3.Error as e:
                raise self.conn.write_error(e, table) from e

    def write_imaged(self, table, data, schema, mode, images):
        with self.conn.lock:
            try:
                if mode == "delete":
                    return self._delete(table, data, schema, images)
                return self._write_staged(table, data, schema, mode, images)
            except sqlite3.Error as e:
                raise self.conn.write_error(e, table) from e

    def _write(self, table, data, schema, mode) -> np.ndarray | None:
        if mode != "insert" or absent_columns(schema, data):
            return self._write_staged(table, data, schema, mode)
        columns = self._encoded(data, schema)
        try:  # the clean case: one executemany, nothing else
            with self.savepoint():
                self._insert_rows(table, data.column_names, zip(*columns))
            return None
        except sqlite3.IntegrityError as e:
            if not (schema.key and e.sqlite_errorname == "SQLITE_CONSTRAINT_PRIMARYKEY"):
                raise
        # Some keys exist: find them all in one lookup, insert the rest (the values encoded once).
        existed = self._found(table, data.select(schema.key), schema, columns[data.column_names.index(schema.key[0])])
        self._insert_rows(table, data.column_names, compress(zip(*columns), ~existed))
        return existed

    def _write_staged(self, table, data, schema, mode, images: Images | None = None) -> np.ndarray | None:
        """Stage the chunk, find existing keys there, then apply it with one UPDATE ... FROM and
        one INSERT ... SELECT (with `images`, after copying the before-images from the stage's join)."""
        names = data.column_names
        existed = self._staged_found(table, data, schema, images) if schema.key else np.zeros(data.num_rows, dtype=bool)
        t = main(table)
        match = key_match(schema.key, "d", "s") if schema.key else ""
        values = [n for n in names if n not in (schema.key or [])]
        if images is not None:
            adds = mode == "upsert" and not absent_columns(schema, data)
            self._copy_images(table, schema, images, values, mode, adds)
        if mode in ("upsert", "update") and values and existed.any():
            sets = ", ".join(f"{q(n)} = s.{q(n)}" for n in values)
            self.conn.sqlite.execute(f"UPDATE {t} AS d SET {sets} FROM {STAGE_T} AS s WHERE {match}")
        if len(inserted(data, schema, mode, existed)):
            cols = ", ".join(q(n) for n in names)
            new = f"NOT EXISTS (SELECT 1 FROM {t} AS d WHERE {match})" if schema.key else "1"
            self.conn.sqlite.execute(
                f"INSERT INTO {t} ({cols}) SELECT {cols} FROM {STAGE_T} AS s WHERE {new} ORDER BY s.{q(ROW)}"
            )
        return existed if existed.any() else None

    def _found(self, table, keys: pa.Table, schema, encoded: list) -> np.ndarray:
        """Which rows of `keys` have their key in the table (`encoded`: the key's values as stored). One
        integer or text key: one query, the keys bound as one JSON array (json_each, nothing staged);
        other keys: one join on a staged copy."""
        stored = storage(schema.column(schema.key[0]))[1] if len(schema.key) == 1 else None
        if stored is None or not (pa.types.is_int64(stored) or pa.types.is_string(stored)):
            return self._staged_found(table, keys, schema)
        found = self.conn.sqlite.execute(
            f"SELECT j.key FROM json_each(?) AS j"
            f" WHERE EXISTS (SELECT 1 FROM {main(table)} AS d WHERE d.{q(schema.key[0])} = j.value)",
            (json.dumps(encoded, ensure_ascii=False),),
        )
        return _positions(found, keys.num_rows)

    def _staged_found(self, table, data: pa.Table, schema, images: Images | None = None) -> np.ndarray:
        """Stage `data` (for the statements that follow) and find which of its rows' keys are in the table."""
        self._stage(data, schema, None if images is None else images.after)
        found = self.conn.sqlite.execute(
            f"SELECT s.{q(ROW)} FROM {STAGE_T} AS s"
            f" WHERE EXISTS (SELECT 1 FROM {main(table)} AS d WHERE {key_match(schema.key, 'd', 's')})"
        )
        return _positions(found, data.num_rows)

    def _stage(self, data: pa.Table, schema: TableSchema, after: pa.Array | None = None) -> None:
        """Load `data` into the stage, each row with its position (and `after`, the hashes of before-images)."""
        c = self.conn.sqlite
        c.execute(f"DROP TABLE IF EXISTS {STAGE_T}")
        names = [*data.column_names, *([AFTER] if after is not None else [])]
        c.execute(f"CREATE TABLE {STAGE_T} ({q(ROW)} INTEGER PRIMARY KEY, {', '.join(q(n) for n in names)})")
        columns = [range(data.num_rows)] + [encode(data.column(n), schema.column(n)) for n in data.column_names]
        if after is not None:
            columns.append(after.to_pylist())
        marks = ", ".join("?" * (len(names) + 1))
        c.executemany(f"INSERT INTO {STAGE_T} VALUES ({marks})", zip(*columns))

    @staticmethod
    def _encoded(data: pa.Table, schema: TableSchema) -> list[list]:
        return [encode(data.column(n), schema.column(n)) for n in data.column_names]

    def _insert_rows(self, table, names: list[str], rows: Iterable[tuple]) -> None:
        marks = ", ".join("?" * len(names))
        self.conn.sqlite.executemany(
            f"INSERT INTO {main(table)} ({', '.join(q(n) for n in names)}) VALUES ({marks})", rows
        )

    def delete(self, table, keys, schema):
        with self.conn.lock:
            try:
                return self._delete(table, keys, schema)
            except sqlite3.Error as e:
                raise self.conn.write_error(e, table) from e

    def _delete(self, table, keys, schema, images: Images | None = None) -> np.ndarray:
        existed = self._staged_found(table, keys, schema)
        if images is not None:
            self._copy_images(table, schema, images, [n for n in schema.names if n not in schema.key], "delete", False)
        self.conn.sqlite.execute(
            f"DELETE FROM {main(table)} AS d WHERE EXISTS"
            f" (SELECT 1 FROM {STAGE_T} AS s WHERE {key_match(schema.key, 'd', 's')})"
        )
        return existed

    def _copy_images(self, table, schema, images: Images, before: list[str], mode: str, adds: bool) -> None:
        """The before-images of the staged rows, from the table into its undo table (capabilities.StoreImages)."""
        match = key_match(schema.key, "d", "s")
        sql = copy_images(main(images.table), main(table), STAGE_T, schema.key, before, match, mode, adds, "??")
        self.conn.sqlite.execute(sql, (images.batch_id, images.columns))

    def read_keys(self, table, schema, keys, columns):
        out = pa.schema([schema.column(c).field for c in columns])
        picked = ", ".join(f"d.{q(c)}" for c in columns)
        with self.conn.sql(f"reading table {table!r}") as c:
            self._stage(keys, schema)
            rows = c.execute(
                f"SELECT {picked} FROM {STAGE_T} AS s JOIN {main(table)} AS d ON {key_match(schema.key, 'd', 's')}"
            ).fetchall()
        if not rows:
            return out.empty_table()
        raw = [pa.array(list(col)) for col in zip(*rows)]
        return pa.table([decode(a, schema.column(f.name)) for a, f in zip(raw, out)], schema=out)

    def written_by(self, undo, batch_id):
        batch, written = q(IMAGE_COLUMNS[0]), q(IMAGE_COLUMNS[2])  # dk_batch_id, dk_columns
        with self.conn.sql(f"reading {undo!r}") as c:
            return [
                r[0] for r in c.execute(f"SELECT DISTINCT {written} FROM {main(undo)} WHERE {batch} = ?", [batch_id])
            ]

    def read_images(self, table, schema, undo, undo_schema, batch_id, kept, columns):
        cols = [*(undo_schema.column(c) for c in kept), *(schema.column(c) for c in columns)]
        picked = [f"u.{q(c)}" for c in kept] + [f"d.{q(c)}" for c in columns]
        sql = (
            f"SELECT {', '.join(picked)} FROM {main(undo)} AS u"
            f" LEFT JOIN {main(table)} AS d ON {key_match(schema.key, 'd', 'u')}"
            f" WHERE u.{q(IMAGE_COLUMNS[0])} = ?"
        )
        seq = self._seq(undo, undo_schema)
        sql += f" ORDER BY u.{seq}" if seq else ""  # the order they were kept in
        doing = f"reading the before-images of {table!r}"
        # dk.undo reads them before it writes: a reader process then reads them as Arrow, several times faster
        raw = list(self.conn.rows(sql, [batch_id], None, 1 << 30, doing, self.conn.pristine()))
        if raw:
            got = pa.concat_tables(raw)
            arrays = [decode(got.column(i), col) for i, col in enumerate(cols)]
        else:
            arrays = [pa.array([], col.arrow) for col in cols]
        n = len(kept)
        return pa.table(arrays[:n], names=kept), pa.table(arrays[n:], names=columns)

    def read(self, table, schema, columns, where, order, limit, batch_rows):
        types = {c.name: c.arrow for c in schema.columns}

        def enc(col, values):
            return encode(pa.array(values, type=types[col], from_pandas=True), schema.column(col))

        def ref(col, op):  # decimals are exact text: compare their numeric value for < and >
            ranged = op not in ("==", "!=", "in", "not in")
            return f"CAST({q(col)} AS REAL)" if pa.types.is_decimal(types[col]) and ranged else q(col)

        clause, params = where_sql(where, enc, column_sql=ref)
        sql = f"SELECT {', '.join(q(c) for c in columns)} FROM {main(table)}{clause}"
        sql += self._order_by(table, schema, order)
        out = pa.schema([pa.field(c, types[c]) for c in columns])
        done = 0
        for raw in self.conn.rows(sql, params, limit, batch_rows, f"reading table {table!r}"):
            done += raw.num_rows
            yield pa.table([decode(raw.column(i), schema.column(f.name)) for i, f in enumerate(out)], schema=out)
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
        taken = {fold(n) for n in schema.names}
        free = next((a for a in ROWIDS if a not in taken), None)
        if free:
            return free
        with self.conn.sql(f"reading table {table!r}") as c:
            columns = {r[1] for r in c.execute(f"PRAGMA main.table_info({q(table)})").fetchall()}
        return q(SEQ) if SEQ in columns else None

    # -- transactions ----------------------------------------------------------------------
    def transaction(self):
        return self.conn.transaction()

    def savepoint(self):
        return self.conn.savepoint()

    def close(self):
        self.conn.close()

    def releaser(self):
        return self.conn.close


def _positions(rows, n: int) -> np.ndarray:
    """A mask of `n` rows, true at the positions in `rows` (one-column result rows)."""
    out = np.zeros(n, dtype=bool)
    out[np.fromiter((r for (r,) in rows), dtype=np.int64)] = True
    return out
