"""One call's changes of a table, staged in memory until its commit: the version it started from, the rows
to insert, update and delete, and facts about that version (its keys, its files) read once per transaction."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable

from ...errors import InternalError, StorageError
from ...schema import TableSchema
from . import physical as ph
from .location import Location
from .reading import Snapshot


@dataclass
class Keys:
    """The keys of one version of a table: where each lives (file and row), and a hash index on them."""

    files: list[str]
    file_of: np.ndarray
    row_of: np.ndarray
    index: pd.Index

    def find(self, keys: pa.Table) -> np.ndarray:
        """Position of each key among the table's (-1 when it is not there)."""
        return self.index.get_indexer(key_index(keys))


@dataclass
class Staged:
    """One table as a transaction changes it: the version it started from and what is staged."""

    name: str
    loc: Location
    base: DeltaTable | None  # the version read when first touched (None: no table)
    base_schema: TableSchema | None
    schema: TableSchema | None
    fresh: bool = False  # (re)created in this transaction: the commit writes it whole
    dropped: bool = False
    inserts: list = field(default_factory=list)  # stored-form tables of new rows
    updates: list = field(default_factory=list)  # (changes in stored form, positions among Keys)
    deletes: list = field(default_factory=list)  # positions among Keys
    modes: tuple = ()
    adds: list | None = None  # the files of a new table, written apart (see DeltaBackend.swap_in): add actions
    ordered: bool = False  # a keyless table that keeps its rows in insertion order by its files (order.py)
    cache: dict = field(default_factory=dict)  # facts about `base` (keys, files, rules, verdicts): never undone
    owner: str | None = None  # a companion committed with its table: that table (its commit info says so)
    companions: dict | None = None  # a table committed after its companions: the versions of them that are its
    latest: DeltaTable | None = None  # a companion whose latest version its table does not name: that version

    def copy(self) -> Staged:
        return replace(self, inserts=list(self.inserts), updates=list(self.updates), deletes=list(self.deletes))

    def restart(self, schema: TableSchema | None, fresh: bool, dropped: bool) -> None:
        """Forget what is staged: the table is being (re)created, or dropped."""
        self.schema, self.fresh, self.dropped = schema, fresh, dropped
        self.inserts, self.updates, self.deletes, self.adds = [], [], [], None
        self.ordered = schema is not None and not schema.key

    @property
    def own_key(self) -> list[str] | None:
        """The table's own key; a call may match the rows of a keyless table by a key= of its own (in `schema`)."""
        if self.fresh or self.base_schema is None:
            return self.schema.key if self.schema is not None else None
        return self.base_schema.key

    def table_schema(self) -> TableSchema:
        """The dk schema the commit records: the call's, with the table's own key."""
        if self.schema is None:
            raise InternalError("a table that is not dropped has a schema")
        schema, key = self.schema, self.own_key
        if schema.key != key:
            schema = replace(schema, key=key)
        if getattr(schema, "loose", False):  # a call's key= is never the table's
            unset: dict[str, Any] = {"loose": False}
            schema = replace(schema, **unset)
        return schema

    @property
    def seq(self) -> bool:
        """Whether the table numbers its rows in a `_dk_seq` column (keyless tables of earlier versions)."""
        if not self.has_rows or self.base is None:
            return False
        found = self.cache.get("seq")
        if found is None:
            found = self.cache["seq"] = ph.SEQ in pa.schema(self.base.schema().to_arrow()).names
        return found

    def full(self) -> pa.Schema:
        """The stored columns of the table as this transaction leaves it."""
        return ph.stored_schema(self.table_schema(), self.seq)

    @property
    def partitioned(self) -> bool:
        """Whether the version read is partitioned (a table of another tool: dataknobs-pd makes none)."""
        if self.base is None:
            return False
        found = self.cache.get("partitioned")
        if found is None:
            found = self.cache["partitioned"] = bool(self.base.metadata().partition_columns)
        return found

    @property
    def has_rows(self) -> bool:
        """Whether the rows of the version read count (not when the table is being created or replaced)."""
        return self.base is not None and not self.fresh and not self.dropped

    @property
    def changed(self) -> bool:
        """Whether the commit has anything to write."""
        if self.fresh or self.inserts or self.updates or self.deletes or self.companions is not None:
            return True
        return self.schema is not None and self.table_schema() != self.base_schema

    def grows(self, full: pa.Schema) -> bool:
        """Whether the stored columns `full` include some the version read lacks (columns were added)."""
        if self.base is None:
            raise InternalError("only a table that exists grows")
        have = set(pa.schema(self.base.schema().to_arrow()).names)
        return any(n not in have for n in full.names)

    def snapshot(self) -> Snapshot:
        snap = self.cache.get("snapshot")
        if snap is None:
            if self.base is None:
                raise InternalError("only a table that exists has a snapshot")
            snap = self.cache["snapshot"] = Snapshot(self.base, self.loc)
        return snap

    def keys(self) -> Keys:
        """Every key of the version read, with its file and row (read once per transaction)."""
        keys = self.cache.get("keys")
        if keys is None:
            if self.schema is None:
                raise InternalError("only a table that exists has keys")
            names = ph.stored_key(self.schema)  # the table's key, or the key= a call matches its rows by
            snap = self.snapshot()
            parts: list[pa.Table] = []
            files: list[str] = []
            file_of: list[np.ndarray] = []
            with self.loc.io(f"reading the keys of table {self.name!r}"):
                for path, fragment in snap.fragments():
                    t = fragment.to_table(columns=names, schema=snap.dataset_schema)
                    parts.append(t)
                    file_of.append(np.full(t.num_rows, len(files), dtype=np.int32))
                    files.append(path)
            table = pa.concat_tables(parts) if parts else snap.dataset_schema.empty_table().select(names)
            index = key_index(table)
            row_of = np.concatenate([np.arange(len(f)) for f in file_of]) if file_of else np.array([], np.int64)
            file_at = np.concatenate(file_of) if file_of else np.array([], np.int32)
            if not index.is_unique:
                if self.own_key:
                    raise StorageError(
                        f"table {self.name!r} in {self.loc.display} holds a key more than once (written "
                        f"by another tool?); keyed writes need unique keys"
                    )
                # key= on a table without a key: a value held by several rows matches none of them here (the
                # engine fails the rows sent with it before they reach the store)
                once = ~index.duplicated(keep=False)
                index, file_at, row_of = index[once], file_at[once], row_of[once]
            keys = self.cache["keys"] = Keys(files, file_at, row_of, index)
        return keys

    def find(self, stored: pa.Table) -> np.ndarray:
        """Position of each row's key (`stored`: rows in stored form) among the table's, -1 when not there."""
        if not self.has_rows:
            return np.full(stored.num_rows, -1, dtype=np.int64)
        if self.schema is None:
            raise InternalError("rows are found in a table that exists")
        return self.keys().find(stored.select(ph.stored_key(self.schema)))

    def file(self, path: str) -> pa.Table:
        """A whole data file of the version read, with every stored column of the table as it is now
        (the file is read once per transaction; columns added since read as nulls)."""
        if self.schema is None:
            raise InternalError("the files of a table that exists")
        files = self.cache.setdefault("files", {})
        if path not in files:
            with self.loc.io(f"reading table {self.name!r}"):
                files[path] = self.snapshot().read_file(path)
        return complete(files[path], self.full())

    def rows_at(self, pos: np.ndarray, columns: list[str]) -> pa.Table:
        """The stored rows at positions `pos` among the keys, in that order, with `columns`."""
        if self.schema is None:
            raise InternalError("the rows of a table that exists")
        keys = self.keys()
        parts, order = [], []
        for f in np.unique(keys.file_of[pos]):
            sel = np.flatnonzero(keys.file_of[pos] == f)
            parts.append(self.file(keys.files[f]).select(columns).take(keys.row_of[pos[sel]]))
            order.append(sel)
        if not parts:
            return self.full().empty_table().select(columns)
        return pa.concat_tables(parts).take(np.argsort(np.concatenate(order)))

    def counts(self) -> dict:
        return {
            "inserted": sum(t.num_rows for t in self.inserts),
            "updated": sum(len(p) for _, p in self.updates),
            "deleted": int(sum(len(np.unique(p)) for p in self.deletes)),
        }

    def operation(self) -> str:
        """What the commit does, as history names it."""
        if self.fresh:
            return "replace" if self.base is not None else "create"
        if self.deletes and not (self.inserts or self.updates):
            return "delete"
        modes = set(self.modes)
        if "upsert" in modes:
            return "upsert"
        if "update" in modes:
            return "update"
        return "insert" if self.inserts else "set_schema"


@dataclass
class Tx:
    """The tables one thread's transaction has touched, by name."""

    owner: int = field(default_factory=threading.get_ident)
    tables: dict = field(default_factory=dict)  # name -> Staged
    # what to do once the commits are done (see DeltaBackend.open_aside, capabilities.ParallelLoad)
    after: dict = field(default_factory=dict)


def key_index(keys: pa.Table) -> pd.Index:
    """A hash index over key columns (one or several)."""
    arrays = [c.to_numpy() for c in keys.columns]
    if len(arrays) == 1:
        return pd.Index(arrays[0])
    return pd.MultiIndex.from_arrays(arrays)


def complete(t: pa.Table, full: pa.Schema) -> pa.Table:
    """`t` with every column of `full`, in its order and types (nulls for the columns it lacks)."""
    cols = []
    for f in full:
        if f.name in t.column_names:
            c = t.column(f.name)
            cols.append(c if c.type == f.type else c.cast(f.type))
        else:
            cols.append(pa.nulls(t.num_rows, f.type))
    return pa.table(cols, schema=full)
