"""The process that tests/backends/test_sqlite_stress.py runs, so that a crash (SIGBUS, a segfault) is its
exit status and not the test runner's death.

    python -m tests.backends.sqlite_stress_worker stress DIR SECONDS LOG [pandas]
    python -m tests.backends.sqlite_stress_worker maps DIR

stress: for SECONDS, 2 threads append 1,000-row frames to table `t` of DIR/s.db, each through a Store of its
own (one spells the path DIR/./s.db), while 3 threads open a Store of the same file (both spellings), load up
to 3,000 rows and close it; with `pandas`, one more thread writes table `plain` with `df.to_sql` and reads `t`
with `pd.read_sql` over its own `sqlite3.connect`. Every event is one JSON line appended to LOG as it happens
(so that it outlives a crash): {"ack": [lo, hi], "failed": [keys]} for a save that returned (ids lo..hi-1
minus the failed keys), {"plain": [lo, hi]} for a to_sql that returned, {"error": "..."} for anything raised.

maps: saves and loads through a SQLite file store, then prints the SQLite libraries this process maps, as JSON.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sqlite3
import sys
import threading
import time
import traceback

import numpy as np
import pandas as pd

import dataknobs_pd as dk

ROWS = 1_000


def frame(lo: int) -> pd.DataFrame:
    ids = np.arange(lo, lo + ROWS, dtype="int64")
    return pd.DataFrame(
        {
            "id": ids,
            "x": ids * 0.5,
            "s": [f"row {i}" for i in ids],
            "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(ids % 100_000, unit="s"),
        }
    )


class Log:
    def __init__(self, path: str):
        self._file = open(path, "a")  # open for the life of the process
        self._lock = threading.Lock()

    def write(self, **event) -> None:
        with self._lock:
            self._file.write(json.dumps(event) + "\n")
            self._file.flush()


def loop(log: Log, name: str, deadline: float, step) -> None:
    """Run step(n) for n = 0, 1, ... until the deadline; whatever it raises is logged and the loop goes on."""
    n = 0
    while time.monotonic() < deadline:
        try:
            step(n)
        except BaseException as e:  # noqa: BLE001 - every failure is the test's to report
            log.write(error=f"{name}: {type(e).__name__}: {e}", trace=traceback.format_exc(limit=6))
        n += 1


def writer(log: Log, url: str, base: int, deadline: float) -> None:
    store = dk.connect(url)

    def step(n: int) -> None:
        lo = base + n * ROWS
        res = frame(lo).dk.save(store, "t", if_exists="append")
        log.write(ack=[lo, lo + ROWS], failed=[int(k) for k in res.failures["key"]])
        if res.failed:
            log.write(error=f"writer {url}: {res}\n{res.failures.head()}")

    try:
        loop(log, f"writer {url}", deadline, step)
    finally:
        store.close()


def reader(log: Log, url: str, desc: bool, deadline: float) -> None:
    def step(n: int) -> None:
        with dk.connect(url) as s:
            out = dk.load(s, "t", order_by=("id", "desc") if desc else None, limit=3_000)
        if not out["id"].is_unique or len(out) == 0:
            log.write(error=f"reader {url}: {len(out)} rows, ids unique: {out['id'].is_unique}")

    loop(log, f"reader {url}", deadline, step)


def plain_sqlite(log: Log, path: str, deadline: float) -> None:
    """pandas over the sqlite3 module: to_sql into `plain`, read_sql of the newest rows of `t`."""

    def step(n: int) -> None:
        con = sqlite3.connect(path, timeout=30)
        try:
            lo = n * ROWS
            frame(lo).to_sql("plain", con, if_exists="append", index=False)
            log.write(plain=[lo, lo + ROWS])
            pd.read_sql("SELECT * FROM t ORDER BY id DESC LIMIT 2000", con)
        finally:
            con.close()

    loop(log, "pandas", deadline, step)


def stress(folder: str, seconds: float, log_path: str, with_pandas: bool) -> None:
    log = Log(log_path)
    path = os.path.join(folder, "s.db")
    urls = [f"sqlite:///{path}", f"sqlite:///{os.path.join(folder, '.', 's.db')}"]
    with dk.connect(urls[0]) as s:  # the table exists before any reader looks
        frame(0).dk.save(s, "t")
    log.write(ack=[0, ROWS], failed=[])
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=writer, args=(log, urls[i], (i + 1) * 10**9, deadline)) for i in range(2)]
    threads += [threading.Thread(target=reader, args=(log, urls[i % 2], i == 1, deadline)) for i in range(3)]
    if with_pandas:
        threads.append(threading.Thread(target=plain_sqlite, args=(log, path, deadline)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def sqlite_libraries() -> list[str]:
    """The mapped files that are a SQLite library: 'sqlite' in the name (but not Python's _sqlite3 module,
    which links the system's libsqlite3), or a shared object that embeds SQLite (its file-header string)."""
    files = set()
    for line in open("/proc/self/maps"):
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            files.add(parts[5].strip())
    found = []
    for f in sorted(files):
        name = os.path.basename(f)
        if name.startswith("_sqlite3") or ".so" not in name:
            continue
        if "sqlite" in name.lower():
            found.append(f)
            continue
        try:
            with open(f, "rb") as fh:
                if b"SQLite format 3\x00" in fh.read():
                    found.append(f)
        except OSError:
            pass
    return found


def maps(folder: str) -> None:
    url = f"sqlite:///{os.path.join(folder, 'm.db')}"
    with dk.connect(url) as s:
        frame(0).dk.save(s, "t")
        frame(ROWS).dk.save(s, "t", if_exists="append")
        assert len(dk.load(s, "t")) == 2 * ROWS
        assert len(dk.load(s, "t", limit=10)) == 10
        print(json.dumps(sqlite_libraries()))  # while the store is open


if __name__ == "__main__":
    faulthandler.enable()  # a crash prints every thread's stack to stderr
    what, *args = sys.argv[1:]
    if what == "stress":
        stress(args[0], float(args[1]), args[2], args[3:] == ["pandas"])
    else:
        maps(args[0])
