"""DeltaBackend: the catalogue, one call's changes staged and committed at once, and reads."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound
from deltalake.transaction import AddAction, RemoveAction

from ...errors import (
    ConcurrentWriteError,
    InvalidArgumentError,
    StorageError,
    TableNotFoundError,
    UnsupportedDtypeError,
    WriteError,
)
from ...failures import inserted
from ...schema import TableSchema
from ..base import Backend, put_rows
from . import physical as ph
from .checks import Checker, Rules, rules_of
from .history import OP_KEY, ROWS_KEY, SCHEMA_KEY, TOKEN_KEY, history_row, natural_schema
from .location import Location, table_of
from .reading import Snapshot, read_rows

APP_ID = "dataknobs_pd"  # every commit carries a txn action of this app: two concurrent commits always conflict


@dataclass
class _Keys:
    """The keys of one version of a table: where each lives (file and row), and a hash index on them."""

    files: list[str]
    file_of: np.ndarray
    row_of: np.ndarray
    index: pd.Index

    def find(self, keys: pa.Table) -> np.ndarray:
        """Position of each key among the table's (-1 when it is not there)."""
        return self.index.get_indexer(_index(keys))


@dataclass
class _Table:
    """One table as this transaction changes it: the version it started from and what is staged."""

    name: str
    base: DeltaTable | None  # the version read when first touched (None: no table)
    base_schema: TableSchema | None
    schema: TableSchema | None
    fresh: bool = False  # (re)created in this transaction: the commit writes it whole
    dropped: bool = False
    inserts: list = field(default_factory=list)  # stored-form tables of new rows
    updates: list = field(default_factory=list)  # (changes in stored form, positions among _Keys)
    deletes: list = field(default_factory=list)  # positions among _Keys
    modes: tuple = ()
    cache: dict = field(default_factory=dict)  # facts about `base` (keys, files, rules, verdicts): never undone

    def copy(self) -> _Table:
        return replace(self, inserts=list(self.inserts), updates=list(self.updates), deletes=list(self.deletes))


@dataclass
class _Tx:
    owner: int
    tables: dict = field(default_factory=dict)  # name -> _Table


