"""Writing a plain table (plain.py) in its own layout: rows added as new files (one per hive partition) or after
a single file's own, the files holding the keys an update or delete touches rewritten, columns added to a
single Parquet file, the table replaced in place; every file staged under a hidden name, and published (renamed
into place) at the commit once the table's files are found unchanged."""

from __future__ import annotations

import posixpath
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ...errors import ConcurrentWriteError, SchemaMismatchError, WriteError
from ...failures import RowError, inserted
from ...schema import Column, TableSchema
from ..base import put_rows
from .foreign import (
    HIVE_NULL,
    PlainParquet,
    as_stored,
    columns_of,
    conform_to,
    physical,
    stored_type,
    value_types,
)
from .plain import STAGED, File, Plain, PlainTables, stat
from .plain_reading import dataset

NEW = "part-dk-"  # the files a call adds to a folder
_STALE = 3600.0  # seconds after which a staged file of another writer is a crashed writer's (object stores)


class PlainWrites:
    """The writes into the plain tables of one store's folder, staged in a transaction and published at its commit."""

    def __init__(self, tables: PlainTables):
        self.tables = tables
        self.storage = tables.storage

    def write(self, tx, st: Plain, data: pa.Table, schema: TableSchema, mode: str) -> tuple[Plain, np.ndarray | None]:
        """Backend.write into a plain table: its new state and which rows' keys it held."""
        n = data.num_rows
        existed = np.zeros(n, dtype=bool)
        st = replace(st, schema=replace(schema, key=None))
        if mode != "insert" and schema.key:
            hits = self._locate(st, data, schema.key)
            existed[[i for _, rows, _ in hits for i in rows]] = True
            st = self._rewrite(tx, st, hits, data, schema, delete=False)
        new = inserted(data, schema, mode, existed)
        if len(new):
            add = data if len(new) == n else data.take(pa.array(new))
            st = self._add(tx, st, add, schema)
        return st, existed if existed.any() else None

    def delete(self, tx, st: Plain, keys: pa.Table, schema: TableSchema) -> tuple[Plain, np.ndarray]:
        key = schema.key or []
        hits = self._locate(st, keys, key)
        found = np.zeros(keys.num_rows, dtype=bool)
        found[[i for _, rows, _ in hits for i in rows]] = True
        return self._rewrite(tx, st, hits, keys, schema, delete=True), found

    def add_columns(self, st: Plain, columns: list[Column]) -> Plain:
        """New columns: a single Parquet file is rewritten with them (the call rewrites it anyway)."""
        if not st.layout.single or not isinstance(self.tables.format, PlainParquet):
            what = "a folder of files" if not st.layout.single else "a CSV file"
            raise SchemaMismatchError(
                f"table {st.name!r} in {self.storage.display} is {what} another tool wrote, which dataknobs-pd "
                f"adds no column to (its other readers would not all see it); write the table again "
                f"(if_exists='replace') to change its columns"
            )
        fields = [pa.field(c.name, stored_type(c.arrow)) for c in columns]
        physical = pa.schema([*st.layout.physical, *fields], metadata=st.layout.physical.metadata)
        return replace(st, layout=replace(st.layout, physical=physical))

    def recreate(self, tx, base: Plain, schema: TableSchema) -> Plain:
        """The table `base` replaced by an empty one of `schema`, in the same place and layout (the partition
        columns the new one still has)."""
        from ...types import TypeMapper

        frame = TypeMapper().to_pandas(schema.arrow_schema.empty_table(), schema)
        physical = pa.Schema.from_pandas(frame)  # the columns and pandas metadata to_parquet would write ...
        fields = []
        for f in physical:  # ... in the types of the table's columns (an empty frame says little about objects)
            col = schema.get(f.name)
            t = f.type if col is None else stored_type(col.arrow)
            if col is not None and pa.types.is_dictionary(f.type):
                t = pa.dictionary(f.type.index_type, t, f.type.ordered)
            fields.append(f.with_type(t))
        physical = pa.schema(fields, metadata=physical.metadata)
        parts = pa.schema([physical.field(p) for p in base.layout.partitions.names if p in physical.names])
        parts = value_types(pa.schema([f.with_type(stored_type(f.type)) for f in parts]))
        header = tuple(n for n in physical.names if n not in parts.names) if base.layout.header else ()
        layout = replace(base.layout, physical=physical, partitions=parts, header=header)
        st = Plain(base.name, schema, layout, (), base.seen)
        if layout.single:  # the file stays, empty until rows come
            st = replace(st, files=(self._put(tx, st, base.layout.path, "", layout.file_schema().empty_table()),))
        return st

    def _locate(self, st: Plain, data: pa.Table, key: list[str]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """The rows of `data` whose key the table holds, by file: (file, rows of `data`, rows of the file).

        A key the table holds more than once matches no one row: WriteError (the engine narrows it down to its
        row)."""
        found = dataset(self.tables, st)
        types = value_types(found.schema)
        missing = [k for k in key if k not in types.names]
        if missing:
            raise SchemaMismatchError(f"table {st.name!r} has no column(s) {missing} to match rows by")
        want = pa.table(
            [as_stored(data.column(k), types.field(k).type, k) for k in key] + [pa.array(np.arange(data.num_rows))],
            names=[*key, "__dk_want"],
        )
        pieces = []
        for i, frag in enumerate(found.get_fragments()):
            have = frag.to_table(schema=found.schema, columns=key)
            have = pa.table(
                [as_stored(have.column(k), types.field(k).type, k) for k in key]
                + [pa.array(np.full(have.num_rows, i)), pa.array(np.arange(have.num_rows))],
                names=[*key, "__dk_file", "__dk_row"],
            )
            pieces.append(have)
        if not pieces:
            return []
        joined = want.join(pa.concat_tables(pieces), keys=key, join_type="inner", use_threads=False)
        rows = joined.column("__dk_want").to_numpy()
        counts = np.bincount(rows, minlength=data.num_rows)
        if (counts > 1).any():
            i = int(np.flatnonzero(counts > 1)[0])
            value = ", ".join(f"{k}={data.column(k)[i].as_py()!r}" for k in key)
            raise WriteError(
                f"key {value} matches {counts[i]} rows of table {st.name!r}, not one: the rows of a table "
                f"without a key of its own are matched by key= only where it names one row",
                RowError.WriteError,
            )
        files = joined.column("__dk_file").to_numpy()
        at = joined.column("__dk_row").to_numpy()
        return [(int(f), rows[files == f], at[files == f]) for f in np.unique(files)]

    def _rewrite(self, tx, st: Plain, hits, data: pa.Table, schema: TableSchema, delete: bool) -> Plain:
        """Rewrite the files holding `hits`: their rows deleted, or updated with the rows of `data`."""
        fmt, layout = self.tables.fmt(), st.layout
        files: list[File | None] = list(st.files)
        moved = []
        parts = layout.partitions.names
        for i, rows, at in hits:
            f = files[i]
            with self.storage.io(f"reading table {st.name!r}"):
                whole = fmt.read_file(self.storage, f.at, layout)
            meta = whole.schema.metadata  # the file's own (pandas') description, kept
            whole = conform_to(whole, layout.file_schema())
            if delete:
                keep = np.ones(whole.num_rows, dtype=bool)
                keep[at] = False
            else:
                changes = data.take(pa.array(rows))
                whole = put_rows(whole, columns_of(changes, whole.schema), at)
                keep = np.ones(whole.num_rows, dtype=bool)
                here = _partition_values(f.part, layout.partitions)
                away = _leaving(changes, here, layout.partitions)
                if away.any():  # rows whose partition columns changed go to their new partition's folder
                    rest = whole.take(pa.array(at[away]))
                    for p in parts:
                        t = layout.partitions.field(p).type
                        if p in changes.column_names:
                            values = as_stored(changes.column(p).filter(pa.array(away)), t, p)
                        else:
                            values = pa.array([here.get(p)] * rest.num_rows, type=t)
                        rest = rest.append_column(layout.partitions.field(p), values)
                    moved.append(rest)
                    keep[at[away]] = False
            whole = whole.filter(pa.array(keep))
            if whole.num_rows or layout.single:
                files[i] = self._put(tx, st, f.path, f.part, whole, meta)
            else:
                files[i] = None  # a file left without rows goes at the commit
        st = replace(st, files=tuple(f for f in files if f is not None))
        for rows_moved in moved:
            st = self._add(tx, st, rows_moved, schema)
        return st

    def _add(self, tx, st: Plain, data: pa.Table, schema: TableSchema) -> Plain:
        """New rows: after the single file's own, or as new files, one per partition."""
        fmt, layout = self.tables.fmt(), st.layout
        target = layout.file_schema()
        if layout.single:
            old, rows = st.files[0], physical(data, target)
            staged = self._stage(tx, st, old.path, "", lambda out: fmt.append(out, self.storage, old.at, rows, layout))
            return replace(st, files=(staged,))
        files = list(st.files)
        for part, rows in _by_partition(data, layout.partitions):
            name = f"{layout.path}/{part + '/' if part else ''}{NEW}{uuid.uuid4().hex[:24]}{fmt.suffix}"
            files.append(self._put(tx, st, name, part, physical(rows, target)))
        return replace(st, files=tuple(files))

    def _put(self, tx, st: Plain, path: str, part: str, rows: pa.Table, metadata: dict | None = None) -> File:
        """`rows` (the file's columns) as the new content of `path`: with the key-value `metadata` of the file
        they replace, else the table's (its first file's)."""
        fmt, schema = self.tables.fmt(), st.layout.file_schema()
        if metadata:
            schema = schema.with_metadata(metadata)
        return self._stage(tx, st, path, part, lambda out: fmt.write(out, conform_to(rows, schema), st.layout))

    def _stage(self, tx, st: Plain, path: str, part: str, write: Callable) -> File:
        """The new content of `path`, written by `write(file)` under a hidden name until the commit."""
        staged = f"{posixpath.dirname(path)}/{STAGED}{uuid.uuid4().hex[:16]}.{posixpath.basename(path)}"
        with self.storage.io(f"writing table {st.name!r}"):
            self.storage.ensure_dir(posixpath.dirname(path))
            tx.created.append(staged)
            with self.storage.open_write(staged) as out:
                write(out)
        return File(path, staged, part)

    # -- committing --
    def publish(self, tx, table: str, base: Plain, st: Plain | None) -> None:
        """Put the table's staged files in place and remove those it no longer has, once its files are found
        unchanged since the transaction read them (else ConcurrentWriteError, nothing published)."""
        s = self.storage
        with s.io(f"publishing table {table!r}"):
            source = self.tables.source(table, staged=True)
            now = frozenset(source[2].items()) if source else frozenset()
            if now != base.seen:
                raise ConcurrentWriteError(
                    f"table {table!r} in {s.display} was changed by another writer during this call; "
                    f"nothing was written"
                )
            leftovers = self._leftovers(source[3] if source else [], tx)
            if st is None:
                if base.layout.single:
                    s.remove([base.layout.path])
                else:
                    s.fs.rm(base.layout.path, recursive=True)
                s.remove(leftovers)
                return
            dirs = set()
            for f in st.files:
                if f.at != f.path:
                    s.move(f.at, f.path)
                    dirs.add(posixpath.dirname(f.path))
            gone = sorted({f.path for f in base.files} - {f.path for f in st.files})
            s.remove(gone + leftovers)
            for d in sorted(dirs):
                s.sync_dir(d)
            if not st.layout.single:  # partition folders left empty
                for d in sorted({posixpath.dirname(p) for p in gone}, key=len, reverse=True):
                    while d != st.layout.path and d.startswith(st.layout.path + "/"):
                        s.rmdir(d)
                        d = posixpath.dirname(d)

    def _leftovers(self, staged: list[str], tx) -> list[str]:
        """Files staged by writers that crashed: any but this call's under the table's lock (local stores),
        else those older than an hour."""
        mine = set(tx.created)
        if self.storage.local:
            return [p for p in staged if p not in mine]
        now = time.time()
        out = []
        for p in staged:
            info = stat(self.storage, p)
            if p not in mine and info is not None and now - info.mtime > _STALE:
                out.append(p)
        return out


def _partition_values(part: str, partitions: pa.Schema) -> dict:
    """A file's partition values (column -> Python value; None for a missing one), from its folder's name."""
    out: dict = {}
    for segment in part.split("/") if part else ():
        name, _, text = segment.partition("=")
        if name in partitions.names:
            value = None if text == HIVE_NULL else urllib.parse.unquote(text)
            out[name] = pa.array([value], pa.string()).cast(partitions.field(name).type)[0].as_py()
    return out


def _leaving(changes: pa.Table, here: dict, partitions: pa.Schema) -> np.ndarray:
    """Which rows of `changes` set a partition column to another value than their file's folder says."""
    away = np.zeros(changes.num_rows, dtype=bool)
    for p in partitions.names:
        if p not in changes.column_names or p not in here:
            continue
        values = as_stored(changes.column(p), partitions.field(p).type, p)
        if here[p] is None:
            away |= values.is_valid().to_numpy(zero_copy_only=False)
        else:
            same = pc.equal(values, pa.scalar(here[p], partitions.field(p).type)).fill_null(False)
            away |= ~same.to_numpy(zero_copy_only=False)
    return away


def _by_partition(data: pa.Table, partitions: pa.Schema) -> Iterator[tuple[str, pa.Table]]:
    """Rows grouped by their partition values: (the partition's folder, "" when none, its rows)."""
    if not partitions.names:
        yield "", data
        return
    names, n = partitions.names, data.num_rows
    typed = pa.table(
        [
            as_stored(data.column(f.name), f.type, f.name) if f.name in data.column_names else pa.nulls(n, f.type)
            for f in partitions
        ],
        schema=partitions,
    )
    hive = ds.HivePartitioning(partitions, null_fallback=HIVE_NULL)
    groups = typed.group_by(names, use_threads=False).aggregate([])
    for g in range(groups.num_rows):
        mask = None
        expr = None
        for p in names:
            v = groups.column(p)[g]
            col = typed.column(p)
            m = col.is_null() if not v.is_valid else pc.equal(col, v).fill_null(False)
            mask = m if mask is None else pc.and_(mask, m)
            e = pc.field(p).is_null() if not v.is_valid else pc.field(p) == v
            expr = e if expr is None else expr & e
        folder, _ = hive.format(expr)
        yield folder.strip("/"), data.filter(mask)
