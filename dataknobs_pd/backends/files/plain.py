"""Tables other tools made: plain Parquet and CSV files in the store's folder, and folders of them (flat or
hive-partitioned), as pandas, pyarrow or Spark write them.

`ROOT/sales.parquet` is table "sales"; `ROOT/events/` is table "events" when it holds files of the format
(`events/year=2021/part-0.parquet`, Spark's `part-00000-....snappy.parquet`) and no manifest: names starting
with "." or "_" are skipped, as pyarrow and Spark skip them (`_SUCCESS`, `.part-0.crc`, `_temporary/`).
A folder and a file of the same name: the folder is the table. pyarrow.dataset reads them: hive partitions
are discovered from the folder names, partition columns come back as columns, and `where` prunes the
partitions and the Parquet row groups. A table comes back as pandas reads it (`pd.read_parquet` on the
file or the folder, `pd.read_csv` on a file): the pandas metadata gives the index and dtypes back, an
integer column holding a missing value is float64, partition columns of Parquet folders are categories.

Writes keep the layout, so that the tool that made the table, and every other reader of it, sees what
dataknobs-pd sees: the files are the table, no manifest is added and no column the user did not ask for.
(A manifest would split the table in two: files Spark adds later would be invisible to dataknobs-pd, and
the files of its uncommitted or earlier versions visible to Spark.) A folder takes new rows as new files
(`part-dk-<id>.parquet`, under `year=2022/` for the rows of that partition, without the partition columns,
with the first file's pandas metadata). A single file is rewritten whole with the new rows after its own
(row group by row group; a CSV file's bytes copied, then the rows), since a Parquet file cannot grow in
place and a reader of `sales.parquet` expects every row there. `update_batch`, upsert and `delete` with
key= rewrite only the files that hold the keys (a row whose partition column changes moves to its new
partition's folder); a key the table holds more than once fails its row. `if_exists="replace"` writes the
new rows in the same place and layout. Columns cannot be added to a folder (its other readers take the
columns of its first file); a single Parquet file takes them.

Every file is written under a hidden name first (`.dk-<id>.<name>`, skipped by every reader), flushed,
and renamed into place when the call commits, after a check that no other writer changed the table's
files since the call read them (ConcurrentWriteError otherwise: nothing is published, and the engine
runs the call again). A failure (a full disk) leaves no file of the call behind. What a plain table cannot
have is one atomic commit of several files: a reader, or a crash, between two renames of one call sees
some of its files; each file is whole. Writers of one plain table take turns locally (its lock file);
on object stores the check above is all there is.
"""

from __future__ import annotations

import os
import posixpath
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ...errors import ConcurrentWriteError, SchemaMismatchError, StorageError, WriteError
from ...failures import RowError, inserted
from ...filters import to_expression
from ...schema import Column, TableSchema
from ..base import put_rows, rebatch
from .foreign import (
    FORMATS,
    HIVE_NULL,
    Layout,
    PlainFormat,
    PlainParquet,
    as_stored,
    columns_of,
    conform_to,
    dk_schema,
    physical,
    stored_type,
    value_types,
)
from .storage import Storage, folder_name, modified

HIDDEN = (".", "_")  # names pyarrow, Spark and Hive skip in a dataset's folder
STAGED = ".dk-"  # a file written by a call, renamed into place when it commits
NEW = "part-dk-"  # the files a call adds to a folder
# a managed table's part files (backend.py): a folder holding only these is what a crashed writer left
_MANAGED_PART = re.compile(r"part-[0-9a-f]{20}\.\w+|part-[0-9a-f]{16}-[0-9a-f]{16}\.\w+")
_STALE = 3600.0  # seconds after which a staged file of another writer is a crashed writer's (object stores)


@dataclass(frozen=True)
class File:
    """One file of a plain table."""

    path: str  # where other readers see it
    at: str  # where its content is now: `path`, or a file this transaction staged
    part: str = ""  # its folder below the table's folder ("year=2021/month=1"), the hive partition


@dataclass(frozen=True)
class Plain:
    """A plain table as a transaction sees it. Immutable: changes make a new one."""

    name: str
    schema: TableSchema
    layout: Layout
    files: tuple[File, ...]
    seen: frozenset  # (path, Stat) of its files when read: a commit checks that nobody changed them

    def staged(self) -> set[str]:
        return {f.at for f in self.files if f.at != f.path}


# -- finding plain tables ---------------------------------------------------------------------------
def plain_name(name: str) -> bool:
    """Whether a file stem or folder name can name a plain table: visible to other readers, one path part."""
    return bool(name) and not name.startswith(HIDDEN) and "/" not in name and name not in (".", "..")


def _hidden(rel: str) -> bool:
    return any(p.startswith(HIDDEN) for p in rel.split("/"))


