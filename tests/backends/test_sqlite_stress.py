"""One SQLite file used by many threads of one process: the acceptance tests of one SQLite library per process
and of Store handles that share connections.

Two copies of SQLite in one process (Python's sqlite3 for writes and the one inside adbc_driver_sqlite for
reads) corrupt the file and lose acknowledged rows: POSIX locks belong to the process, so neither copy sees the
other's, and a copy closing its last connection removes the WAL the other is still writing. And a
`with dk.connect(url)` in one thread must not close the connection another thread is writing through.

The stress runs in a subprocess (tests/backends/sqlite_stress_worker.py), so that a crash is a failing test
with its signal, for DK_SQLITE_STRESS_SECONDS (30 by default) per variant. The parent checks with plain
sqlite3 that every acknowledged row is in the file and that the file is whole.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import dataknobs_pd as dk
from tests.backends.sqlite_stress_worker import frame

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("DK_SQLITE_STRESS_SECONDS", "30"))


def _worker(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.backends.sqlite_stress_worker", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _exit(proc: subprocess.CompletedProcess) -> str:
    if proc.returncode < 0:
        return f"killed by {signal.Signals(-proc.returncode).name}"
    return f"exit code {proc.returncode}"


def _events(log: Path) -> list[dict]:
    """The worker's log; a line cut short by a crash is left out."""
    events = []
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return events


def _ids(con: sqlite3.Connection, table: str) -> set[int]:
    return {i for (i,) in con.execute(f'SELECT id FROM "{table}"')}


@pytest.mark.parametrize("with_pandas", [False, True], ids=["dk", "dk+pandas"])
def test_threads_writing_and_reading_one_file_lose_nothing(tmp_path, with_pandas):
    log = tmp_path / "log.jsonl"
    args = ["stress", str(tmp_path), str(SECONDS), str(log)] + (["pandas"] if with_pandas else [])
    proc = _worker(*args, timeout=SECONDS + 120)
    events = _events(log)
    acked = {i for e in events if "ack" in e for i in range(*e["ack"])} - {
        k for e in events if "ack" in e for k in e["failed"]
    }
    plain = {i for e in events if "plain" in e for i in range(*e["plain"])}
    errors = [e["error"] for e in events if "error" in e]

    problems = []
    if proc.returncode != 0:
        problems.append(f"the worker process: {_exit(proc)}; its stderr ends:\n{proc.stderr[-3000:]}")
    if errors:
        problems.append(f"{len(errors)} call(s) raised, the first:\n" + "\n".join(errors[:5]))
    con = sqlite3.connect(tmp_path / "s.db")
    try:
        check = [r for (r,) in con.execute("PRAGMA integrity_check")]
        if check != ["ok"]:
            problems.append(f"PRAGMA integrity_check: {check[:5]}")
        missing = acked - _ids(con, "t")
        if missing:
            problems.append(
                f"{len(missing)} of {len(acked)} acknowledged rows of t missing, e.g. {sorted(missing)[:5]}"
            )
        lost = plain - _ids(con, "plain") if with_pandas else set()
        if lost:
            problems.append(f"{len(lost)} of {len(plain)} rows that to_sql wrote into plain are missing")
    except sqlite3.Error as e:
        problems.append(f"reading the file with sqlite3: {type(e).__name__}: {e}")
    finally:
        con.close()
    assert not problems, "\n\n".join(problems)
    assert len(acked) > 10_000, f"only {len(acked)} rows acknowledged in {SECONDS}s"  # the stress happened


def test_a_process_that_saves_and_loads_maps_one_sqlite_library(tmp_path):
    """Files mapped into the process that are SQLite: libsqlite3 (which Python's _sqlite3 module links),
    and any other shared object embedding its own copy, such as adbc_driver_sqlite's driver."""
    proc = _worker("maps", str(tmp_path), timeout=120)
    assert proc.returncode == 0, f"{_exit(proc)}: {proc.stderr[-3000:]}"
    libraries = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(libraries) == 1, f"{len(libraries)} SQLite libraries in one process: {libraries}"


def test_closing_one_handle_never_breaks_another(tmp_path):
    """Connections are pooled per store (a file by its resolved path, however the URL spells it); close()
    and a with-block release what that handle holds and never close a connection another holder uses."""
    url, other = f"sqlite:///{tmp_path}/h.db", f"sqlite:///{tmp_path}/./h.db"
    a, b, c = dk.connect(url), dk.connect(other), dk.connect(url)
    try:
        frame(0).dk.save(a, "t")

        def frames_closing_other_handles():  # a stream: the save's write transaction is open in between
            yield frame(1_000)
            c.close()
            with dk.connect(url) as d:
                assert len(dk.load(d, "t", limit=10)) == 10
            with dk.connect(other):
                pass
            yield frame(2_000)

        res = dk.save(frames_closing_other_handles(), a, "t", if_exists="append")
        assert (res.succeeded, res.failed) == (2_000, 0)
        assert len(dk.load(b, "t")) == 3_000
        b.close()
        assert frame(3_000).dk.save(a, "t", if_exists="append").succeeded == 1_000
        pd.testing.assert_frame_equal(dk.load(a, "t", limit=1_000), frame(0))

        for closed in (b, c):
            with pytest.raises(dk.DataKnobsError, match="closed"):
                frame(9_000).dk.save(closed, "t", if_exists="append")
            with pytest.raises(dk.DataKnobsError, match="closed"):
                dk.load(closed, "t")
        with dk.connect(other) as e:  # a new handle after all these closes
            assert len(dk.load(e, "t")) == 4_000
    finally:
        a.close()
