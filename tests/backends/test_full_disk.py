"""File stores on a full disk, and after a crash: a write the disk has no room for fails with a StorageError
that says so, keeps the committed version whole (for this Store and a fresh one) and leaves nothing behind,
and once there is room again the next write builds on that version; a manifest left empty or cut short is
never a table's version.

The disk is a tmpfs of 2 MB, filled by a file to leave a few free pages. Where none can be mounted (not
root), FullDiskFS stands in: the local disk through fsspec, whose writes fail with ENOSPC past a number
of pages. Both run when both can.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import uuid

import fsspec
import numpy as np
import pandas as pd
import pytest
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd import StorageError
from dataknobs_pd.backends.files.storage import Storage

FORMATS = ["parquet", "csv", "jsonl"]
PAGE = 4096  # what a tmpfs allocates a file's bytes by


# -- the disks -----------------------------------------------------------------------------------------
class _Limited(LocalFileOpener):
    """A file FullDiskFS writes: each page it grows by comes out of FullDiskFS.free."""

    written = 0

    def write(self, data):
        pages = -(-(self.written + len(data)) // PAGE) - -(-self.written // PAGE)
        if FullDiskFS.free is not None:
            if pages > FullDiskFS.free:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
            FullDiskFS.free -= pages
        self.written += len(data)
        return super().write(data)


class FullDiskFS(LocalFileSystem):
    """The local disk with room for `free` more pages (None: no limit)."""

    protocol = ("fulldisk",)
    free: int | None = None

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).removeprefix("fulldisk://"))

    def _open(self, path, mode="rb", block_size=None, **kwargs):
        if "r" in mode:
            return super()._open(path, mode, block_size, **kwargs)
        return _Limited(self._strip_protocol(path), mode, fs=self, **kwargs)


class Disk:
    """A small disk: `leave(n)` fills it to n free pages, `free()` makes room again."""

    def __init__(self, root: str, tmpfs: bool):
        self.root, self.tmpfs = root, tmpfs
        self.filler = f"{root}/filler"

    def url(self, fmt: str, name: str) -> str:
        return f"{fmt}://{self.root}/{name}" if self.tmpfs else f"{fmt}://fulldisk://{self.root}/{name}"

    def leave(self, pages: int) -> None:
        if not self.tmpfs:
            FullDiskFS.free = pages
            return
        st = os.statvfs(self.root)
        with open(self.filler, "wb") as f:
            f.write(b"\0" * (st.f_bavail * st.f_frsize - pages * PAGE))
        st = os.statvfs(self.root)
        assert st.f_bavail * st.f_frsize == pages * PAGE

    def free(self) -> None:
        FullDiskFS.free = None
        if os.path.exists(self.filler):
            os.remove(self.filler)


def _mount(root: str) -> bool:
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", root], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@pytest.fixture(scope="module", params=["tmpfs", "fsspec"])
def small_disk(request, tmp_path_factory):
    root = str(tmp_path_factory.mktemp(request.param))
    mounted = request.param == "tmpfs" and _mount(root)  # not root: the fault injection instead, never a skip
    fsspec.register_implementation("fulldisk", FullDiskFS, clobber=True)
    try:
        yield Disk(root, mounted)
    finally:
        FullDiskFS.free = None
        if mounted:
            subprocess.run(["umount", root], check=False, capture_output=True)


@pytest.fixture
def disk(small_disk):
    yield small_disk
    small_disk.free()
    for name in os.listdir(small_disk.root):
        shutil.rmtree(f"{small_disk.root}/{name}", ignore_errors=True)


# -- what a table holds, and what its folder does --------------------------------------------------------
def rows(ids, v: float = 0.5) -> pd.DataFrame:
    ids = np.asarray(ids, dtype="int64")
    return pd.DataFrame({"id": ids, "v": ids * v, "s": [f"row {i}" for i in ids]})


def upserted(before: pd.DataFrame, change: pd.DataFrame) -> pd.DataFrame:
    out = pd.concat([before[~before["id"].isin(change["id"])], change])
    return out.sort_values("id", ignore_index=True)


def leftovers(folder: str, fmt: str) -> list[str]:
    """What the table's folder holds besides the parts its newest manifest lists (or keeps as retired)
    and its manifests, and any manifest that is not a whole JSON document."""
    log = f"{folder}/_dk_{fmt}"
    manifests = sorted(n for n in os.listdir(log) if n.endswith(".json") and ".tmp-" not in n)
    bad = []
    for n in manifests:
        with open(f"{log}/{n}", "rb") as f:
            raw = f.read()
        try:
            json.loads(raw)
        except ValueError:
            bad.append(f"_dk_{fmt}/{n} ({len(raw)} bytes)")
    with open(f"{log}/{manifests[-1]}") as f:
        newest = json.load(f)
    listed = {p["file"] for p in newest.get("parts", ())} | {r["file"] for r in newest.get("retired", ())}
    others = [n for n in os.listdir(folder) if n != f"_dk_{fmt}" and n not in listed]
    return sorted(bad + others + [f"_dk_{fmt}/{n}" for n in os.listdir(log) if n not in manifests])


def readable(url: str, writer, expected: pd.DataFrame) -> None:
    """The table reads as `expected` through the writer's Store and through others (URL and a new one)."""
    assert_frame_equal(dk.load(writer, "t"), expected)
    assert_frame_equal(dk.load(url, "t"), expected)
    with dk.connect(url, lock_timeout=7) as fresh:  # other options: not the backend the others share
        assert fresh.tables() == ["t"]
        assert_frame_equal(dk.load(fresh, "t"), expected)


