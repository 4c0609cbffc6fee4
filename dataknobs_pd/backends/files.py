"""parquet://, csv://, jsonl:// — a folder of tables on local disk or any fsspec file system.

Layout: `ROOT/<table>/` is one dataset per table: immutable part files plus one small
manifest, `_dk_<format>.json`, that lists the parts in order (with the first and last key
of each part of a keyed table), the dk schema and a version number. The manifest *is* the
table: a file it does not list is not part of it. Table names are percent-encoded into
folder names, so no name can reach outside ROOT.

Writes never change a file. A call writes new parts under fresh names: new rows go to a new
part, sorted by key; an update or delete rewrites only the parts that hold the keys it
touches (past 64 parts, small ones are merged). Parts are written on worker threads while
the next chunk converts. The outermost transaction then publishes them at once: the next
manifest is written to a temporary file and moved into place (os.replace, fsync'd, locally;
on object stores, where an upload is itself atomic and a move is a copy, it is uploaded in
place), and only then are the files the new version no longer lists removed. A crash before
that leaves the previous manifest, and so the previous table, whole; the orphaned parts are
swept when the table is next replaced (or every 16th version). Savepoints and rollbacks only
restore the in-memory list of parts (and drop the files written since).

Concurrent writers: the writers of one Store take turns (a thread lock per transaction).
Locally, the writers of a table in every process (and every Store of the folder) also take
turns: a write call holds the table's lock file, ROOT/_dk_locks/<folder>.lock (flock), from
before it reads whether the table exists until its commit ends (waiting for it at most
`lock_timeout` seconds, 600 by default; lock files are never removed, as a writer may be
waiting on one). Every commit checks, under that lock, that the manifest is still the
version the call started from (its version and a stamp unique to each publish), and
otherwise raises ConcurrentWriteError and removes its parts: two commits of the same
version cannot both succeed. On object stores there is no lock: the check and the upload
are separate requests, so two writers can still both pass it (conditional puts of the
manifest will close that gap).

Concurrent readers: a read returns one committed version whole. Its parts are held while it
runs: a commit of the same Store that no longer lists them removes them once the read ends.
Locally the read also opens them all at once (an open file outlives its name), so commits in
other processes cannot break it either. On other file systems a commit in another process
may remove a part under a read, which then raises a StorageError (read again).

Reading: parts whose key range cannot match `where` are skipped from the manifest alone;
Parquet parts are scanned with pyarrow.dataset, so filters prune row groups by their
statistics and only the needed columns are read; CSV and JSON-lines parts are streamed and
filtered batch by batch. A keyed table comes back in key order by merging its sorted parts
batch by batch (files_parts.py), so `chunksize` never needs the whole table in memory.

The dk schema is in the manifest (the sidecar of CSV and JSON-lines parts) and also in the
key-value metadata of every Parquet part (`dataknobs_pd.schema`), so the files describe
themselves. Text forms of values for CSV and JSON lines: files_text.py.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.parse
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from itertools import pairwise

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from ..errors import (
    BackendUnavailableError,
    ConcurrentWriteError,
    DataKnobsError,
    InvalidArgumentError,
    RowFailure,
    StorageError,
    TableNotFoundError,
)
from ..filters import to_expression
from ..names import check_table_name
from ..schema import TableSchema
from . import files_parts as parts_
from . import files_text
from .base import Backend, Failures, missing_message, put_rows, sort_by_key, without_rows

if sys.platform != "win32":
    import fcntl
else:  # no flock: commits on Windows keep the gap between the version check and the publish
    fcntl = None

FORMATS = ("parquet", "csv", "jsonl")
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "r2", "b2"}
_MAX_FOLDER = 200  # bytes of an encoded table name; most file systems allow 255
_SCHEMA_META = b"dataknobs_pd.schema"
_REUSE_SECONDS = 5.0  # the manifest schema() read serves the same thread's next call (save, load) this long
_BUCKETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # file system -> buckets known to exist
_SWEEP_EVERY = 16  # every 16th version of a table lists its folder for leftovers of crashed writers
_MAX_PARTS = 64  # past this, writes merge small parts
_LOCKS = "_dk_locks"  # ROOT/_dk_locks/<folder>.lock: one lock file per table (local stores); never a table name
_READ_TRIES = 5  # a read that finds its parts replaced by a commit reads the new manifest, at most this often




@dataclass(frozen=True)
class _Part:
    file: str  # name inside the table's folder
    rows: int
    size: int | None = None  # bytes: read without asking the store for it
    lo: tuple | None = None  # first key (keyed tables: every part is sorted by key)
    hi: tuple | None = None  # last key


@dataclass(frozen=True)
class _State:
    """One version of a table: what its manifest says. Immutable: changes make a new one."""

    name: str
    schema: TableSchema
    parts: tuple[_Part, ...] = ()
    version: int = 0  # of the manifest it was read from (0: never published)
    stamp: str | None = None  # unique to that publish: a table dropped and created again is another table


@dataclass
class _Tx:
    owner: int
    states: dict = field(default_factory=dict)  # table -> _State | None (absent / dropped)
    base: dict = field(default_factory=dict)  # table -> _State | None, as committed when first touched
    created: list = field(default_factory=list)  # paths written by this transaction
    pending: dict = field(default_factory=dict)  # path -> Future of its write, still running
    sizes: dict = field(default_factory=dict)  # path -> bytes, once written
    orphans: dict = field(default_factory=dict)  # table -> file names found in its folder when (re)created
    locks: dict = field(default_factory=dict)  # table -> fd of its lock file, held until the transaction ends


def folder_name(table: str) -> str:
    """The folder a table lives in: its name percent-encoded, never '.', '..' or a path."""
    check_table_name(table)  # also keeps user tables apart from ROOT/_dk_locks
    try:
        enc = urllib.parse.quote(table, safe="-_.")
    except UnicodeEncodeError as e:
        raise InvalidArgumentError(f"table name {table!r} is not valid Unicode text ({e})") from None
    if enc.startswith("."):
        enc = "%2E" + enc[1:]
    if len(enc) > _MAX_FOLDER:
        raise InvalidArgumentError(
            f"table name {table[:40]!r}... is too long for a file store: {len(enc)} bytes once encoded "
            f"for a folder name, at most {_MAX_FOLDER}")
    return enc


class FileBackend(Backend):
    """A folder of tables in one file format; subclasses write and scan the parts."""

    format = ""
    suffix = ""
    chunk_cells = 10_000_000  # cells per write call, so per new part (written while the next chunk converts)

    def __init__(self, url: str, storage_options: dict | None = None, fsync: bool = True,
                 row_group_rows: int | None = None, lock_timeout: float = 600.0, **options):
        if options:
            raise InvalidArgumentError(
                f"unknown option(s) {sorted(options)} for {self.format}://; valid: storage_options, fsync, "
                f"row_group_rows, lock_timeout")
        super().__init__(url, storage_options=storage_options, fsync=fsync)
        path = url.split("://", 1)[1]
        if not path:
            raise InvalidArgumentError(f"{url!r} names no folder; use e.g. {self.format}:///path/to/folder "
                                       f"or {self.format}://s3://bucket/prefix")
        from ..store import mask

        self.display = mask(url)
        try:
            self.fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
        except ImportError as e:
            protocol = path.split("://", 1)[0]
            hint = "pip install 'dataknobs-pd[s3]'" if protocol in ("s3", "s3a") else \
                f"install the fsspec implementation of {protocol}:// (see fsspec's known implementations)"
            raise BackendUnavailableError(f"{self.display} needs a package that is not installed ({e}); run: {hint}") \
                from e
        except (ValueError, TypeError) as e:
            raise InvalidArgumentError(f"cannot open {self.display}: {e} (check storage_options)") from e
        self.root = root.rstrip("/") or root
        self.local = type(self.fs) is LocalFileSystem
        self.object_store = bool(set(_protocols(self.fs)) & _OBJECT_STORES)
        self.pafs = pafs.LocalFileSystem() if self.local else pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        self.fsync = fsync and self.local
        self.row_group_rows = row_group_rows
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) or lock_timeout < 0:
            raise InvalidArgumentError(f"lock_timeout= takes seconds (a number >= 0), got {lock_timeout!r}")
        self.lock_timeout = lock_timeout
        self._lock = threading.RLock()
        self._tx: _Tx | None = None
        self._keys: OrderedDict[str, pa.Table] = OrderedDict()  # part path -> its key columns (parts never change)
        self._workers = max(2, min(4, os.cpu_count() or 2))
        self._pool: ThreadPoolExecutor | None = None
        self._stash: dict[int, tuple] = {}  # thread -> (table, time, state, retired) last read outside a transaction
        # Reads of this store hold the parts they read: a commit retiring one of those removes it when they end.
        self._reads = threading.Lock()
        self._reading: dict[str, int] = {}  # part path -> reads holding it
        self._doomed: set[str] = set()  # parts retired while held
        self._retired: dict[str, int] = {}  # table folder -> commits of this store that retired files in it
        self._probe()

    # -- paths and I/O -----------------------------------------------------------------------
    def _dir(self, table: str) -> str:
        return f"{self.root}/{folder_name(table)}"

    def _manifest(self, table: str) -> str:
        return f"{self._dir(table)}/_dk_{self.format}.json"

    @contextmanager
    def _io(self, doing: str):
        """Turn whatever the file system raises into a StorageError naming the store and the act."""
        try:
            yield
        except DataKnobsError:
            raise
        except PermissionError as e:
            raise StorageError(f"{doing} in {self.display}: access denied ({e}); check the credentials and "
                               f"permissions given in storage_options") from e
        except FileNotFoundError as e:
            raise StorageError(f"{doing} in {self.display}: not found ({e})") from e
        except Exception as e:  # every failure of the store becomes a dk error
            raise StorageError(f"{doing} in {self.display} failed: {type(e).__name__}: {e}") from e

    def _probe(self) -> None:
        """Fail at connect on a missing bucket or refused credentials, not in the middle of a write."""
        with self._io("opening the store"):
            if self.local:
                if os.path.exists(self.root) and not os.path.isdir(self.root):
                    raise StorageError(f"{self.display}: {self.root!r} is a file, not a folder")
                return
            try:
                self.fs.invalidate_cache(self.root)
                self.fs.ls(self.root, detail=False)
            except FileNotFoundError:
                bucket = self.root.split("/", 1)[0]
                seen = _BUCKETS.setdefault(self.fs, set())
                if self.object_store and bucket not in seen:
                    if not self.fs.exists(bucket):
                        raise StorageError(f"{self.display}: bucket {bucket!r} does not exist "
                                           f"(dataknobs-pd does not create buckets)") from None
                    seen.add(bucket)

    def _ensure_dir(self, path: str) -> None:
        # Not cached: a folder dropped, or removed behind the store's back, must come back on the next write.
        if self.local:
            os.makedirs(path, exist_ok=True)
        elif not self.object_store:  # object stores have no folders; makedirs could create a bucket
            self.fs.makedirs(path, exist_ok=True)

    def _sync(self, path: str) -> None:
        if self.fsync:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _ls(self, path: str) -> list[str]:
        self.fs.invalidate_cache(path)
        try:
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []

    # -- manifests ----------------------------------------------------------------------------
    def _read_manifest(self, table: str) -> dict | None:
        with self._io(f"reading table {table!r}"):
            try:
                raw = self.fs.cat_file(self._manifest(table), start=0)  # start=0: one GET on s3fs, no HEAD
            except FileNotFoundError:
                return None
        try:
            d = json.loads(raw)
        except ValueError as e:
            raise StorageError(f"table {table!r} in {self.display}: its manifest is not valid JSON ({e})") from e
        if d.get("format") != self.format:
            raise StorageError(f"table {table!r} in {self.display}: manifest of format {d.get('format')!r}")
        return d

    def _load(self, table: str, reuse: bool = False) -> _State | None:
        """Read the table's manifest; `reuse` takes the one schema() just read in this thread, if any."""
        return self._load_counted(table, reuse)[0]

    def _load_counted(self, table: str, reuse: bool = False) -> tuple[_State | None, int]:
        """_load, and how many times this store had retired files of the table before the manifest was read."""
        stashed = self._stash.pop(threading.get_ident(), None)
        if reuse and stashed and stashed[0] == table and time.monotonic() - stashed[1] < _REUSE_SECONDS:
            return stashed[2], stashed[3]
        retired = self._retired.get(self._dir(table), 0)
        st = self._parse(table, self._read_manifest(table))
        if self._current() is None:
            self._stash[threading.get_ident()] = (table, time.monotonic(), st, retired)
        return st, retired

    def _parse(self, table: str, d: dict | None) -> _State | None:
        if d is None:
            return None
        schema = TableSchema.from_json(json.dumps(d["schema"]), table)
        bounds = parts_.decode_bounds(d.get("bounds")) if schema.key else None
        parts = tuple(
            _Part(p["file"], p["rows"], p.get("bytes"), bounds[2 * i] if bounds else None,
                  bounds[2 * i + 1] if bounds else None)
            for i, p in enumerate(d["parts"]))
        return _State(d.get("table", table), schema, parts, d["version"], d.get("stamp"))

    def _publish(self, st: _State, version: int) -> None:
        """Write the manifest of `st` atomically.

        Locally (and on other file systems) a temporary file is moved into place. On object
        stores an upload is itself atomic (the object appears whole or not at all) and a move
        is a copy and a delete, so the manifest is uploaded in place.
        """
        doc = {
            "dataknobs_pd": 1, "format": self.format, "table": st.name, "version": version, "stamp": uuid.uuid4().hex,
            "schema": json.loads(st.schema.to_json()),
            "parts": [{"file": p.file, "rows": p.rows, "bytes": p.size} for p in st.parts],
        }
        if st.schema.key and st.parts:
            doc["bounds"] = parts_.encode_bounds([b for p in st.parts for b in (p.lo, p.hi)], st.schema)
        data = json.dumps(doc, indent=1).encode()
        folder = self._dir(st.name)
        final, tmp = self._manifest(st.name), f"{folder}/_dk_{self.format}.json.tmp-{uuid.uuid4().hex}"
        with self._io(f"publishing table {st.name!r}"):
            self._ensure_dir(folder)
            if self.local:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    if self.fsync:
                        os.fsync(f.fileno())
                os.replace(tmp, final)
                with suppress(OSError):  # the rename's durability; not every OS can sync a folder
                    self._sync(folder)
            elif self.object_store:
                self.fs.pipe_file(final, data)
            else:
                self.fs.pipe_file(tmp, data)
                self.fs.mv(tmp, final)
            self.fs.invalidate_cache(folder)

    # -- transactions -------------------------------------------------------------------------
    def _current(self) -> _Tx | None:
        tx = self._tx
        return tx if tx is not None and tx.owner == threading.get_ident() else None

    def _get(self, table: str) -> _State | None:
        """The table as this transaction sees it (loaded on first touch)."""
        tx = self._current()
        if tx is None:
            return self._load(table)
        if table not in tx.states:
            tx.base[table] = tx.states[table] = self._load(table, reuse=True)
        return tx.states[table]

    def _put(self, table: str, st: _State | None) -> None:
        self._current().states[table] = st

    @contextmanager
    def transaction(self):
        with self._lock:
            if self._current() is not None:
                with self.savepoint():
                    yield
                return
            tx = self._tx = _Tx(threading.get_ident())
            try:
                try:
                    yield
                except BaseException:
                    self._tx = None
                    self._settle(tx, cancel=True)
                    self._remove(tx.created)
                    raise
                try:
                    self._commit(tx)
                except BaseException:
                    self._settle(tx, cancel=True)
                    raise
                finally:
                    self._tx = None
            finally:
                for fd in tx.locks.values():
                    os.close(fd)  # closing the file releases its lock

    def claim(self, table: str) -> None:
        """Hold the table's lock until the transaction ends (local stores): its writers take turns.

        Across processes and across stores of the same folder; writers of one store already take
        turns on its thread lock. Object stores have no such lock: their writers are only checked
        at commit (see _commit).
        """
        tx = self._current()
        if tx is None or table in tx.locks:
            return
        fd = self._flock(table)
        if fd is None:
            return
        tx.locks[table] = fd
        self._stash.pop(threading.get_ident(), None)  # read before the lock, so maybe stale: read it again

    def _flock(self, table: str) -> int | None:
        """Take the exclusive lock of the table's lock file (ROOT/_dk_locks/); its fd, or None where there is none."""
        if not self.local or fcntl is None:
            return None
        path = f"{self.root}/{_LOCKS}/{folder_name(table)}.lock"
        with self._io(f"locking table {table!r}"):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        deadline, pause = time.monotonic() + self.lock_timeout, 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise StorageError(
                        f"table {table!r} in {self.display} stayed locked by another writer for the "
                        f"{self.lock_timeout:g} s this call waits (lock_timeout); nothing was written") from None
                time.sleep(pause)
                pause = min(2 * pause, 0.02)
            except OSError as e:
                os.close(fd)
                raise StorageError(f"locking table {table!r} in {self.display} failed: {e}") from e

    @contextmanager
    def savepoint(self):
        with self._lock:
            tx = self._current()
            if tx is None:
                with self.transaction():
                    yield
                return
            snapshot = dict(tx.states)
            try:
                yield
            except BaseException:
                tx.states = snapshot
                raise

    def _commit(self, tx: _Tx) -> None:
        keep = {f"{self._dir(t)}/{p.file}" for t, s in tx.states.items() if s for p in s.parts}
        try:
            self._settle(tx, needed=keep)  # a part a savepoint undid may fail to write: no matter
        except BaseException:
            self._remove(tx.created)
            raise
        self._stash.clear()  # no thread may reuse a version this commit replaces
        changed = {t: s for t, s in tx.states.items() if s is not tx.base[t]}
        try:
            for table in sorted(changed):  # locally: check and publish under the table's lock, so that two
                if table not in tx.locks:  # commits of the same version cannot both pass the check
                    fd = self._flock(table)
                    if fd is not None:
                        tx.locks[table] = fd
        except BaseException:
            self._remove(tx.created)
            raise
        for table in changed:  # refuse to overwrite someone else's version
            # On object stores (no lock) the check and the upload below are separate requests: two
            # writers may still both pass the check there, until manifests are put-if-absent.
            base = tx.base[table]
            now = self._read_manifest(table) or {}
            if (now.get("version"), now.get("stamp")) != ((base.version, base.stamp) if base else (None, None)):
                self._remove(tx.created)
                raise ConcurrentWriteError(
                    f"table {table!r} in {self.display} was changed by another writer during this call; "
                    f"nothing was written")
        for table, st in changed.items():
            base = tx.base[table]
            if st is None:
                with self._io(f"dropping table {table!r}"):
                    self.fs.rm_file(self._manifest(table))
            else:
                folder = self._dir(table)
                parts = tuple(replace(p, size=tx.sizes.get(f"{folder}/{p.file}", p.size)) for p in st.parts)
                self._publish(replace(st, parts=parts), (base.version if base else 0) + 1)
        stale = [p for p in tx.created if p not in keep]
        for table, st in changed.items():
            base, folder = tx.base[table], self._dir(table)
            if st is None or ((base.version if base else 0) + 1) % _SWEEP_EVERY == 0:
                self._sweep(table, st)  # also the leftovers of crashed writers
            else:
                listed = {p.file for p in st.parts}
                stale += [f"{folder}/{p.file}" for p in (base.parts if base else ()) if p.file not in listed]
                stale += [f"{folder}/{n}" for n in tx.orphans.get(table, ()) if n not in listed]
        self._retire(stale)

    def _sweep(self, table: str, st: _State | None) -> None:
        """Remove the part files (and temporary manifests) that the published version does not list."""
        folder = self._dir(table)
        listed = {p.file for p in st.parts} if st else set()
        stale = [f"{folder}/{n}" for n in self._ls(folder)
                 if (n.startswith("part-") and n.endswith(self.suffix) and n not in listed)
                 or n.startswith(f"_dk_{self.format}.json.tmp-")]
        self._retire(stale, folder)
        if st is None and not self.object_store:
            with suppress(Exception):  # an empty folder left behind is harmless
                self.fs.rmdir(folder)  # only when empty: files this store does not know stay

    def _retire(self, paths, folder: str | None = None) -> None:
        """Remove files a commit no longer lists; those a read of this store holds, once it ends."""
        paths = list(paths)
        with self._reads:
            for f in {p.rsplit("/", 1)[0] for p in paths} | ({folder} if folder else set()):
                self._retired[f] = self._retired.get(f, 0) + 1
            held = {p for p in paths if p in self._reading}
            self._doomed |= held
        self._remove(p for p in paths if p not in held)

    def _hold(self, table: str, st: _State, retired: int) -> list[str] | None:
        """Hold the parts of `st` for a read; None when this store retired files of the table since `st` was read."""
        folder = self._dir(table)
        paths = [f"{folder}/{p.file}" for p in st.parts]
        with self._reads:
            if self._retired.get(folder, 0) != retired:
                return None
            for p in paths:
                self._reading[p] = self._reading.get(p, 0) + 1
        return paths

    def _release(self, paths: list[str]) -> None:
        """End a read's hold on its parts, removing those retired meanwhile."""
        with self._reads:
            for p in paths:
                if self._reading[p] > 1:
                    self._reading[p] -= 1
                else:
                    del self._reading[p]
            done = [p for p in paths if p in self._doomed and p not in self._reading]
            self._doomed.difference_update(done)
        self._remove(done)

    def _remove(self, paths) -> None:
        """Delete files, best effort: what is left is unreferenced and swept later."""
        paths = list(paths)
        for p in paths:
            self._keys.pop(p, None)
        if not paths:
            return
        try:
            self.fs.rm(paths)
        except Exception:  # noqa: BLE001
            for p in paths:
                with suppress(Exception):
                    self.fs.rm_file(p)

    # -- catalogue ----------------------------------------------------------------------------
    def tables(self):
        marker = f"_dk_{self.format}.json"
        with self._io("listing tables"):
            if self.local:
                if not os.path.isdir(self.root):
                    return []
                found = [n for n in os.listdir(self.root) if os.path.exists(os.path.join(self.root, n, marker))]
            elif self.object_store:
                self.fs.invalidate_cache(self.root)
                try:
                    files = self.fs.find(self.root)
                except FileNotFoundError:
                    files = []
                prefix = self.root + "/"
                found = [p[len(prefix):].split("/")[0] for p in files
                         if p.startswith(prefix) and p[len(prefix):].count("/") == 1 and p.endswith("/" + marker)]
            else:
                found = [n for n in self._ls(self.root) if self.fs.exists(f"{self.root}/{n}/{marker}")]
        names = []
        for n in found:
            name = urllib.parse.unquote(n)
            with suppress(InvalidArgumentError):  # a folder no table name maps to (e.g. _dk_locks) is none
                if folder_name(name) == n:
                    names.append(name)
        return sorted(names)

    def schema(self, table):
        st = self._get(table)
        return st.schema if st is not None else None

    def create(self, table, schema):
        folder_name(table)
        with self.transaction():
            self.claim(table)
            self._get(table)
            with self._io(f"creating table {table!r}"):
                names = self._ls(self._dir(table))
            others = [n[4:-5] for n in names if n.startswith("_dk_") and n.endswith(".json")
                      and n != f"_dk_{self.format}.json"]
            if others:
                raise StorageError(
                    f"table {table!r} in {self.display} is stored as {others[0]}; open it with "
                    f"{others[0]}://{self.url.split('://', 1)[1]}, or use another table name")
            # files a crashed writer left behind: removed when this table is published
            self._current().orphans[table] = [
                n for n in names
                if (n.startswith("part-") and n.endswith(self.suffix)) or n.startswith(f"_dk_{self.format}.json.tmp-")]
            self._put(table, _State(table, schema))

    def set_schema(self, table, schema):
        with self.transaction():
            self._put(table, replace(self._existing(table), schema=schema))

    def drop(self, table):
        with self.transaction():
            self.claim(table)
            if self._get(table) is not None:
                self._put(table, None)

    def _existing(self, table: str) -> _State:
        st = self._get(table)
        if st is None:
            raise TableNotFoundError(f"no table {table!r} in {self.display}")
        return st

    # -- writing ------------------------------------------------------------------------------
    def write(self, table, data, schema, mode):
        with self.transaction():
            st = replace(self._existing(table), schema=schema)
            n = data.num_rows
            key = schema.key
            if key:
                order = parts_.sort_order(data, key)
                part_of, row_of = self._locate(st, data, order)
            else:
                order, part_of, row_of = None, np.full(n, -1), np.full(n, -1)
            exists = part_of >= 0
            failures, new_rows = sort_by_key(data, schema, mode, exists)
            parts = list(st.parts)
            if mode != "insert" and exists.any():
                for p in np.unique(part_of[exists]):
                    sel = np.flatnonzero(part_of == p)
                    old = self._read_whole(st, parts[p])
                    parts[p] = self._write_part(st, put_rows(old, data.take(sel), row_of[sel]))
            if len(new_rows):
                if order is not None:
                    new_rows = order[np.isin(order, new_rows)] if len(new_rows) < n else order
                whole = len(new_rows) == n and bool((new_rows == np.arange(n)).all())
                add = data if whole else data.take(pa.array(new_rows))
                parts.append(self._write_part(st, parts_.complete(add, schema)))
            self._put(table, replace(st, parts=tuple(self._compact(st, parts))))
            return failures

    def delete(self, table, keys, schema):
        with self.transaction():
            st = replace(self._existing(table), schema=schema)
            part_of, row_of = self._locate(st, keys, parts_.sort_order(keys, schema.key))
            failures = {int(i): RowFailure("missing", "MissingKey", missing_message(schema.key, keys, int(i)))
                        for i in np.flatnonzero(part_of < 0)}
            parts: list = list(st.parts)
            for p in np.unique(part_of[part_of >= 0]):
                keep = np.ones(parts[p].rows, dtype=bool)
                keep[row_of[part_of == p]] = False
                rest = self._read_whole(st, parts[p]).filter(pa.array(keep))
                parts[p] = self._write_part(st, rest) if rest.num_rows else None
            self._put(table, replace(st, parts=tuple(p for p in parts if p is not None)))
            return failures

    def _compact(self, st: _State, parts: list[_Part]) -> list[_Part]:
        """Merge small parts once a table has many, so that reads open (and merge) few files.

        Keyed tables merge any small parts (and sort them again); tables without a key only
        neighbouring ones, to keep the insertion order. One merge never exceeds a full part.
        """
        if len(parts) <= _MAX_PARTS:
            return parts
        full = self.chunk_rows(len(st.schema.columns))
        small = [i for i, p in enumerate(parts) if p.rows < full // 2]
        if st.schema.key:
            small.sort(key=lambda i: parts[i].rows)
        groups, group, rows = [], [], 0
        for i in small:
            adjacent = st.schema.key or not group or i == group[-1] + 1
            if group and (rows + parts[i].rows > full or not adjacent):
                groups.append(group)
                group, rows = [], 0
            group.append(i)
            rows += parts[i].rows
        groups.append(group)
        out: list = list(parts)
        for group in (g for g in groups if len(g) > 1):
            data = pa.concat_tables([self._read_whole(st, parts[i]) for i in sorted(group)])
            if st.schema.key:
                data = data.sort_by([(k, "ascending") for k in st.schema.key])
            out[min(group)] = self._write_part(st, data)
            for i in group:
                if i != min(group):
                    out[i] = None
        return [p for p in out if p is not None]

    def _write_part(self, st: _State, data: pa.Table) -> _Part:
        """Write rows (all columns, sorted by key when keyed) as a new part file."""
        name = f"part-{uuid.uuid4().hex[:20]}{self.suffix}"
        folder = self._dir(st.name)
        path = f"{folder}/{name}"
        data = data.replace_schema_metadata(None)
        tx = self._current()
        with self._io(f"writing table {st.name!r}"):
            self._ensure_dir(folder)
        tx.created.append(path)
        while sum(not f.done() for f in tx.pending.values()) >= 2 * self._workers:  # bounded memory
            wait(list(tx.pending.values()), return_when=FIRST_COMPLETED)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="dk-files")
        tx.pending[path] = self._pool.submit(self._write_now, path, data, st.schema)
        lo = hi = None
        if st.schema.key:
            keys = data.select(st.schema.key)
            self._remember(path, keys)
            lo, hi = parts_.row(keys, 0), parts_.row(keys, data.num_rows - 1)
        return _Part(name, data.num_rows, None, lo, hi)

    def _write_now(self, path: str, data: pa.Table, schema: TableSchema) -> int:
        """Write one part file (on a worker thread); returns its size in bytes."""
        with self._open_write(path) as out:
            self._write_file(out, data, schema)
            size = out.tell()
        self._sync(path)
        return size

    def _settle(self, tx: _Tx, path: str | None = None, cancel: bool = False, needed: set | None = None) -> None:
        """Wait for the part writes still running (all, or the one of `path`); raise the first failure.

        Parts are written in the background so that the next chunk is converted meanwhile; a
        rollback (cancel=True) still waits, so that no file appears after its removal. With
        `needed`, only the failures of those paths count.
        """
        paths = [path] if path is not None else list(tx.pending)
        failure = None
        for p in paths:
            fut = tx.pending.pop(p, None)
            if fut is None or (cancel and fut.cancel()):
                continue
            try:
                tx.sizes[p] = fut.result()
            except BaseException as e:  # noqa: BLE001 - reported below, after every write has ended
                if needed is None or p in needed:
                    failure = failure or e
        if failure is not None and not cancel:
            table = urllib.parse.unquote(paths[0].rsplit("/", 2)[-2]) if paths else "?"
            with self._io(f"writing table {table!r}"):
                raise failure

    def _locate(self, st: _State, data: pa.Table, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each row of `data`: the part holding its key and the row there (-1, -1 when absent)."""
        n = data.num_rows
        part_of, row_of = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        if not st.parts or n == 0:
            return part_of, row_of
        key = st.schema.key
        keys = data.select(key)
        kmin, kmax = parts_.row(keys, int(order[0])), parts_.row(keys, int(order[-1]))
        for i, part in enumerate(st.parts):
            if part.hi < kmin or part.lo > kmax:
                continue
            pos = parts_.match(self._part_keys(st, part), keys, key)
            hit = pos >= 0
            part_of[hit], row_of[hit] = i, pos[hit]
        return part_of, row_of

    def _part_keys(self, st: _State, part: _Part) -> pa.Table:
        path = f"{self._dir(st.name)}/{part.file}"
        keys = self._keys.get(path)
        if keys is None:
            keys = self._read_whole(st, part, st.schema.key)
            self._remember(path, keys)
        else:
            self._keys.move_to_end(path)
        return keys

    def _remember(self, path: str, keys: pa.Table) -> None:
        with self._lock:
            self._keys[path] = keys
            while sum(t.num_rows for t in self._keys.values()) > 20_000_000 and len(self._keys) > 1:
                self._keys.popitem(last=False)

    def _read_whole(self, st: _State, part: _Part, columns: list[str] | None = None) -> pa.Table:
        columns = columns or st.schema.names
        tables = list(self._scan(st, part, columns, None, 1 << 30))
        fields = [st.schema.column(c).field for c in columns]
        return pa.concat_tables([parts_.conform(t, fields) for t in tables]) if tables else pa.schema(fields).empty_table()

    # -- reading ------------------------------------------------------------------------------
    def read(self, table, schema, columns, where, order, limit, batch_rows):
        st, held, files = self._snapshot(table)
        try:
            yield from self._read(replace(st, schema=schema), files, columns, where, order, limit, batch_rows)
        finally:
            for f in files.values():
                f.close()
            self._release(held)

    def _snapshot(self, table: str) -> tuple[_State, list[str], dict]:
        """The table to read, its parts held for the read and, locally, opened at once (file name -> file).

        A commit of this store removes the parts a read holds only once the read ends. Locally
        the parts are also opened at once, and an open file outlives its name, so commits in
        other processes cannot break the read either: it reads one committed version whole.
        Elsewhere a commit in another process may remove a part under it (StorageError: read again).
        """
        if self._current() is not None:
            st = self._get(table)  # this transaction's own view; no commit of this store runs meanwhile
            if st is None:
                raise TableNotFoundError(f"no table {table!r} in {self.display}")
            return st, [], {}
        seen = None
        for attempt in range(_READ_TRIES):
            st, retired = self._load_counted(table, reuse=attempt == 0)
            if st is None:
                raise TableNotFoundError(f"no table {table!r} in {self.display}")
            held = self._hold(table, st, retired)
            if held is None:  # a commit of this store removed files of the table since: read the new manifest
                continue
            if not self.local:
                return st, held, {}
            files: dict = {}
            missing = None
            with self._io(f"reading table {table!r}"):
                try:
                    for p in st.parts:
                        files[p.file] = self.pafs.open_input_file(f"{self._dir(table)}/{p.file}")
                except BaseException as e:
                    for f in files.values():
                        f.close()
                    self._release(held)
                    if not isinstance(e, FileNotFoundError):
                        raise
                    missing = e
            if missing is None:
                return st, held, files
            # a part gone: a commit in another process replaced it since the manifest was read
            if (st.version, st.stamp) == seen:  # the same version twice: the part is really missing
                raise StorageError(f"table {table!r} in {self.display}: a part its manifest lists is missing "
                                   f"({missing})")
            seen = (st.version, st.stamp)
        raise StorageError(f"table {table!r} in {self.display} was changed by other writers {_READ_TRIES} times "
                           f"while being read; read it again")

    def _read(self, st, files, columns, where, order, limit, batch_rows):
        schema = st.schema
        key = schema.key
        parts = [p for p in st.parts if parts_.may_match(p.lo, p.hi, where, schema)]
        need = list(columns)
        for c in [c for c, _ in order] if order else (key or []):
            if c not in need:
                need.append(c)
        target = [schema.column(c).field for c in columns]
        if order:
            tables = [t for p in parts for t in self._scan(st, p, need, where, batch_rows, files.get(p.file))]
            fields = [schema.column(c).field for c in need]
            data = pa.concat_tables([parts_.conform(t, fields) for t in tables]) if tables else \
                pa.schema(fields).empty_table()
            data = data.sort_by([(c, "ascending" if asc else "descending") for c, asc in order])
            if limit is not None:
                data = data.slice(0, limit)
            stream = iter([data])
        elif key:
            parts.sort(key=lambda p: p.lo)
            streams = [self._scan(st, p, need, where, batch_rows, files.get(p.file)) for p in parts]
            if all(a.hi < b.lo for a, b in pairwise(parts)):
                stream = (t for s in streams for t in s)
            else:
                stream = parts_.merge(streams, key)
        else:
            stream = (t for p in parts for t in self._scan(st, p, need, where, batch_rows, files.get(p.file)))
        yield from parts_.rebatch(stream, target, limit, batch_rows)

    def _scan(self, st: _State, part: _Part, columns: list[str], where: list | None, batch_rows: int,
              opened=None) -> Iterator[pa.Table]:
        """Yield the rows of one part matching `where`, only `columns`, in file order (from `opened`, if given)."""
        path = f"{self._dir(st.name)}/{part.file}"
        expr = to_expression(where, st.schema.arrow_schema) if where else None
        tx = self._current()
        size = part.size
        if tx is not None and size is None:  # a part of this transaction: its write must have ended
            self._settle(tx, path)
            size = tx.sizes.get(path)
        source = nullcontext(opened) if opened is not None else self._open_read(path, size)
        with self._io(f"reading table {st.name!r}"), source as f:
            yield from self._scan_file(f, st.schema, columns, expr, _columns_of(where), batch_rows)

    def _open_read(self, path: str, size: int | None):
        """A pyarrow file for a part: native locally; elsewhere through fsspec, told its size (no HEAD)."""
        if self.local:
            return self.pafs.open_input_file(path)
        try:
            f = self.fs.open(path, "rb", size=size) if size is not None else self.fs.open(path, "rb")
        except TypeError:  # a file system whose open() takes no size
            f = self.fs.open(path, "rb")
        if size is not None and getattr(f, "_details", False) is None:
            # buffered fsspec files ask for details (a HEAD on S3) on first read; parts never change
            f._details = {"name": path, "size": size, "type": "file"}
        return pa.PythonFile(f, mode="r")

    def _open_write(self, path: str):
        if self.local:
            return self.pafs.open_output_stream(path)
        return pa.PythonFile(self.fs.open(path, "wb"), mode="w")

    # -- format hooks -------------------------------------------------------------------------
    def _write_file(self, out, data: pa.Table, schema: TableSchema) -> None:
        """Write one part to the open pyarrow file `out`."""
        raise NotImplementedError

    def _scan_file(self, f, schema, columns, expr, where_columns, batch_rows) -> Iterator[pa.Table]:
        """Yield the rows of the open part `f` matching `expr` (on `where_columns`), only `columns`."""
        raise NotImplementedError

    def close(self):
        self._keys.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class ParquetBackend(FileBackend):
    """parquet://PATH: Parquet parts; `where` prunes parts by key range and row groups by statistics."""

    format, suffix = "parquet", ".parquet"

    def prepare(self, data, schema):
        # Parquet has no seconds unit: timestamp[s] is written as milliseconds, which may overflow
        failures: Failures = {}
        limit = (2**63 - 1) // 1000
        for name in data.column_names:
            t = data.column(name).type
            if pa.types.is_timestamp(t) and t.unit == "s":
                ints = pc.abs(data.column(name).cast(pa.int64()))
                bad = pc.fill_null(pc.greater(ints, limit), False).to_numpy(zero_copy_only=False)
                for i in np.flatnonzero(bad):
                    failures.setdefault(int(i), RowFailure(
                        "convert", "OutOfRange", f"column {name!r}: {files_text.show(data.column(name), int(i))} "
                        f"is beyond what Parquet can hold in a seconds column (it stores milliseconds)"))
        return without_rows(data, failures), failures

    def _write_file(self, out, data, schema):
        meta = {_SCHEMA_META: schema.to_json().encode()}
        pq.write_table(data.replace_schema_metadata(meta), out, row_group_size=self.row_group_rows,
                       use_dictionary=parts_.dictionary_columns(data))

    def _scan_file(self, f, schema, columns, expr, where_columns, batch_rows):
        fmt = ds.ParquetFileFormat()
        fragment = fmt.make_fragment(f)
        if batch_rows >= 1_000_000:  # a whole load: let pyarrow read the file at once, in parallel
            pieces = [ds.FileSystemDataset([fragment], schema=schema.arrow_schema, format=fmt)]
        else:  # streaming (chunksize): one row group at a time, those the statistics do not rule out
            pieces = fragment.split_by_row_group(expr, schema=schema.arrow_schema)
        for piece in pieces:
            kw = {} if isinstance(piece, ds.Dataset) else {"schema": schema.arrow_schema}
            for batch in piece.to_batches(columns=columns, filter=expr, batch_size=min(batch_rows, 1 << 20), **kw):
                if batch.num_rows:
                    yield pa.Table.from_batches([batch])


class _TextBackend(FileBackend):
    """What CSV and JSON lines share: values go as text forms; what has none fails at `convert`."""

    def prepare(self, data, schema):
        failures: Failures = {}
        for name in data.column_names:
            for i, why in files_text.unholdable(data.column(name), schema.column(name), self.format).items():
                failures.setdefault(i, RowFailure("convert", "OutOfRange", why))
        return without_rows(data, failures), failures

    def _write_file(self, out, data, schema):
        self._write_text(out, data, schema)

    def _scan_file(self, f, schema, columns, expr, where_columns, batch_rows):
        wanted = list(columns) + [n for n in where_columns if n not in columns]  # decoded to filter, then dropped
        for t in self._read_text(f, schema, wanted, batch_rows):
            if expr is not None:
                t = t.filter(expr)
            if t.num_rows:
                yield t.select(columns)


class CSVBackend(_TextBackend):
    """csv://PATH: CSV parts with a header; the dk schema in the manifest beside them."""

    format, suffix = "csv", ".csv"

    def _write_text(self, out, data, schema):
        files_text.write_csv(out, data, schema)

    def _read_text(self, f, schema, columns, batch_rows):
        return files_text.read_csv(f, schema, columns)


class JSONLBackend(_TextBackend):
    """jsonl://PATH: JSON-lines parts, one object per row; the dk schema in the manifest beside them."""

    format, suffix = "jsonl", ".jsonl"

    def _write_text(self, out, data, schema):
        files_text.write_jsonl(out, data, schema)

    def _read_text(self, f, schema, columns, batch_rows):
        return files_text.read_jsonl(f, schema, columns, batch_rows)


# -- helpers -------------------------------------------------------------------------------------
def _protocols(fs) -> tuple:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


def _columns_of(where: list | None) -> list[str]:
    return sorted({c for group in where for c, _, _ in group}) if where else []
