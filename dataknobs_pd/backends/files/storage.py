"""Where a file store's tables live: the store's root folder (folder.py: its file system, errors as
StorageError, put-if-absent) with what the file stores do there: listings, parts read and written, durable
local writes, and the per-table lock files."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs

from ...errors import StorageError
from ..folder import Folder, folder_name

if sys.platform != "win32":
    import fcntl
else:  # no flock: writers on Windows are only checked at commit (the put-if-absent manifest)
    fcntl = None

LOCKS = "_dk_locks"  # ROOT/_dk_locks/<folder>.lock: one lock file per table (local stores); never a table name


class Entry(NamedTuple):
    """A file as a listing shows it."""

    age: float  # seconds since it was last written
    size: int  # bytes


class Storage(Folder):
    """The root folder of one file store, and every request made to its file system."""

    def __init__(self, url: str, storage_options: dict | None, fsync: bool):
        super().__init__(url, storage_options, fsync)
        self.pafs = pafs.LocalFileSystem() if self.local else pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        self.probe()

    def dir(self, table: str) -> str:
        return f"{self.root}/{folder_name(table)}"

    # -- folders and files ---------------------------------------------------------------------
    def ensure_dir(self, path: str) -> None:
        # Not cached: a folder dropped, or removed behind the store's back, must come back on the next write.
        if self.local:
            os.makedirs(path, exist_ok=True)
        elif not self.object_store:  # object stores have no folders; makedirs could create a bucket
            self.fs.makedirs(path, exist_ok=True)

    def sync_dir(self, path: str) -> None:
        """Make the names in a local folder durable (the parts a manifest is about to list, its log folder);
        Windows cannot open a folder to sync it."""
        if self.fsync and sys.platform != "win32":
            self.sync(path)

    def ls(self, path: str) -> list[str]:
        """Names in a folder (none when it does not exist)."""
        return list(self.entries(path, stat=False))

    def entries(self, path: str, stat: bool = True) -> dict[str, Entry]:
        """Names in a folder -> age and size (zeros with stat=False locally); {} when there is none."""
        now = time.time()
        if self.local:
            out = {}
            try:
                with os.scandir(path) as found:
                    for e in found:
                        with suppress(FileNotFoundError):  # removed meanwhile
                            st = e.stat() if stat else None
                            out[e.name] = Entry(now - st.st_mtime, st.st_size) if st else Entry(0.0, 0)
            except (FileNotFoundError, NotADirectoryError):
                pass
            return out
        if self.s3:  # one request whether or not the folder exists (ls makes two for a missing one)
            parent, _, name = path.rpartition("/")
            below = self.find(parent, name + "/")
            return {rest[len(name) + 1 :].partition("/")[0]: e for rest, e in below.items()}
        self.fs.invalidate_cache(path)
        try:
            found = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return {}
        return {e["name"].rstrip("/").rsplit("/", 1)[-1]: _entry(e, now) for e in found}

    def find(self, path: str, prefix: str = "") -> dict[str, Entry]:
        """Every file under `path` whose name there starts with `prefix` (that name -> age and size), in one
        listing on S3."""
        self.fs.invalidate_cache(path)
        now = time.time()
        try:
            found = self.fs.find(path, prefix=prefix, detail=True) if prefix else self.fs.find(path, detail=True)
        except FileNotFoundError:
            return {}
        return {k[len(path) + 1 :]: _entry(e, now) for k, e in found.items()}

    def exists(self, path: str) -> bool:
        return os.path.exists(path) if self.local else self.fs.exists(path)

    def cat(self, path: str) -> bytes | None:
        """A whole small file, or None when there is none."""
        try:
            if self.local:
                with open(path, "rb") as f:
                    return f.read()
            return self.fs.cat_file(path, start=0)  # start=0: one GET on s3fs, no HEAD
        except FileNotFoundError:
            return None

    def open_read(self, path: str, size: int | None):
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

    @contextmanager
    def open_write(self, path: str) -> Iterator[pa.NativeFile]:
        """A new file to write (a part): locally flushed to the disk (fsync) through the same descriptor
        before it closes, so that a full disk or a failing device shows here, before any manifest lists it."""
        if self.local:
            with pa.OSFile(path, "wb") as out:
                yield out
                if self.fsync:
                    os.fsync(out.fileno())
            return
        with pa.PythonFile(self.fs.open(path, "wb"), mode="w") as out:
            yield out

    def move(self, src: str, dst: str) -> None:
        """Put the file `src` at `dst`, replacing the one there: a rename locally (atomic); elsewhere a copy
        (whole or absent) and the source removed."""
        if self.local:
            os.replace(src, dst)
            return
        self.fs.mv(src, dst)
        self.fs.invalidate_cache(src.rsplit("/", 1)[0])
        self.fs.invalidate_cache(dst.rsplit("/", 1)[0])

    def remove(self, paths) -> None:
        """Delete files, best effort: what is left is unreferenced and swept later."""
        paths = list(paths)
        if not paths:
            return
        try:
            self.fs.rm(paths)
        except Exception:  # noqa: BLE001
            for p in paths:
                with suppress(Exception):
                    self.fs.rm_file(p)

    def rmdir(self, path: str) -> None:
        """Remove a folder if it is empty (files this store does not know stay); object stores have none."""
        if not self.object_store:
            with suppress(Exception):  # an empty folder left behind is harmless
                self.fs.rmdir(path)

    # -- lock files --------------------------------------------------------------------------------
    def lock(self, table: str, timeout: float) -> int | None:
        """Take the exclusive lock of the table's lock file; its fd (close it to release), or None where
        there is none (object stores, Windows)."""
        if not self.local or fcntl is None:
            return None
        path = f"{self.root}/{LOCKS}/{folder_name(table)}.lock"
        with self.io(f"locking table {table!r}"):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        deadline, pause = time.monotonic() + timeout, 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise StorageError(
                        f"table {table!r} in {self.display} stayed locked by another writer for the "
                        f"{timeout:g} s this call waits (lock_timeout); nothing was written"
                    ) from None
                time.sleep(pause)
                pause = min(2 * pause, 0.02)
            except OSError as e:
                os.close(fd)
                raise StorageError(f"locking table {table!r} in {self.display} failed: {e}") from e


def _entry(info: dict, now: float) -> Entry:
    return Entry(now - modified(info, now), int(info.get("size") or 0))


def modified(info: dict, default: float = 0.0) -> float:
    """When a file an fsspec listing describes was last written (seconds since the epoch; `default` if unsaid)."""
    when: Any = info.get("mtime") or info.get("LastModified") or info.get("created")  # datetime, number or text
    return when.timestamp() if hasattr(when, "timestamp") else float(when or default)