class DeltaBackend(Backend):
    """delta://PATH: one Delta Lake table per table name, in PATH/<name>/ (local or object store)."""

    chunk_cells = 10_000_000  # rows are staged in memory and written at commit: chunks only pace conversion

    def __init__(self, url: str, storage_options: dict | None = None):
        super().__init__(url, storage_options=storage_options)
        self.loc = Location(url, storage_options)
        self.display = self.loc.display
        self._lock = threading.RLock()  # writers of this store take turns, one transaction at a time
        self._tx: _Tx | None = None
        self._schemas: dict = {}  # (uri, version) -> TableSchema
        self._checker = Checker()
        self._last: dict = {}  # (thread, table) -> the version this thread's last commit of it created
        self.loc.probe()

    # -- opening versions -----------------------------------------------------------------------
    def _open(self, table: str, version: int | None = None, as_of=None) -> DeltaTable | None:
        """The table's latest version (or the one asked for); None when there is no table."""
        folder = self.loc.folder(table)
        with self.loc.io(f"reading table {table!r}"):
            if not self.loc.is_table(folder):
                return None
            try:
                dt = DeltaTable(self.loc.uri(table), version=version, storage_options=self.loc.delta_options or None)
            except DeltaTableNotFound:
                return None
            if as_of is not None:
                dt.load_as_version(as_of)
        return dt

    def _dk_schema(self, dt: DeltaTable, table: str) -> TableSchema:
        """The dk schema as of the table's version: the one the last commit of dataknobs-pd carried."""
        key = (dt.table_uri, dt.version())
        found = self._schemas.get(key)
        if found is not None:
            return found
        with self.loc.io(f"reading the history of table {table!r}"):
            for limit in (1, None):
                text = next((h[SCHEMA_KEY] for h in dt.history(limit) if SCHEMA_KEY in h
                             and h.get("version", -1) <= dt.version()), None)
                if text is not None:
                    break
        found = TableSchema.from_json(text, table) if text is not None else natural_schema(dt)
        self._schemas[key] = found
        return found

    # -- catalogue ------------------------------------------------------------------------------
    def tables(self):
        with self.loc.io("listing tables"):
            names = [(n, table_of(n)) for n in self.loc.ls(self.loc.root)]
            return sorted(t for n, t in names if t is not None and self.loc.is_table(f"{self.loc.root}/{n}"))

    def schema(self, table):
        tx = self._current()
        if tx is not None:
            return self._touch(table).schema
        dt = self._open(table)
        return self._dk_schema(dt, table) if dt is not None else None

    def create(self, table, schema):
        _check_columns(schema, table)
        with self.transaction():
            st = self._touch(table)
            st.schema, st.fresh, st.inserts, st.updates, st.deletes = schema, True, [], [], []

    def set_schema(self, table, schema):
        with self.transaction():
            self._touch(table).schema = schema

    def drop(self, table):
        with self.transaction():
            st = self._touch(table)
            st.schema, st.fresh, st.dropped, st.inserts, st.updates, st.deletes = None, False, True, [], [], []

    # -- transactions ---------------------------------------------------------------------------
    def _current(self) -> _Tx | None:
        tx = self._tx
        return tx if tx is not None and tx.owner == threading.get_ident() else None

    def _touch(self, table: str) -> _Table:
        """The table as this transaction sees it; its latest version is read on first touch."""
        tx = self._current()
        st = tx.tables.get(table)
        if st is None:
            dt = self._open(table)
            schema = self._dk_schema(dt, table) if dt is not None else None
            st = tx.tables[table] = _Table(table, dt, schema, schema)
        return st

    def claim(self, table):
        # No lock across processes: every commit is checked by Delta against the versions committed
        # since this one was read (see _commit), and the engine runs a call that lost the race again.
        self._touch(table)

    @contextmanager
    def transaction(self):
        with self._lock:
            if self._current() is not None:
                with self.savepoint():
                    yield
                return
            tx = self._tx = _Tx(threading.get_ident())
            try:
                yield
                for st in tx.tables.values():
                    self._commit(st)
            finally:
                self._tx = None

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

    # -- writing --------------------------------------------------------------------------------
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
            known = self._known(st, data) is not None  # rows checked already (a refusal raises here, first)
            stored = ph.to_stored(data, schema)
            n = data.num_rows
            if not schema.key:
                self._check(st, data, stored, np.arange(n), np.array([], dtype=np.int64), None)
                st.inserts.append(stored)
                st.modes += (mode,)
                return None
            pos = self._keys(st).find(stored.select(ph.stored_names(schema, schema.key))) if self._has_rows(st) \
                else np.full(n, -1, dtype=np.int64)
            existed = pos >= 0
            new = inserted(data, schema, mode, existed)
            changed = np.flatnonzero(existed) if mode != "insert" else np.array([], dtype=np.int64)
            if not known:
                self._check(st, data, stored, new, changed, pos)
            if len(changed):
                st.updates.append((stored.take(changed), pos[changed]))
            if len(new):
                st.inserts.append(stored if len(new) == n else stored.take(new))
            st.modes += (mode,)
            return existed if existed.any() else None

    def delete(self, table, keys, schema):
        with self.transaction():
            st = self._existing(table)
            stored = ph.to_stored(keys, schema)
            if not self._has_rows(st):
                return np.zeros(keys.num_rows, dtype=bool)
            pos = self._keys(st).find(stored.select(ph.stored_names(schema, schema.key)))
            existed = pos >= 0
            st.deletes.append(pos[existed])
            st.modes += ("delete",)
            return existed

    def _existing(self, table: str) -> _Table:
        st = self._touch(table)
        if st.schema is None:
            raise TableNotFoundError(f"no table {table!r} in {self.display}")
        return st

    @staticmethod
    def _has_rows(st: _Table) -> bool:
        """Whether the rows of the version read count (not when the table is being created or replaced)."""
        return st.base is not None and not st.fresh and not st.dropped

    def _keys(self, st: _Table) -> _Keys:
        """Every key of the version read, with its file and row (read once per transaction)."""
        keys = st.cache.get("keys")
        if keys is None:
            names = ph.stored_names(st.base_schema, st.base_schema.key)
            snap = self._snapshot(st)
            parts, files, file_of = [], [], []
            with self.loc.io(f"reading the keys of table {st.name!r}"):
                for path, fragment in snap.fragments():
                    t = fragment.to_table(columns=names, schema=snap.dataset_schema)
                    parts.append(t)
                    file_of.append(np.full(t.num_rows, len(files), dtype=np.int32))
                    files.append(path)
            table = pa.concat_tables(parts) if parts else snap.dataset_schema.empty_table().select(names)
            index = _index(table)
            if not index.is_unique:
                raise StorageError(f"table {st.name!r} in {self.display} holds a key more than once (written by "
                                   f"another tool?); keyed writes need unique keys")
            row_of = np.concatenate([np.arange(len(f)) for f in file_of]) if file_of else np.array([], np.int64)
            keys = st.cache["keys"] = _Keys(files, np.concatenate(file_of) if file_of else np.array([], np.int32),
                                            row_of, index)
        return keys

    def _file(self, st: _Table, path: str) -> pa.Table:
        """A whole data file of the version read, in the table's stored columns (read once per transaction)."""
        files = st.cache.setdefault("files", {})
        if path not in files:
            with self.loc.io(f"reading table {st.name!r}"):
                files[path] = _complete(self._snapshot(st).read_file(path), ph.stored_schema(st.schema))
        return files[path]

    def _snapshot(self, st: _Table) -> Snapshot:
        snap = st.cache.get("snapshot")
        if snap is None:
            snap = st.cache["snapshot"] = Snapshot(st.base, self.loc)
        return snap

    # -- the table's rules, checked before the commit ---------------------------------------------------
    def _rules(self, st: _Table) -> Rules:
        rules = st.cache.get("rules")
        if rules is None:
            if st.base is None or st.fresh or st.dropped:
                rules = Rules({}, ())
            else:
                with self.loc.io(f"reading table {st.name!r}"):
                    config = st.base.metadata().configuration
                    fields = list(pa.schema(st.base.schema().to_arrow()))
                dk_required = {c.name for c in st.base_schema.columns if not c.nullable}
                rules = rules_of(config, fields, dk_required)
            st.cache["rules"] = rules
        return rules

    def _check(self, st: _Table, data: pa.Table, stored: pa.Table, new: np.ndarray, changed: np.ndarray,
               pos) -> None:
        """Raise WriteError when a row to insert (`new`) or to update (`changed`) breaks a rule of the table.

        The engine then halves the chunk until the rows at fault stand alone. The verdicts are kept by
        key, so that the halves are answered without evaluating again (see _known)."""
        rules = self._rules(st)
        if not rules:
            return
        full = ph.stored_schema(st.schema)
        parts = []
        if len(new):
            parts.append(_complete(stored.take(new), full))
        if len(changed):
            parts.append(_complete(self._with_stored(st, stored.take(changed), pos[changed], rules), full))
        candidates = pa.concat_tables(parts) if parts else full.empty_table()
        found = self._checker.violations(candidates, rules, st.name)
        verdicts = np.full(data.num_rows, None, dtype=object)
        for i, row in enumerate(np.concatenate([new, changed]).astype(np.int64)):
            verdicts[row] = found.get(i)
        if st.schema.key:
            st.cache["checked"] = (_index(data.select(st.schema.key)), verdicts)
        _refuse(verdicts)

    @staticmethod
    def _known(st: _Table, data: pa.Table):
        """The verdicts on these rows when all were checked before (raising WriteError if one breaks a rule)."""
        checked = st.cache.get("checked")  # (key index, verdicts) of the last rows checked against the rules
        if not st.schema.key or checked is None:
            return None
        at = checked[0].get_indexer(_index(data.select(st.schema.key)))
        if (at < 0).any():
            return None
        verdicts = checked[1][at]
        _refuse(verdicts)
        return verdicts

    def _with_stored(self, st: _Table, changes: pa.Table, pos: np.ndarray, rules: Rules) -> pa.Table:
        """Rows being updated, with the stored values of the columns a rule names that the call leaves alone."""
        stored_names = ph.stored_schema(st.schema).names
        missing = [c for c in rules.columns(stored_names) + list(rules.not_null) if c not in changes.column_names]
        if not missing:
            return changes
        keys = self._keys(st)
        cols = {c: [] for c in missing}
        order = []
        for f in np.unique(keys.file_of[pos]):
            sel = np.flatnonzero(keys.file_of[pos] == f)
            old = self._file(st, keys.files[f]).take(keys.row_of[pos[sel]])
            for c in missing:
                cols[c].append(old.column(c))
            order.append(sel)
        back = np.argsort(np.concatenate(order)) if order else np.array([], dtype=np.int64)
        for c in missing:
            changes = changes.append_column(c, pa.chunked_array([x for a in cols[c] for x in a.chunks],
                                                                type=ph.stored_schema(st.schema).field(c).type).take(back))
        return changes

    # -- the commit --------------------------------------------------------------------------------
    def _commit(self, st: _Table) -> None:
        """Make this transaction's changes of one table ONE Delta commit (or remove a dropped table)."""
        if st.dropped and not st.fresh:
            if st.base is not None:
                with self.loc.io(f"dropping table {st.name!r}"):
                    self.loc.remove(self.loc.folder(st.name))
            return
        if not st.fresh and not (st.inserts or st.updates or st.deletes) and st.schema == st.base_schema:
            return
        token = uuid.uuid4().hex
        counts = {"inserted": sum(t.num_rows for t in st.inserts), "updated": sum(len(p) for _, p in st.updates),
                  "deleted": int(sum(len(np.unique(p)) for p in st.deletes))}
        props = CommitProperties(
            custom_metadata={SCHEMA_KEY: st.schema.to_json(), OP_KEY: _operation(st), ROWS_KEY: counts,
                             TOKEN_KEY: token},
            app_transactions=[Transaction(APP_ID, st.base.version() + 1 if st.base is not None else 0)])
        full = ph.stored_schema(st.schema)
        stage = self.loc.new_stage() if (st.updates or st.deletes) and not st.fresh else None
        try:
            with self.loc.io(f"writing table {st.name!r}"):
                if st.fresh:
                    data = self._new_rows(st, full, 0)
                    if st.base is None:
                        write_deltalake(self.loc.uri(st.name), data, mode="error", commit_properties=props,
                                        storage_options=self.loc.delta_options or None)
                    else:
                        write_deltalake(st.base, data, mode="overwrite", schema_mode="overwrite",
                                        commit_properties=props)
                elif not (st.updates or st.deletes):
                    evolve = "merge" if full != pa.schema(st.base.schema().to_arrow()) else None
                    write_deltalake(st.base, self._new_rows(st, full, self._next_seq(st)), mode="append",
                                    schema_mode=evolve, commit_properties=props)
                else:
                    self._rewrite(st, full, props, stage)
        except StorageError as e:
            if stage:
                self.loc.remove_quietly(f"{self.loc.folder(st.name)}/{stage}")
            cause = e.__cause__
            if isinstance(cause, CommitFailedError) or (
                    isinstance(cause, DeltaError) and "already exists" in str(cause).lower()):
                raise ConcurrentWriteError(f"table {st.name!r} in {self.display} was changed by another writer "
                                           f"during this call; nothing was written") from cause
            raise
        self._after_commit(st, token)

    def _new_rows(self, st: _Table, full: pa.Schema, first_seq: int) -> pa.Table:
        """The staged new rows, every column of the table, sorted by key (or numbered in insertion order)."""
        data = pa.concat_tables([_complete(t, full) for t in st.inserts]) if st.inserts else full.empty_table()
        data = data.combine_chunks()  # delta-rs writes one batch faster than many small ones
        if st.schema.key:
            key = ph.stored_names(st.schema, st.schema.key)
            if not _ascending(data, key):
                data = data.sort_by([(k, "ascending") for k in key])
        else:
            seq = pa.array(np.arange(first_seq, first_seq + data.num_rows, dtype=np.int64))
            data = data.set_column(data.schema.get_field_index(ph.SEQ), full.field(ph.SEQ), seq)
        return data

    def _next_seq(self, st: _Table) -> int:
        """The insertion number after the last row of a table without a key."""
        if st.schema.key or st.base is None:
            return 0
        top = self._snapshot(st).max_of(ph.SEQ)
        return 0 if top is None else top + 1

    def _rewrite(self, st: _Table, full: pa.Schema, props, stage: str) -> None:
        """Updates and deletes: the data files holding touched rows are written anew, with the new rows,
        into a stage folder of the table (delta-rs writes them and their statistics), and ONE commit adds
        them and removes the files they replace."""
        keys = self._keys(st)
        touched: dict[int, list] = {}
        for changes, pos in st.updates:
            for f in np.unique(keys.file_of[pos]):
                sel = np.flatnonzero(keys.file_of[pos] == f)
                touched.setdefault(int(f), []).append(("update", changes.take(sel), keys.row_of[pos[sel]]))
        for pos in st.deletes:
            for f in np.unique(keys.file_of[pos]):
                touched.setdefault(int(f), []).append(("delete", None, keys.row_of[pos[keys.file_of[pos] == f]]))
        parts = []
        for f, edits in sorted(touched.items()):
            rows = self._file(st, keys.files[f])
            gone = np.zeros(rows.num_rows, dtype=bool)
            same: dict[tuple, list] = {}  # updates of the same columns go in one put_rows (later ones win)
            for kind, changes, at in edits:
                if kind == "update":
                    same.setdefault(tuple(changes.column_names), []).append((changes, at))
                else:
                    gone[at] = True
            for group in same.values():
                rows = put_rows(rows, pa.concat_tables([c for c, _ in group]), np.concatenate([a for _, a in group]))
            parts.append(rows.filter(pa.array(~gone)) if gone.any() else rows)
        if st.inserts:
            parts.append(self._new_rows(st, full, 0))
        data = (pa.concat_tables(parts) if parts else full.empty_table()).combine_chunks()
        folder = self.loc.folder(st.name)
        if data.num_rows:
            write_deltalake(self.loc.uri_of(f"{folder}/{stage}"), data, mode="error",
                            storage_options=self.loc.delta_options or None)
            adds = self.loc.harvest(folder, stage)
        else:
            adds = []
        now = int(time.time() * 1000)
        sizes = self._snapshot(st).sizes()
        actions = [AddAction(a["path"], a["size"], {}, a["modificationTime"], True, a.get("stats") or "")
                   for a in adds]
        actions += [RemoveAction(keys.files[f], True, now, sizes.get(keys.files[f]), {}) for f in touched]
        st.base.create_write_transaction(actions, "append", full, commit_properties=props)

    def _after_commit(self, st: _Table, token: str) -> None:
        """Note the version the commit became (for the batch report and history)."""
        dt = self._open(st.name)
        if dt is None:
            return
        version = None
        with self.loc.io(f"reading the history of table {st.name!r}"):
            for h in dt.history(20):
                if h.get(TOKEN_KEY) == token:
                    version = h["version"]
                    break
        if version is not None:
            self._last[(threading.get_ident(), st.name)] = version
            self._schemas[(dt.table_uri, version)] = st.schema

    # -- reading --------------------------------------------------------------------------------
    def read(self, table, schema, columns, where, order, limit, batch_rows):
        tx = self._current()
        dt = self._touch(table).base if tx is not None else self._open(table)
        if dt is None:
            raise TableNotFoundError(f"no table {table!r} in {self.display}")
        yield from read_rows(Snapshot(dt, self.loc), schema, columns, where, order, limit, batch_rows, table)

    # -- history: the versions of a table and reading one of them ---------------------------------------
    def history(self, table: str) -> list[dict]:
        """The table's versions, newest first: version, timestamp (UTC), operation, and the rows it
        inserted, updated and deleted (for commits of other tools, what their metrics say)."""
        dt = self._open(table)
        if dt is None:
            raise TableNotFoundError(f"no table {table!r} in {self.display}")
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

    def last_version(self, table: str) -> int | None:
        """The version this thread's last commit of `table` created (None when it made none)."""
        return self._last.get((threading.get_ident(), table))

    def _at(self, table: str, version: int | None, as_of) -> DeltaTable:
        if version is not None and as_of is not None:
            raise InvalidArgumentError("pass version= or as_of=, not both")
        if version is not None and (isinstance(version, bool) or not isinstance(version, (int, np.integer))
                                    or version < 0):
            raise InvalidArgumentError(f"version= takes a version number (an int >= 0), got {version!r}")
        latest = self._open(table)
        if latest is None:
            raise TableNotFoundError(f"no table {table!r} in {self.display}")
        if version is not None and version > latest.version():
            raise InvalidArgumentError(f"table {table!r} has versions up to {latest.version()}; "
                                       f"version={version} does not exist")
        if version is None and as_of is None:
            return latest
        with self.loc.io(f"reading table {table!r}"):
            if as_of is None:
                return DeltaTable(self.loc.uri(table), version=int(version),
                                  storage_options=self.loc.delta_options or None)
            try:
                when = pd.Timestamp(as_of)
            except (TypeError, ValueError) as e:
                raise InvalidArgumentError(f"as_of= takes a timestamp, got {as_of!r}") from e
            when = when.tz_localize("UTC") if when.tz is None else when.tz_convert("UTC")
            return self._as_of(table, when)

    def _as_of(self, table: str, when: pd.Timestamp) -> DeltaTable:
        """The version current at `when` (naive means UTC): the last one committed at or before it."""
        dt = DeltaTable(self.loc.uri(table), storage_options=self.loc.delta_options or None)
        stamps = {h["version"]: h["timestamp"] for h in dt.history()}
        ms = when.value // 1_000_000
        before = [v for v, t in stamps.items() if t <= ms]
        if not before:
            first = pd.Timestamp(min(stamps.values()), unit="ms", tz="UTC")
            raise InvalidArgumentError(f"table {table!r} did not exist yet at {when} (its first version is of {first})")
        dt.load_as_version(max(before))
        return dt

    def close(self):
        self._schemas.clear()


