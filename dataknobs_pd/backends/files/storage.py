"""Where a file store's tables live: the folder on a file system (local or fsspec), its errors as
StorageError, durable local writes, put-if-absent, and the per-table lock files."""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, NamedTuple

import fsspec
import pyarrow as pa
import pyarrow.fs as pafs
from fsspec.implementations.local import LocalFileSystem

from ...errors import BackendUnavailableError, DataKnobsError, InvalidArgumentError, StorageError
from ...names import check_table_name
from ...urls import mask

if sys.platform != "win32":
    import fcntl
else:  # no flock: writers on Windows are only checked at commit (the put-if-absent manifest)
    fcntl = None

OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "r2", "b2"}
LOCKS = "_dk_locks"  # ROOT/_dk_locks/<folder>.lock: one lock file per table (local stores); never a table name
_MAX_FOLDER = 200  # bytes of an encoded table name; most file systems allow 255
_BUCKETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # file system -> buckets known to exist
_FULL = {getattr(errno, n) for n in ("ENOSPC", "EDQUOT") if hasattr(errno, n)}  # a full disk, a used-up quota
# os.link's failures that are the publish's own (a full disk, a failing or read-only device): no reason to
# publish another way. Any other one says the file system has no hard links (vfat, some FUSE and network ones).
_FAILED = _FULL | {errno.EIO, errno.EROFS}


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
            f"for a folder name, at most {_MAX_FOLDER}"
        )
    return enc


def table_of(folder: str) -> str | None:
    """The table whose folder this is, or None for a folder no table name maps to (e.g. _dk_locks)."""
    name = urllib.parse.unquote(folder)
    with suppress(InvalidArgumentError):
        if folder_name(name) == folder:
            return name
    return None


class Entry(NamedTuple):
    """A file as a listing shows it."""

    age: float  # seconds since it was last written
    size: int  # bytes


