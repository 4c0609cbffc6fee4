"""The cost of checks before writing (validate=, a pandera schema of five checks), side by side in one run,
on the mixed-dtype frame saved into a SQLite table made anew (if_exists="replace"):

    (a) a clean save with validate=schema, against pandera's own schema.validate(df, lazy=True) plus the
        plain save, each timed alone and added up (goal: within 1.1x)
    (b) the same with 0.1% of the rows failing a check (reported, the rest written), against the same sum

    python benchmarks/bench_checks.py                  # 1M rows
    python benchmarks/bench_checks.py --rows 100000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the package, when not installed

from common import interleaved, mixed_frame, remove_db, report, save_results

import dataknobs_pd as dk

GOAL = 1.1

CHECKS = pa.DataFrameSchema(
    {
        "qty": pa.Column("int32", pa.Check.ge(0)),
        "price": pa.Column(float, pa.Check.in_range(-10, 10), nullable=True),
        "name": pa.Column(str, pa.Check.str_length(1, 20)),
        "grade": pa.Column("category", pa.Check.isin(["A", "B", "C"])),
        "ts": pa.Column("datetime64[ns]", pa.Check.ge(pd.Timestamp("2020-01-01"))),
    }
)


def main(rows: int, repeat: int, folder: str) -> dict:
    df = mixed_frame(rows)
    if df["ts"].dtype != "datetime64[ns]":  # pandas 3 infers microseconds for this column
        df["ts"] = df["ts"].astype("datetime64[ns]")
    bad = np.sort(np.random.default_rng(2).choice(rows, max(1, rows // 1000), replace=False))
    dirty = df.assign(qty=df["qty"].where(~np.isin(np.arange(rows), bad), -1))
    path = f"{folder}/bench_checks.db"
    url = f"sqlite:///{path}"

    remove_db(path)

    def save(frame, **kw):
        def go():
            res = frame.dk.save(url, "t", if_exists="replace", **kw)  # the table made anew each time
            assert res.failed == (len(bad) if frame is dirty and kw else 0), res

        return go

    def pandera_alone(frame):
        def go():
            try:
                CHECKS.validate(frame, lazy=True)
            except pa.errors.SchemaErrors as e:
                assert len(e.failure_cases) == len(bad)

        return go

    df.head(1000).dk.save(url, "t", validate=CHECKS)  # imports and first-call set-up, not counted
    out = {}
    for case, frame, title in (
        ("a", df, f"(a) clean save of {rows:,} rows with a five-check schema"),
        ("b", dirty, f"(b) the same, {len(bad):,} rows failing a check"),
    ):
        plain, alone, checked = interleaved(
            [(save(frame), None), (pandera_alone(frame), None), (save(frame, validate=CHECKS), None)], repeat
        )
        rows_ = [
            ("save + schema.validate(lazy=True), added", plain + alone, "pandera's own check, then the plain save"),
            ("  of which the plain save", plain, ""),
            ("  of which schema.validate(lazy=True)", alone, ""),
            ("save validate=schema", checked, "failing rows reported, the rest written"),
        ]
        out[case] = report(f"{title} (goal {GOAL}x)", rows_, rows_[0][0])
    dk.connect(url).close()
    remove_db(path)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--folder", default="/tmp")
    a, _ = ap.parse_known_args()
    print(save_results("checks", main(a.rows, a.repeat, a.folder)))