class PlainTables:
    """The plain tables of one store's folder in one format: found, read, written and published."""

    def __init__(self, storage: Storage, fmt: str):
        self.storage = storage
        self.format: PlainFormat | None = FORMATS[fmt]() if fmt in FORMATS else None
        self._found: dict[str, tuple[frozenset, Plain]] = {}  # path -> (signature, the table read from it)

    # -- catalogue --
    def names(self, managed: set[str]) -> list[str]:
        """The plain tables in the store's folder (those of managed tables' names left out)."""
        fmt, s = self.format, self.storage
        if fmt is None:
            return []
        out = set()
        skip = {folder_name(t) for t in managed}
        with s.io("listing tables"):
            if s.local:
                try:
                    entries = list(os.scandir(s.root))
                except (FileNotFoundError, NotADirectoryError):
                    return []
                for e in entries:
                    if e.name in skip:
                        continue
                    if e.is_dir() and plain_name(e.name) and self._folder(f"{s.root}/{e.name}")[0]:
                        out.add(e.name)
                    elif e.is_file() and e.name.endswith(fmt.suffix) and plain_name(e.name[: -len(fmt.suffix)]):
                        out.add(e.name[: -len(fmt.suffix)])
            else:
                below: dict[str, dict] = {}
                for rel, info in _find(s, s.root).items():
                    top, _, rest = rel.partition("/")
                    if rest:
                        below.setdefault(top, {})[rest] = info
                    elif top.endswith(fmt.suffix) and plain_name(top[: -len(fmt.suffix)]):
                        out.add(top[: -len(fmt.suffix)])
                out |= {
                    top for top, files in below.items() if top not in skip and plain_name(top) and self._holds(files)
                }
        return sorted(out - managed)

    def _folder(self, folder: str) -> tuple[dict[str, Stat], list[str]]:
        """The data files of a plain table's folder (relative path -> size, mtime; {} when the folder is no
        plain table) and the files staged by writers in it."""
        files = _find(self.storage, folder)
        staged = [f"{folder}/{r}" for r in files if posixpath.basename(r).startswith(STAGED)]
        return (files if self._holds(files) else {}), staged

    def _holds(self, files: dict[str, Stat]) -> bool:
        """Whether a folder's files (relative path -> ...) make a plain table: files of the format and no
        manifest of a managed table (nor only the parts a crashed writer of one left)."""
        if any(r.startswith("_dk_") for r in files):
            return False
        data = [r for r in files if self._data(r)]
        return any("/" in r or not _MANAGED_PART.fullmatch(r) for r in data)

    def _data(self, rel: str) -> bool:
        return self.format is not None and rel.endswith(self.format.suffix) and not _hidden(rel)

    def _source(self, table: str, staged: bool = False) -> tuple[str, bool, dict, list[str]] | None:
        """Where the plain table `table` is: (path, single file, its data files -> size and mtime, and with
        `staged` the files writers staged for it), or None."""
        fmt, s = self.format, self.storage
        if fmt is None or not plain_name(table):
            return None
        folder = f"{s.root}/{table}"
        files, inside = self._folder(folder)
        data = {f"{folder}/{r}": e for r, e in files.items() if self._data(r)}
        if data:
            return folder, False, data, inside
        path = f"{folder}{fmt.suffix}"
        info = _stat(s, path)
        if info is None:
            return None
        beside = [p for p in _find(s, s.root, prefix=STAGED) if p.endswith(f".{table}{fmt.suffix}")] if staged else []
        return path, True, {path: info}, [f"{s.root}/{p}" for p in beside]

    def find(self, table: str) -> Plain | None:
        """The plain table `table` as its files are now, or None when there is none."""
        with self.storage.io(f"reading table {table!r}"):
            source = self._source(table)
            if source is None:
                return None
            path, single, files, _ = source
            seen = frozenset(files.items())
            cached = self._found.get(path)
            if cached is not None and cached[0] == seen:
                return cached[1]
            st = self._inspect(table, path, single, files, seen)
        self._found[path] = (seen, st)
        return st

    def _inspect(self, table: str, path: str, single: bool, files: dict, seen: frozenset) -> Plain:
        fmt = self.format
        if fmt is None:
            raise StorageError(f"no plain tables in {self.storage.display}")
        paths = sorted(files)
        try:
            layout, empty = fmt.inspect(self.storage, paths, None if single else path)
        except (pa.ArrowException, ValueError, UnicodeDecodeError) as e:
            raise StorageError(
                f"table {table!r} in {self.storage.display}: its files cannot be read as {fmt.suffix[1:]} "
                f"({type(e).__name__}: {str(e)[:300]})"
            ) from e
        schema = dk_schema(empty, layout.read_schema, fmt.na)
        listed = tuple(File(p, p, "" if single else posixpath.dirname(p[len(path) + 1 :])) for p in paths)
        return Plain(table, schema, layout, listed, seen)

    # -- reading --
    def dataset(self, st: Plain) -> ds.FileSystemDataset:
        """The table's files (this transaction's view) as a pyarrow dataset, each with its partition."""
        fmt = self._fmt()
        layout = st.layout
        file_format = fmt.file_format(layout)
        hive = ds.HivePartitioning(layout.partitions, null_fallback=HIVE_NULL) if layout.partitions.names else None
        fragments = [
            file_format.make_fragment(
                f.at,
                filesystem=self.storage.pafs,
                partition_expression=hive.parse(f.part + "/") if hive is not None and f.part else None,
            )
            for f in st.files
        ]
        return ds.FileSystemDataset(fragments, layout.read_schema, file_format, self.storage.pafs)

    def read(self, st: Plain, schema: TableSchema, columns, where, order, limit, batch_rows) -> Iterator[pa.Table]:
        """Backend.read of a plain table: filters, partition pruning and projection by pyarrow.dataset; rows in
        the files' order (with a key given by the call, in key order)."""
        with self.storage.io(f"reading table {st.name!r}"):
            found = self.dataset(st)
            expr = to_expression(where, value_types(found.schema)) if where else None
            if not order and schema.key:
                order = [(k, True) for k in schema.key]
            target = pa.schema([schema.column(c).field for c in columns])
            if order:
                need = list(dict.fromkeys([*columns, *(c for c, _ in order)]))
                data = found.to_table(columns=need, filter=expr)
                data = data.sort_by([(c, "ascending" if asc else "descending") for c, asc in order])
                stream: Iterator[pa.Table] = iter([data if limit is None else data.slice(0, limit)])
            elif limit is not None:
                stream = iter([found.head(limit, columns=columns, filter=expr)])
            elif batch_rows >= 1_000_000:  # a whole load: pyarrow reads the files at once, in parallel
                stream = iter([found.to_table(columns=columns, filter=expr)])
            else:  # chunksize: a batch at a time, in the files' order, only the partitions the filter leaves
                stream = (
                    pa.Table.from_batches([b])
                    for frag in found.get_fragments(filter=expr if expr is not None else ds.scalar(True))
                    for b in frag.to_batches(
                        schema=found.schema, columns=columns, filter=expr, batch_size=min(batch_rows, 1 << 20)
                    )
                    if b.num_rows
                )
            yield from rebatch(stream, target, limit, batch_rows)

    def _fmt(self) -> PlainFormat:
        if self.format is None:
            raise StorageError(f"no plain tables in {self.storage.display}")
        return self.format

    # -- writing --
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
        if not st.layout.single or not isinstance(self.format, PlainParquet):
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
        found = self.dataset(st)
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
        fmt, layout = self._fmt(), st.layout
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
        fmt, layout = self._fmt(), st.layout
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
        fmt, schema = self._fmt(), st.layout.file_schema()
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
            source = self._source(table, staged=True)
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
            info = _stat(self.storage, p)
            if p not in mine and info is not None and now - info.mtime > _STALE:
                out.append(p)
        return out


