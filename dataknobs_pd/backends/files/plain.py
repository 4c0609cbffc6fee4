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

This module holds what a plain table is (Plain, File) and finds them: the store's plain tables, where one
is and what its files are; plain_reading.py reads them, plain_writing.py writes and publishes them.
"""

from __future__ import annotations

import os
import posixpath
import re
from contextlib import suppress
from dataclasses import dataclass
from typing import NamedTuple

import pyarrow as pa

from ...errors import StorageError
from ...schema import TableSchema
from ..folder import folder_name
from .foreign import FORMATS, Layout, PlainFormat, dk_schema
from .storage import Storage, modified

HIDDEN = (".", "_")  # names pyarrow, Spark and Hive skip in a dataset's folder
STAGED = ".dk-"  # a file written by a call, renamed into place when it commits
# a managed table's part files (writing.py, aside.py): a folder holding only these is what a crashed writer left
_MANAGED_PART = re.compile(r"part-[0-9a-f]{20}\.\w+|part-[0-9a-f]{16}-[0-9a-f]{16}\.\w+")


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
    """The plain tables of one store's folder in one format: which there are, where one is, its files."""

    def __init__(self, storage: Storage, fmt: str):
        self.storage = storage
        self.format: PlainFormat | None = FORMATS[fmt]() if fmt in FORMATS else None
        self._found: dict[str, tuple[frozenset, Plain]] = {}  # path -> (signature, the table read from it)

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

    def source(self, table: str, staged: bool = False) -> tuple[str, bool, dict, list[str]] | None:
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
        info = stat(s, path)
        if info is None:
            return None
        beside = [p for p in _find(s, s.root, prefix=STAGED) if p.endswith(f".{table}{fmt.suffix}")] if staged else []
        return path, True, {path: info}, [f"{s.root}/{p}" for p in beside]

    def find(self, table: str) -> Plain | None:
        """The plain table `table` as its files are now, or None when there is none."""
        with self.storage.io(f"reading table {table!r}"):
            source = self.source(table)
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

    def fmt(self) -> PlainFormat:
        """The format of the plain tables (StorageError in a store whose format has none)."""
        if self.format is None:
            raise StorageError(f"no plain tables in {self.storage.display}")
        return self.format


# -- listing files ------------------------------------------------------------------------------
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


def stat(s: Storage, path: str) -> Stat | None:
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
