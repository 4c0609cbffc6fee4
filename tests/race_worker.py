"""One writer or reader of the concurrency tests, run as its own process.

    python -m tests.race_worker write URL TABLE LO HI TAG GO_FILE OPTIONS_JSON
    python -m tests.race_worker read URL TABLE SECONDS GO_FILE OPTIONS_JSON

Waits until GO_FILE exists (so that every process starts at once), then upserts ids LO..HI-1
with w=TAG, or loads the table again and again; prints one JSON line of what it saw.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pandas as pd

import dataknobs_pd as dk


def _wait(go: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("never told to go")
        time.sleep(0.005)


def write(url: str, table: str, lo: int, hi: int, tag: str, go: str, options: dict) -> dict:
    df = pd.DataFrame({"id": np.arange(lo, hi, dtype="int64"), "w": tag})
    _wait(go)
    try:
        res = df.dk.save(dk.connect(url, **options), table, if_exists="upsert")
    except dk.DataKnobsError as e:
        return {"error": type(e).__name__, "message": str(e)}
    return {"succeeded": res.succeeded, "failed": res.failed, "total": res.total}


def read(url: str, table: str, seconds: float, go: str, options: dict) -> dict:
    _wait(go)
    counts, problems = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            out = dk.load(dk.connect(url, **options), table)
        except dk.TableNotFoundError:
            counts.append(0)
            continue
        except dk.DataKnobsError as e:
            problems.append(f"{type(e).__name__}: {e}")
            continue
        if not out["id"].is_unique or not out["id"].is_monotonic_increasing:
            problems.append("ids not unique or not in key order")
        counts.append(len(out))
    return {"counts": counts, "problems": problems}


if __name__ == "__main__":
    what, url, table, *rest = sys.argv[1:]
    if what == "write":
        out = write(url, table, int(rest[0]), int(rest[1]), rest[2], rest[3], json.loads(rest[4]))
    else:
        out = read(url, table, float(rest[0]), rest[1], json.loads(rest[2]))
    print(json.dumps(out))