class Storage:
    """The root folder of one store, and every request made to its file system."""

    def __init__(self, url: str, storage_options: dict | None, fsync: bool):
        scheme, _, path = url.partition("://")
        self.display = mask(url)
        if not path:
            raise InvalidArgumentError(
                f"{url!r} names no folder; use e.g. {scheme}:///path/to/folder or {scheme}://s3://bucket/prefix"
            )
        try:
            self.fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
        except ImportError as e:
            protocol = path.split("://", 1)[0]
            hint = (
                "pip install 'dataknobs-pd[s3]'"
                if protocol in ("s3", "s3a")
                else f"install the fsspec implementation of {protocol}:// (see fsspec's known implementations)"
            )
            raise BackendUnavailableError(
                f"{self.display} needs a package that is not installed ({e}); run: {hint}"
            ) from e
        except (ValueError, TypeError) as e:
            raise InvalidArgumentError(f"cannot open {self.display}: {e} (check storage_options)") from e
        self.root = root.rstrip("/") or root
        self.local = type(self.fs) is LocalFileSystem
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else tuple(self.fs.protocol)
        self.object_store = bool(set(protocols) & OBJECT_STORES)
        self.s3 = bool({"s3", "s3a"} & set(protocols))
        self.pafs = pafs.LocalFileSystem() if self.local else pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        self.fsync = fsync and self.local
        self._probe()

    def dir(self, table: str) -> str:
        return f"{self.root}/{folder_name(table)}"

    def io(self, doing: str):
        """Turn whatever the file system raises into a StorageError naming the store and the act."""
        return storage_errors(doing, self.display)

    def _probe(self) -> None:
        """Fail at connect on a missing bucket or refused credentials, not in the middle of a write."""
        with self.io("opening the store"):
            if self.local:
                if os.path.exists(self.root) and not os.path.isdir(self.root):
                    raise StorageError(f"{self.display}: {self.root!r} is a file, not a folder")
                return
            try:
                self.fs.invalidate_cache(self.root)
                if self.s3 and "/" in self.root:  # one request, whether or not the folder exists yet
                    parent, _, name = self.root.rpartition("/")
                    self.fs.find(parent, prefix=name + "/", maxdepth=1, withdirs=True)
                else:
                    self.fs.ls(self.root, detail=False)
            except FileNotFoundError:
                bucket = self.root.split("/", 1)[0]
                seen = _BUCKETS.setdefault(self.fs, set())
                if self.object_store and bucket not in seen:
                    if not self.fs.exists(bucket):
                        raise StorageError(
                            f"{self.display}: bucket {bucket!r} does not exist (dataknobs-pd does not create buckets)"
                        ) from None
                    seen.add(bucket)

    # -- folders and files ---------------------------------------------------------------------
    def ensure_dir(self, path: str) -> None:
        # Not cached: a folder dropped, or removed behind the store's back, must come back on the next write.
        if self.local:
            os.makedirs(path, exist_ok=True)
        elif not self.object_store:  # object stores have no folders; makedirs could create a bucket
            self.fs.makedirs(path, exist_ok=True)

    def sync(self, path: str) -> None:
        if self.fsync:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

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

    def put_new(self, path: str, data: bytes, check: Callable[[bytes], None] | None = None) -> bool:
        """Write a small file only if none has that name (atomically, durably); False when one has.

        Locally the bytes go to a temporary file, flushed to the disk (fsync), read back and checked
        (the same bytes, and `check(bytes)`, which raises when they are not what they should say), then
        hard-linked to the name (a link never replaces a file), and the folder is synced: the name only
        ever holds the whole file. A full disk fails the temporary file, which is removed. On S3 the
        upload says If-None-Match: * and the store refuses a second one (an upload is whole or absent).
        """
        folder = path.rsplit("/", 1)[0]
        if self.local:
            done = self._link_new(path, data, check)
            if done:
                with suppress(OSError):  # the new name's durability; not every OS can sync a folder
                    self.sync(folder)
            return done
        if check is not None:
            check(data)
        try:
            if self.s3:
                self.fs.pipe_file(path, data, mode="create")
            else:  # other file systems: no conditional write; checked, then written (a small gap)
                if self.fs.exists(path):
                    return False
                try:
                    self.fs.pipe_file(path, data)
                except BaseException:  # a full disk may have left it cut short: it is no version (manifest.py)
                    with suppress(Exception):
                        self.fs.rm_file(path)
                    raise
        except FileExistsError:
            return False
        except OSError as e:
            if _precondition_failed(e):
                return False
            raise
        finally:
            self.fs.invalidate_cache(folder)
        return True

    def _link_new(self, path: str, data: bytes, check: Callable[[bytes], None] | None) -> bool:
        tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
        try:
            self._write_local(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), data)
            self._verify(tmp, data, check)
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            except OSError as e:
                if e.errno in _FAILED:
                    raise
            return self._create_new(path, data, check)  # no hard links on this file system
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp)

    def _create_new(self, path: str, data: bytes, check: Callable[[bytes], None] | None) -> bool:
        """Create the name exclusively, then fill it: readers may meet it empty or cut short meanwhile
        (manifest.py skips such a file), and a failure removes it (it is this writer's)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        try:
            self._write_local(fd, data)
            self._verify(path, data, check)
        except BaseException:
            with suppress(OSError):
                os.unlink(path)
            raise
        return True

    def _write_local(self, fd: int, data: bytes) -> None:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())

    def _verify(self, path: str, data: bytes, check: Callable[[bytes], None] | None) -> None:
        """Read a file just written back: the bytes written, and what they should say (`check`)."""
        with open(path, "rb") as f:
            raw = f.read()
        if raw != data:
            raise StorageError(
                f"{self.display}: {path!r} reads back {len(raw)} bytes, not the {len(data)} written; nothing was published"
            )
        if check is not None:
            check(raw)

    def write_whole(self, path: str, data: bytes) -> None:
        """Write a small file whole, replacing the one of that name, if any: locally through a temporary
        file, synced, then renamed over it (a reader or a full disk never meets it cut short)."""
        if not self.local:
            self.fs.pipe_file(path, data)  # an upload is whole or absent
            self.fs.invalidate_cache(path.rsplit("/", 1)[0])
            return
        replace_local(path, data, self.fsync)

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


_DENIED = ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch")


@contextmanager
def storage_errors(doing: str, display: str):
    """What a file system (fsspec, pyarrow, delta-rs) raises in the block, as a StorageError naming the
    store (`display`) and the act; the package's own errors pass as they are."""
    try:
        yield
    except DataKnobsError:
        raise
    except PermissionError as e:
        raise StorageError(
            f"{doing} in {display}: access denied ({e}); check the credentials and permissions given in storage_options"
        ) from e
    except FileNotFoundError as e:
        raise StorageError(f"{doing} in {display}: not found ({e})") from e
    except Exception as e:  # every failure of the store becomes a dk error
        text = str(e)
        if _disk_full(e):
            raise StorageError(
                f"{doing} in {display} failed: the disk is full ({text.splitlines()[0][:300]}); "
                f"free some space and call again"
            ) from e
        if any(w in text for w in _DENIED):  # a refusal that the library did not raise as PermissionError
            raise StorageError(
                f"{doing} in {display}: access denied ({text.splitlines()[0][:300]}); "
                f"check the credentials and permissions given in storage_options"
            ) from e
        raise StorageError(f"{doing} in {display} failed: {type(e).__name__}: {text[:500]}") from e


def _entry(info: dict, now: float) -> Entry:
    return Entry(now - modified(info, now), int(info.get("size") or 0))


def modified(info: dict, default: float = 0.0) -> float:
    """When a file an fsspec listing describes was last written (seconds since the epoch; `default` if unsaid)."""
    when: Any = info.get("mtime") or info.get("LastModified") or info.get("created")  # datetime, number or text
    return when.timestamp() if hasattr(when, "timestamp") else float(when or default)


def replace_local(path: str, data: bytes, fsync: bool = True) -> None:
    """Write a small local file whole, replacing the one of that name: a temporary file beside it, synced,
    renamed over it, the folder synced; on a failure (a full disk) the temporary file is removed and the
    old file, if any, stays as it was."""
    folder = os.path.dirname(path)
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
    if fsync and sys.platform != "win32":
        with suppress(OSError):  # the new name's durability; the file itself is whole either way
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _disk_full(e: BaseException | None) -> bool:
    """A full disk (or used-up quota), however the library wrapped it: an OSError's errno, or the text
    pyarrow and delta-rs give it."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _FULL:
            return True
        text = str(e)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


def _precondition_failed(e: BaseException | None) -> bool:
    """An S3 refusal of a conditional write (412 PreconditionFailed), however s3fs wrapped it."""
    while e is not None:
        text = f"{type(e).__name__} {e}"
        if "PreconditionFailed" in text or "412" in text or "ConditionalRequestConflict" in text:
            return True
        e = e.__cause__ or e.__context__
    return False
