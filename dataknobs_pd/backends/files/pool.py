"""The worker threads that write a file store's part files while the next chunk converts."""

from __future__ import annotations

import os
import urllib.parse
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import pyarrow as pa

from .commit import Tx
from .formats import Format
from .storage import Storage


class Writers:
    """The worker threads that write part files while the next chunk converts."""

    def __init__(self, storage: Storage, fmt: Format):
        self.storage, self.format = storage, fmt
        self.workers = max(2, min(4, os.cpu_count() or 2))
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, tx: Tx, path: str, data: pa.Table, schema) -> None:
        tx.created.append(path)
        while sum(not f.done() for f in tx.pending.values()) >= 2 * self.workers:  # bounded memory
            wait(list(tx.pending.values()), return_when=FIRST_COMPLETED)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="dk-files")
        tx.pending[path] = self._pool.submit(self.write, path, data, schema)

    def write(self, path: str, data: pa.Table, schema) -> int:
        """Write one part file (on a worker thread, or in the caller's), flushed to the disk before a manifest
        can list it; returns its size in bytes."""
        with self.storage.open_write(path) as out:
            self.format.write(out, data, schema)
            size = out.tell()
        return size

    def settle(self, tx: Tx, path: str | None = None, cancel: bool = False, needed: set | None = None) -> None:
        """Wait for the part writes still running (all, or the one of `path`); raise the first failure.

        A rollback (cancel=True) still waits, so that no file appears after its removal. With
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
            with self.storage.io(f"writing table {table!r}"):
                raise failure

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