# -- helpers ------------------------------------------------------------------------------------
class Stat(NamedTuple):
    """A file as a listing shows it: what tells a rewritten file from the one read before."""

    size: int
    mtime: float
    tag: str  # locally the inode (a file renamed into place is another), elsewhere the ETag


def _find(s: Storage, folder: str, prefix: str = "") -> dict[str, Stat]:
    """Every file below `folder` (whose name there starts with `prefix`, directly in it): relative path ->
    Stat; {} when there is none."""
    if s.local:
        out: dict[str, Stat] = {}
        if prefix:
            with suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as found:
                for e in found:
                    if e.name.startswith(prefix) and e.is_file():
                        with suppress(FileNotFoundError):
                            st = e.stat()
                            out[e.name] = _local(st)
            return out
        for dirpath, _dirs, files in os.walk(folder):
            rel = os.path.relpath(dirpath, folder)
            for name in files:
                with suppress(FileNotFoundError):
                    st = os.stat(os.path.join(dirpath, name))
                    out[name if rel == "." else f"{rel}/{name}"] = _local(st)
        return out
    s.fs.invalidate_cache(folder)
    try:
        found = s.fs.find(folder, prefix=prefix, detail=True) if prefix else s.fs.find(folder, detail=True)
    except FileNotFoundError:
        return {}
    out = {}
    for key, info in found.items():
        rel = key[len(folder) + 1 :]
        if prefix and "/" in rel:
            continue
        out[rel] = _remote(info)
    return out


def _stat(s: Storage, path: str) -> Stat | None:
    """(size, mtime) of a file, or None when there is no file there."""
    if s.local:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _local(st) if os.path.isfile(path) else None
    try:
        info = s.fs.info(path)
    except FileNotFoundError:
        return None
    return _remote(info) if info.get("type") == "file" else None


def _local(st: os.stat_result) -> Stat:
    return Stat(st.st_size, st.st_mtime_ns / 1e9, f"{st.st_ino}:{st.st_mtime_ns}")


def _remote(info: dict) -> Stat:
    mtime = modified(info)
    return Stat(int(info.get("size") or 0), mtime, str(info.get("ETag") or info.get("etag") or mtime))


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