# -- a full disk ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pages", [0, 1, 2, 3])
@pytest.mark.parametrize("how", ["append", "upsert"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_write_the_disk_has_no_room_for_changes_nothing(disk, fmt, how, pages):
    name = uuid.uuid4().hex[:12]
    url, folder = disk.url(fmt, name), f"{disk.root}/{name}/t"
    writer = dk.connect(url, retention=0)  # the old version's parts go at the commit, as locally by default
    committed = rows(range(100))
    committed.dk.save(writer, "t", key="id")
    change = rows([5, 100], v=9.0) if how == "upsert" else rows([100])

    disk.leave(pages)
    try:
        change.dk.save(writer, "t", if_exists=how)
    except StorageError as e:
        assert "disk is full" in str(e) and name in str(e), e  # says why, naming the store
    else:
        assert pages, "nothing can be written on a disk without a free page"
        committed = upserted(committed, change)
    readable(url, writer, committed)
    assert leftovers(folder, fmt) == []
    assert not [n for n in os.listdir(disk.root) if ".tmp-" in n]

    disk.free()  # room again: the next write builds on the version committed
    more = rows([101, 102], v=2.0)
    more.dk.save(writer, "t", if_exists="upsert")
    readable(url, writer, upserted(committed, more))
    assert leftovers(folder, fmt) == []
    writer.close()


# -- a crash: a manifest left empty or cut short ----------------------------------------------------------
@pytest.mark.parametrize("torn", ["empty", "cut short"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_or_cut_short_newest_manifest_is_not_the_tables_version(tmp_path, fmt, torn):
    url = f"{fmt}://{tmp_path}/store"
    folder, log = f"{tmp_path}/store/t", f"{tmp_path}/store/t/_dk_{fmt}"
    writer = dk.connect(url, retention=0)
    first = rows(range(100))
    first.dk.save(writer, "t", key="id")
    with open(f"{log}/{1:020d}.json", "rb") as f:
        whole = f.read()
    with open(f"{log}/{2:020d}.json", "wb") as f:  # as a crash (or a full disk) of a writer of version 2 left it
        f.write(b"" if torn == "empty" else whole[: len(whole) // 2])

    with dk.connect(url, lock_timeout=7) as other:  # a Store that reads the table for the first time
        assert other.tables() == ["t"]
        assert_frame_equal(dk.load(other, "t"), first)
        more = rows([100, 101])
        more.dk.save(other, "t", if_exists="append")  # builds on version 1, numbered past the torn one
    assert sorted(os.listdir(log)) == [f"{3:020d}.json"]  # version 1 superseded, the torn one too
    readable(url, writer, pd.concat([first, more], ignore_index=True))
    assert leftovers(folder, fmt) == []

    with open(f"{log}/{4:020d}.json", "wb"):  # and a writer that had read the table before
        pass
    last = rows([102])
    last.dk.save(writer, "t", if_exists="append")
    readable(url, writer, pd.concat([first, more, last], ignore_index=True))
    assert sorted(os.listdir(log)) == [f"{5:020d}.json"]


def test_a_drop_is_a_manifest_that_says_so(tmp_path):
    url = f"parquet://{tmp_path}/store"
    store = dk.connect(url, retention=0)
    rows(range(10)).dk.save(store, "t", key="id")
    store.drop("t")
    assert store.tables() == [] and not os.path.exists(f"{tmp_path}/store/t")  # locally nothing stays
    with pytest.raises(dk.TableNotFoundError):
        dk.load(url, "t")
    rows(range(3)).dk.save(store, "t", key="id")
    assert_frame_equal(dk.load(url, "t"), rows(range(3)))


def test_without_hard_links_a_publish_the_disk_cuts_short_leaves_no_manifest(tmp_path, monkeypatch):
    """A file system without hard links: the manifest's name is filled after it is created; a full disk
    then removes it, and the failure is a StorageError."""
    url = f"parquet://{tmp_path}/store"
    store = dk.connect(url, retention=0)
    first = rows(range(100))
    first.dk.save(store, "t", key="id")

    def no_link(src, dst, *args, **kwargs):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM), src)

    write_local = Storage._write_local
    calls = []

    def full_on_the_name(self, fd, data):  # the temporary file fits, the name's copy does not
        calls.append(fd)
        if len(calls) % 2:
            return write_local(self, fd, data)
        with os.fdopen(fd, "wb") as f:
            f.write(data[: len(data) // 3])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(Storage, "_write_local", full_on_the_name)
    with pytest.raises(StorageError, match="disk is full"):
        rows([100]).dk.save(store, "t", if_exists="append")
    assert leftovers(f"{tmp_path}/store/t", "parquet") == []
    readable(url, store, first)

    monkeypatch.setattr(Storage, "_write_local", write_local)  # room again; still no hard links
    rows([100]).dk.save(store, "t", if_exists="append")
    readable(url, store, rows(range(101)))
    assert leftovers(f"{tmp_path}/store/t", "parquet") == []
