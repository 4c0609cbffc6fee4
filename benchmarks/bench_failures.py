"""The cost of failures: a save with 0.1% bad rows against the same save with none, and against the
earlier design (a failing chunk retried row by row), measured side by side on SQLite."""

from __future__ import annotations

import argparse
import os
import sqlite3

import numpy as np
from common import mixed_frame, remove_db, report, save_results, timed

import dataknobs_pd as dk
from dataknobs_pd.batch import BatchWriter
from dataknobs_pd.failures import RowFailure


class RowByRowWriter(BatchWriter):
    """The earlier design: try the chunk; if it fails, write every row of it alone."""

    def _write(self, job, plan, data, rows, failures):
        backend = job.backend
        try:
            with backend.savepoint():
                backend._insert_rows(job.table, data, plan.schema)
            return
        except sqlite3.IntegrityError:
            pass
        for i in range(data.num_rows):
            try:
                with backend.savepoint():
                    backend._insert_rows(job.table, data.slice(i, 1), plan.schema)
            except sqlite3.IntegrityError as e:
                failures[int(rows[i])] = RowFailure("write", "KeyConflict", str(e))


def measure(url: str, df, clash, repeat: int, table: str, earlier: bool) -> list:
    """Clean save, dirty save (the clashing keys already in the table), and optionally the earlier design."""
    rows, bad = len(df), len(clash)

    def seed(with_clashes: bool):
        with dk.connect(url) as s:
            if table in s.tables():
                s.drop(table)
            df.iloc[clash if with_clashes else []].dk.save(s, table)

    def save(expected: int, writer=None):
        def run():
            from dataknobs_pd import api

            default, api.BatchWriter = api.BatchWriter, writer or api.BatchWriter
            try:
                with dk.connect(url) as s:
                    res = df.dk.save(s, table, if_exists="append")
            finally:
                api.BatchWriter = default
            assert res.failed == expected and res.succeeded == rows - expected, res
            if expected:
                assert sorted(res.failures["row"]) == sorted(clash.tolist())

        return run

    results = [
        ("clean save (no bad rows)", timed(save(0), lambda: seed(False), repeat), ""),
        (
            f"dirty save ({bad:,} existing keys at random)",
            timed(save(bad), lambda: seed(True), repeat),
            "each conflict reported with its row",
        ),
    ]
    if earlier:
        results.append(
            (
                "dirty save, earlier design (row-by-row retry)",
                timed(save(bad, RowByRowWriter), lambda: seed(True), 1),
                "1 run",
            )
        )
    with dk.connect(url) as s:
        s.drop(table)
    return results


def main(rows: int, bad: int, repeat: int, folder: str, postgres: str | None) -> dict:
    df = mixed_frame(rows)
    clash = np.sort(np.random.default_rng(1).choice(rows, bad, replace=False))
    path = f"{folder}/bench_failures.db"
    remove_db(path)
    out = {}
    res = measure(f"sqlite:///{path}", df, clash, repeat, "t", earlier=True)
    out["sqlite"] = report(f"Failure cost on SQLite, {rows:,} rows, {bad:,} bad", res, res[0][0])
    remove_db(path)
    if postgres:
        res = measure(postgres, df, clash, repeat, "dk_bench_failures", earlier=False)
        out["postgres"] = report(f"Failure cost on PostgreSQL, {rows:,} rows, {bad:,} bad", res, res[0][0])
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--bad", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--folder", default="/tmp")
    ap.add_argument(
        "--postgres",
        default=os.environ.get("DK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL URL to measure too ('' to skip)",
    )
    a = ap.parse_args()
    print(save_results("failures", main(a.rows, a.bad, a.repeat, a.folder, a.postgres or None)))
