"""Dry runs and change tracking: update_batch of 10% of 1M rows with dry_run=True, and with
track_changes=True, against the same call plain, side by side in one run (SQLite, and PostgreSQL
when a server answers). The table is restored before each timed run.

    python benchmarks/bench_changes.py                 # 1M rows
    python benchmarks/bench_changes.py --rows 200000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the package, when not installed

from common import mixed_frame, report, save_results, timed

import dataknobs_pd as dk


def sqlite_case(df, upd, repeat: int) -> list:
    folder = tempfile.mkdtemp(prefix="dk-bench-changes-")
    base, live = os.path.join(folder, "base.db"), os.path.join(folder, "live.db")
    with dk.connect(f"sqlite:///{base}") as s:
        df.dk.save(s, "t")
    url = f"sqlite:///{live}"

    def restore():
        dk.connect(url).close()  # no pooled connection may keep the old file open
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(base + suffix):
                shutil.copy(base + suffix, live + suffix)
            elif os.path.exists(live + suffix):
                os.remove(live + suffix)

    def run(**kw):
        def go():
            res = upd.dk.update_batch(url, "t", **kw)
            assert res.ok, res

        return go

    rows = [
        ("update_batch", timed(run(), restore, repeat), ""),
        ("update_batch dry_run=True", timed(run(dry_run=True), restore, repeat), "nothing written"),
        ("update_batch track_changes=True", timed(run(track_changes=True), restore, repeat), "one keyed read"),
    ]
    shutil.rmtree(folder, ignore_errors=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    df = mixed_frame(args.rows)
    rng = np.random.default_rng(3)
    at = np.sort(rng.choice(args.rows, args.rows // 10, replace=False))
    upd = df.iloc[at][["id", "qty", "price"]].copy()
    upd["qty"] = upd["qty"] + 1
    upd["price"] = upd["price"] * 2
    rows = sqlite_case(df, upd, args.repeat)
    records = {
        "sqlite": report(
            f"SQLite, update_batch of {len(upd):,} of {args.rows:,} rows (2 columns)", rows, "update_batch"
        )
    }
    print(f"\nresults: {save_results('changes', records)}")


if __name__ == "__main__":
    main()
