"""The root folder of a store kept on a file system, local or fsspec (the file stores and Delta): where it
is (a path, or an fsspec URL and storage_options), the probe at connect, what the file system raises as a
StorageError naming the store, small files written whole or put-if-absent, the folder a table lives in,
and the one list of object-store protocols."""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable
from contextlib import contextmanager, suppress

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..errors import BackendUnavailableError, DataKnobsError, InvalidArgumentError, StorageError
from ..names import check_table_name
from ..urls import mask

# fsspec protocols of object stores: no folders (a key is a whole path), buckets dataknobs-pd never creates
OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "r2", "b2"}
_MAX_FOLDER = 200  # bytes of an encoded table name; most file systems allow 255
_BUCKETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # file system -> buckets known to exist
_FULL = {getattr(errno, n) for n in ("ENOSPC", "EDQUOT") if hasattr(errno, n)}  # a full disk, a used-up quota
# os.link's failures that are the publish's own (a full disk, a failing or read-only device): no reason to
# publish another way. Any other one says the file system has no hard links (vfat, some FUSE and network ones).
_FAILED = _FULL | {errno.EIO, errno.EROFS}
_DENIED = ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch")


def folder_name(table: str) -> str:
    """The folder a table lives in: its name percent-encoded, never '.', '..' or a path."""
    check_table_name(table)  # also keeps user tables apart from the stores' own folders (ROOT/_dk_locks)
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


class Folder:
    """The root folder of one store (`scheme://PATH`, PATH a local path or an fsspec URL) on its file system.

    `local` is the local disk, reached through `os` (an fsspec subclass of it is not: it goes through
    fsspec); `object_store` one of OBJECT_STORES; `s3` S3, which takes conditional writes."""

    def __init__(self, url: str, storage_options: dict | None, fsync: bool = True):
        scheme, _, path = url.partition("://")
        self.display = mask(url)
        if not path:
            raise InvalidArgumentError(
                f"{url!r} names no folder; use e.g. {scheme}:///path/to/folder or {scheme}://s3://bucket/prefix"
            )
        try:
            self.fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
        except ImportError as e:
            hint = self.install_hint(path.split("://", 1)[0])
            raise BackendUnavailableError(
                f"{self.display} needs a package that is not installed ({e}); run: {hint}"
            ) from e
        except (ValueError, TypeError) as e:
            raise InvalidArgumentError(f"cannot open {self.display}: {e} (check storage_options)") from e
        self.root = root.rstrip("/") or root
        self.local = type(self.fs) is LocalFileSystem
        protocol = self.fs.protocol
        self.protocols: tuple[str, ...] = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        self.object_store = bool(set(self.protocols) & OBJECT_STORES)
        self.s3 = bool({"s3", "s3a"} & set(self.protocols))
        self.fsync = fsync and self.local

    def install_hint(self, protocol: str) -> str:
        """What to install for a file system whose package is missing."""
        if protocol in ("s3", "s3a"):
            return "pip install 'dataknobs-pd[s3]'"
        return f"install the fsspec implementation of {protocol}:// (see fsspec's known implementations)"

    def io(self, doing: str):
        """Turn whatever the file system raises into a StorageError naming the store and the act."""
        return storage_errors(doing, self.display)

    def probe(self) -> None:
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

    def sync(self, path: str) -> None:
        """Flush a local file (or folder) to the disk, when the store syncs."""
        if self.fsync:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # -- small files written whole -----------------------------------------------------------------
    def write_whole(self, path: str, data: bytes) -> None:
        """Write a small file whole, replacing the one of that name, if any: locally through a temporary
        file, synced, then renamed over it (a reader or a full disk never meets it cut short)."""
        if not self.local:
            self.fs.pipe_file(path, data)  # an upload is whole or absent
            self.fs.invalidate_cache(path.rsplit("/", 1)[0])
            return
        replace_local(path, data, self.fsync)

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
                except BaseException:  # a full disk may have left it cut short: the reader skips such a file
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
        (and must skip such a file), and a failure removes it (it is this writer's)."""
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