# -- helpers -------------------------------------------------------------------------------------
def _index(keys: pa.Table) -> pd.Index:
    """A hash index over key columns (one or several)."""
    arrays = [c.to_numpy() for c in keys.columns]
    if len(arrays) == 1:
        return pd.Index(arrays[0])
    return pd.MultiIndex.from_arrays(arrays)


def _ascending(t: pa.Table, key: list[str]) -> bool:
    """Whether rows are already in the order of a one-column key (frames are often saved sorted)."""
    if t.num_rows < 2:
        return True
    if len(key) != 1:
        return False
    col = t.column(key[0])
    try:
        return bool(pc.all(pc.less(col.slice(0, t.num_rows - 1), col.slice(1))).as_py())
    except pa.ArrowNotImplementedError:
        return False


def _refuse(verdicts: np.ndarray) -> None:
    """WriteError for the first row that breaks a rule (the engine narrows a chunk down to single rows)."""
    bad = np.flatnonzero(verdicts != None)
    if len(bad):
        v = verdicts[bad[0]]
        n = len(verdicts)
        raise WriteError(f"{v.why} ({len(bad)} of {n} rows)" if n > 1 else v.why, v.error, v.code)


def _complete(t: pa.Table, full: pa.Schema) -> pa.Table:
    """`t` with every column of `full`, in its order and types (nulls for the columns it lacks)."""
    cols = []
    for f in full:
        if f.name in t.column_names:
            c = t.column(f.name)
            cols.append(c if c.type == f.type else c.cast(f.type))
        else:
            cols.append(pa.nulls(t.num_rows, f.type))
    return pa.table(cols, schema=full)


def _operation(st: _Table) -> str:
    if st.fresh:
        return "replace" if st.base is not None else "create"
    if st.deletes and not (st.inserts or st.updates):
        return "delete"
    modes = set(st.modes)
    if "upsert" in modes:
        return "upsert"
    if "update" in modes:
        return "update"
    return "insert" if st.inserts else "set_schema"


def _check_columns(schema: TableSchema, table: str) -> None:
    """What Delta cannot keep: names equal but for case, decimals past 38 digits of scale."""
    seen: dict[str, str] = {}
    for c in schema.columns:
        other = seen.setdefault(c.name.casefold(), c.name)
        if other != c.name:
            raise InvalidArgumentError(f"columns {other!r} and {c.name!r} of table {table!r} differ only by case, "
                                       f"which Delta Lake cannot keep apart; rename one of them")
        if pa.types.is_decimal(c.arrow) and c.arrow.scale > 38:
            raise UnsupportedDtypeError(f"column {c.name!r}: decimals with {c.arrow.scale} digits after the point; "
                                        f"Delta Lake keeps at most 38")
