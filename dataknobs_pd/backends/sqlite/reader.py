"""Reads of SQLite files in processes of their own, through ADBC's SQLite driver, the results sent back
as an Arrow IPC stream.

Why another process: ADBC's driver carries its own copy of SQLite, and two copies of SQLite in one
process corrupt a file: POSIX locks belong to the process, so neither copy sees the other's, and a copy
that closes its last connection removes the WAL the other is still writing. In the calling process the
store touches a file through Python's sqlite3 alone; between processes SQLite's locking holds, so a
reader process is as safe as any other reader of the file. This module, run as a script, is that
process: it imports pyarrow and the driver only (never this package, nor pandas), and serves one read
at a time on its stdin and stdout until its stdin closes (its parent exited).

One request: a pickled (path, sql, params, batch_rows), length-prefixed. One answer: an Arrow IPC
stream of the result's batches (an empty schema when the query failed before it had one), then a trailer:
b"." when it ran to its end, or b"!" and the error's text, length-prefixed.

In the calling process, `Readers` is a pool of such processes for the whole process, started on
demand and in the background: a read that finds none ready (the first one, or while they are all busy)
goes through the store's sqlite3 connection instead, so nothing waits for a process to start.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pyarrow as pa

_READY = b"R"
_MAX = 4  # reader processes at most: reads beyond that go through sqlite3
_LENGTH = struct.Struct("<Q")
_BUSY_MS = 30_000


class ReadError(Exception):
    """The reader process could not run the query to its end (its text says why)."""


# -- the reader process ---------------------------------------------------------------------------
def _serve() -> None:  # pragma: no cover - runs in the reader process (tested through Readers)
    import adbc_driver_sqlite.dbapi as adbc

    out, inp = sys.stdout.buffer, sys.stdin.buffer
    out.write(_READY)
    out.flush()
    while True:
        head = inp.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return  # the parent is gone
        path, sql, params, batch_rows = pickle.loads(inp.read(_LENGTH.unpack(head)[0]))
        error = None
        writer = None
        try:
            with adbc.connect(path, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")  # wait out a writer's brief exclusive moments
                cur.fetchall()
                cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
                cur.execute(sql, params)
                reader = cur.fetch_record_batch()
                writer = pa.ipc.new_stream(out, reader.schema)
                for batch in reader:
                    writer.write_batch(batch)
        except Exception as e:  # noqa: BLE001 - every error goes back to the caller as text
            error = f"{type(e).__name__}: {e}"
        if writer is None:
            writer = pa.ipc.new_stream(out, pa.schema([]))
        writer.close()
        if error is None:
            out.write(b".")
        else:
            text = error.encode()
            out.write(b"!" + _LENGTH.pack(len(text)) + text)
        out.flush()


# -- the calling process --------------------------------------------------------------------------
class _Process:
    """One reader process: started in the background, ready once it says so."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-P", os.path.abspath(__file__)],  # -P: its folder (types.py) not on sys.path
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self.ready = False

    def poll_ready(self) -> bool:
        """Whether it has started (without waiting); a process that died is never ready."""
        out = self.proc.stdout
        if not self.ready and out is not None and self.proc.poll() is None:
            if select.select([out.fileno()], [], [], 0)[0]:
                self.ready = out.read(1) == _READY
        return self.ready and self.proc.poll() is None

    def read(self, path: str, sql: str, params: list, batch_rows: int) -> Iterator[pa.RecordBatch]:
        request = pickle.dumps((path, sql, list(params), batch_rows))
        inp, out = self.proc.stdin, self.proc.stdout
        if inp is None or out is None:  # this module runs as a script too: it raises nothing of the package's
            raise OSError("the reader process has no pipes")
        inp.write(_LENGTH.pack(len(request)) + request)
        inp.flush()
        yield from pa.ipc.open_stream(out)
        if out.read(1) != b"!":
            return
        (n,) = _LENGTH.unpack(out.read(_LENGTH.size))
        raise ReadError(out.read(n).decode())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


class Readers:
    """The reader processes of this process (one pool for every SQLite file)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: list[_Process] = []
        self._busy = 0
        self._disabled = False

    def warm(self) -> None:
        """Start a reader process in the background if none is there, so that the first read finds one."""
        with self._lock:
            if not self._disabled and not self._idle and not self._busy:
                self._start()

    def wait(self, timeout: float) -> bool:
        """Start a reader process if none is there and wait until one is ready (tests and benchmarks)."""
        self.warm()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if any(p.poll_ready() for p in self._idle):
                    return True
            time.sleep(0.05)
        return False

    def _start(self) -> None:
        try:
            import adbc_driver_sqlite  # noqa: F401 - only to know the reader process could use it
        except ImportError:
            self._disabled = True
            return
        try:
            self._idle.append(_Process())
        except OSError:  # no interpreter to run (an embedded Python): sqlite3 reads everything
            self._disabled = True

    def _take(self) -> _Process | None:
        """A ready idle process, or None (after starting one in the background if there is room)."""
        with self._lock:
            for p in list(self._idle):
                if p.poll_ready():
                    self._idle.remove(p)
                    self._busy += 1
                    return p
                if p.proc.poll() is not None:  # died
                    self._idle.remove(p)
            if not self._disabled and len(self._idle) + self._busy < _MAX and not any(not p.ready for p in self._idle):
                self._start()
            return None

    def read(self, path: str, sql: str, params: list, batch_rows: int) -> Iterator[pa.RecordBatch] | None:
        """The result's batches from a reader process, or None when none is ready (read it another way)."""
        p = self._take()
        if p is None:
            return None
        return self._reading(p, os.path.abspath(path), sql, params, batch_rows)

    def _reading(self, p: _Process, path, sql, params, batch_rows) -> Iterator[pa.RecordBatch]:
        finished = False
        try:
            yield from p.read(path, sql, params, batch_rows)
            finished = True
        except ReadError:
            finished = True  # the answer was read whole: the process can serve again
            raise
        finally:
            with self._lock:
                self._busy -= 1
                if finished:
                    self._idle.append(p)
            if not finished:  # stopped halfway (the caller stopped reading, or the pipe broke): end it
                p.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for p in idle:
            p.close()

    def forget(self) -> None:
        """In a forked child: the parent's reader processes are the parent's (their pipes too)."""
        self._lock = threading.Lock()
        self._idle, self._busy = [], 0


READERS = Readers()
atexit.register(READERS.close)
os.register_at_fork(after_in_child=READERS.forget)

if __name__ == "__main__":
    _serve()
