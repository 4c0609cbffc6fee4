"""Several processes creating, upserting and reading one table at once: every row a writer reports
saved is in the table exactly once, a writer that reports an error wrote nothing, and a reader sees
whole versions only. Bounded in time; what it asserts does not depend on who wins. On S3 (moto's
server) nothing makes the writers wait: the put-if-absent commit alone decides."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dataknobs_pd as dk
from tests import pg, s3_server

ROOT = Path(__file__).resolve().parent.parent
STORES = {
    "sqlite": lambda tmp: f"sqlite:///{tmp}/race.db",
    "postgresql": pg.new_store_url,
    "parquet": lambda tmp: f"parquet://{tmp}/files",
    "csv": lambda tmp: f"csv://{tmp}/files",
    "jsonl": lambda tmp: f"jsonl://{tmp}/files",
    "parquet-s3": lambda tmp: s3_server.store_spec("parquet"),  # (URL, connect options)
}
ROWS = 20_000  # per writer; neighbouring writers overlap by half


def _start(args: list[str], options: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.race_worker", *args, json.dumps(options)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("writers", [3])  # one creates the table, the others find it made; all overlap
@pytest.mark.parametrize("backend", sorted(STORES))
def test_writers_racing_to_create_and_upsert_one_table(tmp_path, backend, writers):
    spec = STORES[backend](tmp_path)
    url, options = spec if isinstance(spec, tuple) else (spec, {})
    go = tmp_path / "go"
    ranges = [(i * ROWS // 2, i * ROWS // 2 + ROWS) for i in range(writers)]
    procs = [
        _start(["write", url, "t", str(lo), str(hi), f"w{i}", str(go)], options) for i, (lo, hi) in enumerate(ranges)
    ]
    reader = _start(["read", url, "t", "3", str(go)], options)
    time.sleep(1.5)  # every process has imported the package and waits for the go
    go.touch()
    reports = [_finish(p) for p in procs]
    seen = _finish(reader)

    written: set[int] = set()
    for (lo, hi), rep in zip(ranges, reports):
        if "error" in rep:  # a writer that lost a race says so and wrote nothing
            assert rep["error"] == "ConcurrentWriteError", rep
            continue
        assert rep == {"succeeded": hi - lo, "failed": 0, "total": hi - lo}, rep
        written |= set(range(lo, hi))
    assert written, reports
    out = dk.load(dk.connect(url, **options), "t")
    assert out["id"].is_unique
    assert set(out["id"]) == written  # nothing reported saved is missing, nothing unreported is there
    for (lo, hi), rep in zip(ranges, reports):  # each id holds the tag of one writer that wrote it
        if "error" not in rep:
            tags = set(out.loc[out["id"].between(lo, hi - 1), "w"])
            assert tags <= {f"w{i}" for i, r in enumerate(reports) if "error" not in r}
    assert not seen["problems"], seen["problems"][:3]
    assert seen["counts"] == sorted(seen["counts"]), "a reader saw the table shrink"
    assert seen["counts"] and set(seen["counts"]) <= {0} | _possible_counts(ranges, reports)


def _possible_counts(ranges, reports) -> set[int]:
    """Row counts of every state the table can pass through: the union of any subset of successful writers."""
    ok = [set(range(lo, hi)) for (lo, hi), r in zip(ranges, reports) if "error" not in r]
    out = set()
    for mask in range(1, 2 ** len(ok)):
        out.add(len(set().union(*(s for i, s in enumerate(ok) if mask >> i & 1))))
    return out
