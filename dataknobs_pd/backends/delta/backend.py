"""DeltaBackend: the catalogue, transactions that stage a call's changes in memory, writes, reads and history.

A transaction's tables are committed one at a time, the tables kept beside a table (base.COMPANIONS) first and
the table last, so the table's own commit is the commit point of the call: a companion committed with its table
names it in its commit info (OWNER_KEY), and the table's commit names the version of each companion that goes
with it (COMPANIONS_KEY; -1: none). A transaction that changes a companion commits its table too (an empty
commit when its rows did not change). A companion whose latest commit names an owner is read at the version
the owner's latest dataknobs-pd commit names (none: there is no companion), so what a call that never
committed left there (a crash, a failure between the commits) is not seen; the next commit of the companion
first restores that version (a Delta restore), then commits on it. A companion dropped with its table present
(a table replaced drops its undo images) is named -1 and its folder removed after the table's commit.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound

from ...errors import InternalError, TableNotFoundError
from ...failures import inserted
from ...schema import TableSchema
from ..base import Backend, owners, publish_order
from ..keyed import sort_order, take_keys
from . import physical as ph
from .checks import Checker
from .commit import commit
from .history import (
    COMPANIONS_KEY,
    ORDER_KEY,
    ORDERED,
    OWNER_KEY,
    SCHEMA_KEY,
    TOKEN_KEY,
    check_version,
    history_row,
    natural_schema,
    version_at,
)
from .location import Location, table_of
from .reading import Snapshot, read_rows
from .staging import Staged, Tx, complete

REUSE_SECONDS = 1.0  # how long a table schema() opened is handed on to the next open of it in the same thread


class DeltaBackend(Backend):
    """delta://PATH: one Delta Lake table per table name, in PATH/<name>/ (local or object store)."""

    chunk_cells = 10_000_000  # rows are staged in memory and written at commit: chunks only pace conversion

    def __init__(self, url: str, storage_options: dict | None = None):
        super().__init__(url, storage_options=storage_options)
        self.loc = Location(url, storage_options)
        self.display = self.loc.display
        self._lock = threading.RLock()  # writers of this store take turns, one transaction at a time
        self._tx: Tx | None = None
        self._schemas: dict = {}  # (uri, version) -> (TableSchema, whether its rows are ordered by its files)
        self._checker = Checker()
        self._last: dict = {}  # (thread, table) -> the version this thread's last commit of it created
        self._opened: dict = {}  # (thread, table) -> (time, DeltaTable) that schema() just opened, for the next open
        self.loc.probe()

    # -- opening versions -----------------------------------------------------------------------
    def _open(self, table: str) -> DeltaTable | None:
        """The table's latest version; None when there is no table."""
        held = self._opened.pop((threading.get_ident(), table), None)
        with self.loc.io(f"reading table {table!r}"):
            try:  # delta-rs lists the log: no need to ask first whether there is one (a request less)
                if held is not None and time.monotonic() - held[0] < REUSE_SECONDS:
                    # A call asks for the schema, then reads or writes: bringing the table schema() opened up
                    # to date reads only the commits since, where opening it anew reads every commit again.
                    held[1].update_incremental()
                    return held[1]
                return self.loc.delta_table(table)
            except DeltaTableNotFound:
                return None

    def _latest(self, table: str) -> DeltaTable:
        dt = self._open(table)
        if dt is None:
            raise TableNotFoundError(f"no table {table!r} in {self.display}")
        return dt

    def _dk_schema(self, dt: DeltaTable, table: str) -> TableSchema:
        """The dk schema as of the table's version: the one the last commit of dataknobs-pd carried."""
        return self._dk_meta(dt, table)[0]

    def _dk_meta(self, dt: DeltaTable, table: str) -> tuple[TableSchema, bool]:
        """(the dk schema, whether the table keeps its rows in order by its files) as of the table's version,
        from the last commit of dataknobs-pd; a table it never wrote has its natural schema and no order."""
        found = self._meta(dt, table)
        return found[0], found[1]

    def _links(self, dt: DeltaTable, table: str) -> tuple[str | None, dict | None]:
        """(the owner a companion was committed with, the companion versions a table's commit names) as of
        the table's version, from the last commit of dataknobs-pd (see the module's docstring)."""
        found = self._meta(dt, table)
        return found[2], found[3]

    def _meta(self, dt: DeltaTable, table: str) -> tuple[TableSchema, bool, str | None, dict | None]:
        key = (self.loc.uri(table), dt.version())
        found = self._schemas.get(key)
        if found is not None:
            return found
        with self.loc.io(f"reading the history of table {table!r}"):
            for limit in (1, None):
                info = next(
                    (h for h in dt.history(limit) if SCHEMA_KEY in h and h.get("version", -1) <= dt.version()),
                    None,
                )
                if info is not None:
                    break
        if info is None:
            found = (natural_schema(dt), False, None, None)
        else:
            named = info.get(COMPANIONS_KEY)
            found = (
                TableSchema.from_json(info[SCHEMA_KEY], table),
                info.get(ORDER_KEY) == ORDERED,
                info.get(OWNER_KEY),
                {str(c): int(v) for c, v in named.items()} if isinstance(named, dict) else None,
            )
        self._schemas[key] = found
        return found

    # -- catalogue ------------------------------------------------------------------------------
    def tables(self):
        with self.loc.io("listing tables"):
            names = [(n, table_of(n)) for n in self.loc.ls(self.loc.root)]
            return sorted(t for n, t in names if t is not None and self.loc.is_table(f"{self.loc.root}/{n}"))

    def schema(self, table):
        if self._current() is not None:
            st = self._touch(table)
            return st.table_schema() if st.schema is not None else None
        dt = self._open(table)
        if dt is None:
            return None
        self._opened[(threading.get_ident(), table)] = (time.monotonic(), dt)
        dt = self._named(table, dt)
        return self._dk_schema(dt, table) if dt is not None else None

    def _named(self, table: str, dt: DeltaTable, owner: DeltaTable | None = None) -> DeltaTable | None:
        """The version of `table` (latest: `dt`) that is the table's: for a companion committed with its table,
        the one the table's latest dataknobs-pd commit (`owner`, opened when not given) names, None when it names
        none (see the module's docstring); else `dt`."""
        name = self._links(dt, table)[0]
        if name is None:
            return dt
        if owner is None:
            tx = self._current()
            owner = tx.tables[name].base if tx is not None and name in tx.tables else self._open(name)
        if owner is None:
            return None
        named = self._links(owner, name)[1]
        if named is None:  # an owner committed by a release that names no companions
            return dt
        version = named.get(table, -1)
        if version < 0:
            return None
        if version == dt.version():
            return dt
        with self.loc.io(f"reading table {table!r}"):
            return self.loc.delta_table(table, version)

    def create(self, table, schema):
        ph.check_columns(schema, table)
        with self.transaction():
            self._touch(table).restart(schema, fresh=True, dropped=False)

    def set_schema(self, table, schema):
        with self.transaction():
            self._touch(table).schema = schema

    def add_columns(self, table, columns):
        """Add nullable columns; Delta's schema gains them with the call's one commit (old files read as nulls)."""
        with self.transaction():
            st = self._existing(table)
            if st.schema is None:
                raise InternalError("_existing: the table exists")
            schema = replace(st.schema, columns=st.schema.data_columns + list(columns) + st.schema.index_columns)
            ph.check_columns(schema, table)
            st.schema = schema

    def drop(self, table):
        for k in list(self._opened):  # no thread hands on a version of the table dropped
            if k[1] == table:
                self._opened.pop(k, None)
        with self.transaction():
            self._touch(table).restart(None, fresh=False, dropped=True)

    # -- transactions ---------------------------------------------------------------------------
    def _current(self) -> Tx | None:
        tx = self._tx
        return tx if tx is not None and tx.owner == threading.get_ident() else None

    def _touch(self, table: str) -> Staged:
        """The table as this transaction sees it; its latest version is read on first touch."""
        tx = self._current()
        if tx is None:
            raise InternalError("tables are touched inside a transaction")
        st = tx.tables.get(table)
        if st is None:
            latest = self._open(table)
            dt = self._named(table, latest) if latest is not None else None
            schema, ordered = self._dk_meta(dt, table) if dt is not None else (None, False)
            if latest is not None and dt is None:  # a companion its table names none of: as if there were none
                st = Staged(table, self.loc, latest, None, None)
            else:
                st = Staged(table, self.loc, dt, schema, schema, ordered=ordered)
                if dt is not latest:  # a newer version its table does not name: the commit restores dt first
                    st.latest = latest
            tx.tables[table] = st
        return st

    def _existing(self, table: str) -> Staged:
        st = self._touch(table)
        if st.schema is None:
            raise TableNotFoundError(f"no table {table!r} in {self.display}")
        return st

    def claim(self, table):
        # No lock across processes: every commit is checked by Delta against the versions committed
        # since this one was read (see commit.py), and the engine runs a call that lost the race again.
        self._touch(table)

    @contextmanager
    def transaction(self):
        with self._lock:
            if self._current() is not None:
                with self.savepoint():
                    yield
                return
            tx = self._tx = Tx()
            try:
                yield
                self._commit(tx)
                for then in tx.after.values():
                    then()
            finally:
                self._tx = None

    def _commit(self, tx: Tx) -> None:
        """Commit each table of the transaction, its companions first and the table last, naming them (see the
        module's docstring)."""
        owned = {}
        for c, t in owners(tx.tables).items():
            st, owner = tx.tables[c], tx.tables[t]
            if (st.changed or st.dropped) and (owner.schema is not None or owner.base is not None):
                owned[c] = t
                st.owner = t
        gone = []
        for t in set(owned.values()):  # the tables that name their companions: committed too
            owner = tx.tables[t]
            if owner.schema is not None:
                named = self._links(owner.base, t)[1] if owner.base is not None else None
                owner.companions = dict(named or {})
        for st in [tx.tables[t] for t in publish_order(tx.tables)]:
            owner = tx.tables[st.owner] if st.owner is not None else None
            if owner is not None and st.dropped and not st.fresh:
                gone.append(st)  # named as none by its table, removed once that is committed
                if owner.companions is not None:
                    owner.companions[st.name] = -1
                continue
            done = commit(st)
            if done is not None:
                version = self._after_commit(st, *done)
                if owner is not None and owner.companions is not None:
                    if version is None:
                        raise InternalError(f"the version of the commit of {st.name!r} was not found")
                    owner.companions[st.name] = version
        for st in gone:
            commit(st)

    @contextmanager
    def savepoint(self):
        with self._lock:
            tx = self._current()
            if tx is None:
                with self.transaction():
                    yield
                return
            saved = {t: st.copy() for t, st in tx.tables.items()}
            try:
                yield
            except BaseException:
                for t in list(tx.tables):  # tables first touched inside the savepoint: back to untouched
                    if t not in saved:
                        del tx.tables[t]
                for t, st in saved.items():
                    tx.tables[t] = replace(st, cache=tx.tables[t].cache)
                raise

    def _after_commit(self, st: Staged, token: str, version: int | None) -> int | None:
        """Note the version the commit became (for the batch report and history); that version."""
        if version is None:  # found by the commit's token
            with self.loc.io(f"reading the history of table {st.name!r}"):
                dt = st.base
                if dt is None:
                    raise InternalError("a commit without its version wrote into a table that exists")
                dt.update_incremental()  # the version read, brought up to date: cheaper than opening it anew
                for limit in (1, 20):  # ours is almost always the latest commit
                    version = next((h["version"] for h in dt.history(limit) if h.get(TOKEN_KEY) == token), None)
                    if version is not None:
                        break
        if version is not None:
            self._last[(threading.get_ident(), st.name)] = version
            self._schemas[(self.loc.uri(st.name), version)] = (
                st.table_schema(),
                st.ordered,
                st.owner,
                dict(st.companions) if st.companions is not None else None,
            )
        return version

    # -- writing: rows are checked and staged; the transaction's end commits them -----------------------
    def prepare(self, data, schema):
        bad = ph.unholdable(data, schema)
        if not bad:
            return data, {}
        keep = np.ones(data.num_rows, dtype=bool)
        keep[list(bad)] = False
        return data.filter(pa.array(keep)), bad

    def write(self, table, data, schema, mode):
        with self.transaction():
            st = self._existing(table)
            st.schema = schema
            known = self._checker.known(st, data)  # rows checked already (a refusal raises here, first)
            stored = ph.to_stored(data, schema)
            n = data.num_rows
            if not schema.key:
                self._checker.check(st, data, stored, np.arange(n), np.array([], dtype=np.int64), None)
                st.inserts.append(stored)
                st.modes += (mode,)
                return None
            pos = st.find(stored)
            existed = pos >= 0
            new = inserted(data, schema, mode, existed)
            changed = np.flatnonzero(existed) if mode != "insert" else np.array([], dtype=np.int64)
            if not known:
                self._checker.check(st, data, stored, new, changed, pos)
            if len(changed):
                st.updates.append((stored.take(changed), pos[changed]))
            if len(new):
                st.inserts.append(stored if len(new) == n else stored.take(new))
            st.modes += (mode,)
            return existed if existed.any() else None

    def delete(self, table, keys, schema):
        with self.transaction():
            st = self._existing(table)
            if st.schema is not None and st.schema.key != schema.key:  # key= on a table without a key
                st.schema = replace(st.schema, key=schema.key)
            pos = st.find(ph.to_stored(keys, schema))
            existed = pos >= 0
            if st.has_rows:
                st.deletes.append(pos[existed])
                st.modes += ("delete",)
            return existed

    # -- a new table loaded by many writers at once (capabilities.ParallelLoad) -------------------------
    # Each partition's writer has delta-rs write its rows, sorted by key, as a table of their own in a stage
    # folder of the table (their statistics with them), keeps the add actions, and at the end of its
    # transaction records them (`_dk_aside/<job>/<partition>.json`, replaced by a later try, whose stage
    # folders it removes); swap_in commits every recorded file as the table's next version, in one commit.
    # The aside's name is "<job>/<table>".
    def open_aside(self, table, schema):
        if not schema.key:  # a keyless table keeps its rows in the order one writer inserted them
            return None
        ph.check_columns(schema, table)
        return f"{uuid.uuid4().hex[:16]}/{table}"

    def _record(self, aside: str, part: int | None = None) -> str:
        job, table = aside.split("/", 1)
        folder = f"{self.loc.folder(table)}/_dk_aside/{job}"
        return folder if part is None else f"{folder}/{part:08d}.json"

    def _adds_of(self, aside: str, part: int) -> list[dict]:
        """The files recorded for partition `part` (none yet: [])."""
        try:
            return json.loads(self.loc.fs.cat_file(self._record(aside, part)))
        except FileNotFoundError:
            return []

    def _put_record(self, aside: str, part: int, adds: list[dict]) -> None:
        path, raw = self._record(aside, part), json.dumps(adds).encode()
        if self.loc.local:
            os.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.loc.write_whole(path, raw)  # whole or not at all: a full disk leaves the earlier try's record as it was

    def _stages(self, aside: str, adds: list[dict]) -> set[str]:
        folder = self.loc.folder(aside.split("/", 1)[1])
        return {f"{folder}/{a['path'].split('/', 1)[0]}" for a in adds}

    def clear_aside(self, aside, part, schema):
        """The partition starts with no files; at commit its record is replaced, and the stage folders an
        earlier try of it recorded are removed."""
        tx = self._current()
        if tx is None:
            raise InternalError("a partition is written inside a transaction")
        table = aside.split("/", 1)[1]
        written: list[dict] = []

        def then():
            with self.loc.io(f"writing table {table!r}"):
                earlier = self._adds_of(aside, part)
                self._put_record(aside, part, written)
            for stage in self._stages(aside, earlier) - self._stages(aside, written):
                self.loc.remove_quietly(stage)

        then.written = written  # type: ignore[attr-defined]
        tx.after[(aside, part)] = then

    def write_aside(self, aside, part, data, schema, rows):
        stored = ph.to_stored(data, schema)
        stored = stored.take(pa.array(sort_order(stored, ph.stored_key(schema))))
        tx = self._current()
        if tx is None:
            raise InternalError("a partition is written inside a transaction")
        tx.after[(aside, part)].written.extend(self._write_stage(aside, stored, schema))

    def _write_stage(self, aside: str, stored: pa.Table, schema: TableSchema) -> list[dict]:
        """Write stored rows as the files of a stage folder of the aside's table; their add actions."""
        job, table = aside.split("/", 1)
        folder, stage = self.loc.folder(table), f"{self.loc.new_stage()}-{job}"
        full = ph.stored_schema(schema)
        with self.loc.io(f"writing table {table!r}"):
            write_deltalake(
                self.loc.uri_of(f"{folder}/{stage}"),
                complete(stored, full).combine_chunks(),
                mode="error",
                storage_options=self.loc.delta_options or None,
            )
            return self.loc.harvest(folder, stage)

    def take_aside(self, aside, schema, part, rows, keys):
        table = aside.split("/", 1)[1]
        folder, key = self.loc.folder(table), ph.stored_key(schema)
        want = ph.to_stored(keys, TableSchema(columns=[schema.column(k) for k in schema.key], key=schema.key))
        out: list[pa.Table | None] = [None] * keys.num_rows
        kept: list[dict] = []
        adds = self._adds_of(aside, part)
        for a in adds:
            with self.loc.io(f"writing table {table!r}"), self.loc.fs.open(f"{folder}/{a['path']}", "rb") as f:
                whole = pq.read_table(f)
            rest = take_keys(whole, want, key, out)
            if rest is whole:
                kept.append(a)
            elif rest is not None:
                kept += self._write_stage(aside, rest, schema)
        with self.loc.io(f"writing table {table!r}"):
            self._put_record(aside, part, kept)
        for stage in self._stages(aside, adds) - self._stages(aside, kept):
            self.loc.remove_quietly(stage)
        found = [t for t in out if t is not None]
        return (
            ph.to_logical(pa.concat_tables(found), schema, schema.names) if found else schema.arrow_schema.empty_table()
        )

    def swap_in(self, aside, table, schema):
        with self.loc.io(f"writing table {table!r}"):
            names = sorted(n for n in self.loc.ls(self._record(aside)) if n.endswith(".json"))
            adds = [a for n in names for a in self._adds_of(aside, int(n[:-5]))]
        st = self._touch(table)
        st.restart(schema, fresh=True, dropped=False)
        st.adds = adds

    def drop_aside(self, aside):
        job, table = aside.split("/", 1)
        folder = self.loc.folder(table)
        self.loc.remove_quietly(self._record(aside))
        dt = self._open(table)
        listed = {u.rsplit("/", 2)[-2] for u in dt.file_uris()} if dt is not None else set()
        for name in self.loc.ls(folder):
            if name.endswith(f"-{job}") and name not in listed:
                self.loc.remove_quietly(f"{folder}/{name}")
        if self.loc.local:  # folders left empty (object stores have none)
            for empty in (f"{folder}/_dk_aside", folder):
                with suppress(OSError):
                    os.rmdir(empty)

    # -- reading --------------------------------------------------------------------------------
    def read(self, table, schema, columns, where, order, limit, batch_rows):
        if self._current() is not None:
            st = self._touch(table)
            dt = st.base if st.schema is not None or st.dropped else None
        else:
            dt = self._open(table)
            dt = self._named(table, dt) if dt is not None else None
        if dt is None:
            raise TableNotFoundError(f"no table {table!r} in {self.display}")
        yield from read_rows(Snapshot(dt, self.loc), schema, columns, where, order, limit, batch_rows, table)

    # -- history: the versions of a table and reading one of them ---------------------------------------
    def history(self, table: str) -> list[dict]:
        """The table's versions, newest first: version, timestamp (UTC), operation, and the rows it
        inserted, updated and deleted (for commits of other tools, what their metrics say)."""
        dt = self._latest(table)
        with self.loc.io(f"reading the history of table {table!r}"):
            entries = dt.history()
        return [history_row(h) for h in entries]

    def schema_at(self, table: str, version: int | None = None, as_of=None) -> TableSchema:
        """The dk schema of an earlier version of the table (by number, or the one current at `as_of`)."""
        return self._dk_schema(self._at(table, version, as_of), table)

    def read_version(self, table, schema, columns, where, order, limit, batch_rows, version=None, as_of=None):
        """`read` of an earlier version of the table (by number, or the one current at `as_of`)."""
        dt = self._at(table, version, as_of)
        yield from read_rows(Snapshot(dt, self.loc), schema, columns, where, order, limit, batch_rows, table)

    def next_version(self, table: str) -> int | None:
        """The version of `table` the open transaction's commit makes (Backend.next_version)."""
        if self._current() is None:
            return None
        st = self._touch(table)
        return st.base.version() + 1 if st.base is not None else 0

    def last_version(self, table: str) -> int | None:
        """The version this thread's last commit of `table` created (None when it made none)."""
        return self._last.get((threading.get_ident(), table))

    def _at(self, table: str, version: int | None, as_of) -> DeltaTable:
        check_version(version, as_of)
        return version_at(self._latest(table), self.loc, table, version, as_of)

    def close(self):
        self._schemas.clear()
        self._opened.clear()
