"""The cost of failures: a save with 0.1% bad rows (keys already in the table, at random) against the
same save without those rows, into the same table, so that only the handling of the bad rows differs;
and against the earlier design (a failing chunk retried row by row). SQLite and PostgreSQL, side by side.

(A save of all the rows into an empty table is faster still, for a reason that is not failure handling:
its keys only ever append to the primary-key index, while keys already scattered through the table make
the new ones land between them.)"""

from __future__ import annotations

import argparse
import os
import sqlite3

import numpy as np
from common import interleaved, mixed_frame, remove_db, report, save_results, timed

import dataknobs_pd as dk
from dataknobs_pd.batch import BatchWriter
from dataknobs_pd.failures import RowFailure


class RowByRowWriter(BatchWriter):
    """The earlier design: try the chunk; if it fails, write every row of it alone."""

    def _write(self, job, plan, data, rows, failures):
        backend = job.backend
        try:
            with backend.savepoint():
                backend._insert_rows(job.table, data.column_names, zip(*backend._encoded(data, plan.schema)))
            return
        except sqlite3.IntegrityError:
            pass
        for i in range(data.num_rows):
            try:
                with backend.savepoint():
                    backend._insert_rows(
                        job.table, data.column_names, zip(*backend._encoded(data.slice(i, 1), plan.schema))
                    )
            except sqlite3.IntegrityError as e:
                failures[int(rows[i])] = RowFailure("write", "KeyConflict", str(e))


def measure(url: str, df, clash, repeat: int, table: str, earlier: bool) -> list:
    """Clean save (the rows without the bad ones), dirty save (all of them: the bad ones' keys are in the
    table already), both into the same table; and optionally the earlier design."""
    bad = len(clash)
    clean = df.drop(index=df.index[clash])

    def seed():
        with dk.connect(url) as s:
            if table in s.tables():
                s.drop(table)
            df.iloc[clash].dk.save(s, table)

    def save(frame, expected: int, writer=None):
        def run():
            from dataknobs_pd import api

            default, api.BatchWriter = api.BatchWriter, writer or api.BatchWriter
            try:
                with dk.connect(url) as s:
                    res = frame.dk.save(s, table, if_exists="append")
            finally:
                api.BatchWriter = default
            assert res.failed == expected and res.succeeded == len(frame) - expected, res
            if expected:
                assert sorted(res.failures["row"]) == sorted(clash.tolist())

        return run

    clean_t, dirty_t = interleaved([(save(clean, 0), seed), (save(df, bad), seed)], repeat)
    results = [
        (f"clean save (the {len(clean):,} good rows)", clean_t, ""),
        (f"dirty save (and {bad:,} existing keys at random)", dirty_t, "each conflict reported with its row"),
    ]
    if earlier:
        results.append(
            (
                "dirty save, earlier design (row-by-row retry)",
                timed(save(df, bad, RowByRowWriter), seed, 1),
                "1 run",
            )
        )
    with dk.connect(url) as s:
        s.drop(table)
    return results


def main(rows: int, bad: int, repeat: int, folder: str, postgres: str | None, earlier: bool) -> dict:
    df = mixed_frame(rows)
    clash = np.sort(np.random.default_rng(1).choice(rows, bad, replace=False))
    path = f"{folder}/bench_failures.db"
    remove_db(path)
    out = {}
    res = measure(f"sqlite:///{path}", df, clash, repeat, "t", earlier=earlier)
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
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--earlier", action="store_true", help="also the earlier design (about 7 minutes at 1M rows)")
    ap.add_argument("--folder", default="/tmp")
    ap.add_argument(
        "--postgres",
        default=os.environ.get("DK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL URL to measure too ('' to skip)",
    )
    a = ap.parse_args()
    print(save_results("failures", main(a.rows, a.bad, a.repeat, a.folder, a.postgres or None, a.earlier)))
