"""parquet://, csv://, jsonl:// — a folder of tables on local disk or any fsspec file system.

Layout: `ROOT/<table>/` is one dataset per table: immutable part files, and a folder of
manifests, `_dk_<format>/<version>.json`, one per version, each listing the parts of that
version in order (with the first and last key of each part of a keyed table) and the dk schema.
The newest manifest *is* the table: a file it does not list is not part of it. Table names are
percent-encoded into folder names, so no name can reach outside ROOT. Plain readers skip names
starting with "_": `pd.read_parquet(ROOT/<table>)` reads a parquet:// table whenever no
write is in progress and no retired part is kept (see below).

Tables other tools made: plain Parquet and CSV files in ROOT (`ROOT/sales.parquet` is table
"sales") and folders of them without a manifest, flat or hive-partitioned, as pandas, pyarrow or
Spark write them. They are read through pyarrow.dataset as pandas reads them, and written in
their own layout with no manifest added, so that the files stay the table for every reader: a
folder takes new files, a single file is rewritten whole (plain.py says how, and why not a
manifest). Their writes keep what a plain table can keep: every file staged under a hidden name
and renamed into place at the commit, after a check that no other writer changed the files.

Writes never change a file. A call writes new parts under fresh names: new rows go to a new
part, sorted by key; an update or delete rewrites only the parts that hold the keys it
touches (past 64 parts, small ones are merged). Parts are written on worker threads while
the next chunk converts. The outermost transaction then commits by writing the next version's
manifest put-if-absent (a hard link locally, `If-None-Match: *` on S3): of two writers of the
same version one fails with ConcurrentWriteError and removes its parts, so commits never
overwrite each other, on S3 too. Savepoints and rollbacks only restore the in-memory list of
parts (and drop the files written since). Adding columns only changes the schema: parts
written before read them as nulls. A crash before the commit leaves the previous version
whole; the orphaned parts are swept when the table is next created (or every 16th version, or
by vacuum). Parts are synced to the disk, and a manifest is written aside, synced, read back
and checked, before it is linked into place: a full disk fails the call with a StorageError
that says so, leaving the previous version whole and no file of the call behind; a manifest
left empty or cut short (by a file system without hard links) is never taken as a version.

Retention: the parts a version no longer lists are kept, listed as retired in its manifest, for
`retention` seconds, so that reads that started on an earlier version finish; later commits (or
`vacuum(table)`) remove them, and the manifests no writer can still race for. Locally a read
opens every part at once and an open file outlives its name, so the default retention is 0
(retired parts go at the commit); on other file systems it is an hour.

Concurrent writers: the writers of one Store take turns (a thread lock per transaction).
Locally, the writers of a table in every process (and every Store of the folder) also take
turns: a write call holds the table's lock file, ROOT/_dk_locks/<folder>.lock (flock), from
before it reads whether the table exists until its commit ends (waiting for it at most
`lock_timeout` seconds, 600 by default; lock files are never removed, as a writer may be
waiting on one). Elsewhere writers do not wait: the put-if-absent manifest decides, and the
engine runs a losing call again.

Concurrent readers: a read returns one committed version whole: its parts are held while it
runs (a commit of the same Store removes them once the read ends), opened at once locally,
and kept for the retention elsewhere.

The modules: storage.py (listings, part files, lock files, in the store's folder: ../folder.py), manifest.py,
commit.py (transactions, commit, retention, sweep, vacuum), formats.py (how Parquet, CSV and JSON lines write
and scan a part) with text.py (the exact text forms of values), parts.py (key ranges, merging; key order and
matching in ../keyed.py), catalogue.py (which tables there are), writing.py (writes by key, compaction) on
pool.py (the threads that write parts), reading.py, aside.py (a new table loaded by many writers at once),
backend.py (FileBackend, which wires them); and for the tables other tools made, plain.py (finding them),
plain_reading.py and plain_writing.py (writing and publishing them), with foreign.py (their formats).
"""

from __future__ import annotations

from ..folder import folder_name
from .backend import FileBackend
from .formats import CSV, JSONL, Parquet

__all__ = ["CSVBackend", "FileBackend", "JSONLBackend", "ParquetBackend", "folder_name"]


class ParquetBackend(FileBackend):
    """parquet://PATH: Parquet parts; `where` prunes parts by key range and row groups by statistics."""

    def __init__(
        self,
        url: str,
        storage_options: dict | None = None,
        fsync: bool = True,
        lock_timeout: float = 600.0,
        retention: float | None = None,
        row_group_rows: int | None = None,
    ):
        super().__init__(url, Parquet(row_group_rows), storage_options, fsync, lock_timeout, retention)


class CSVBackend(FileBackend):
    """csv://PATH: CSV parts with a header; the dk schema in the manifest beside them."""

    def __init__(
        self,
        url: str,
        storage_options: dict | None = None,
        fsync: bool = True,
        lock_timeout: float = 600.0,
        retention: float | None = None,
    ):
        super().__init__(url, CSV(), storage_options, fsync, lock_timeout, retention)


class JSONLBackend(FileBackend):
    """jsonl://PATH: JSON-lines parts, one object per row; the dk schema in the manifest beside them."""

    def __init__(
        self,
        url: str,
        storage_options: dict | None = None,
        fsync: bool = True,
        lock_timeout: float = 600.0,
        retention: float | None = None,
    ):
        super().__init__(url, JSONL(), storage_options, fsync, lock_timeout, retention)
