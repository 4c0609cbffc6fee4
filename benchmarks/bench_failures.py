"""The cost of failures: a save with 0.1% bad rows against the same save with none, and against the
earlier design (a failing chunk retried row by row), measured side by side on SQLite."""

from __future__ import annotations

import argparse
import sqlite3

import numpy as np
import pyarrow as pa

import dataknobs_pd as dk
from dataknobs_pd.batch import BatchWriter
from dataknobs_pd.errors import RowFailure
from common import mixed_frame, remove_db, report, save_results, timed


class RowByRowWriter(BatchWriter):
    """The earlier design: try the chunk; if it fails, write every row of it alone."""

    def _write(self, job, data, rows, failures):
        backend = job.backend
        try:
            with backend.savepoint():
                backend._insert_rows(job.table, data, job.schema)
            return
        except sqlite3.IntegrityError:
            pass
        for i in range(data.num_rows):
            try:
                with backend.savepoint():
                    backend._insert_rows(job.table, data.slice(i, 1), job.schema)
            except sqlite3.IntegrityError as e:
                failures[int(rows[i])] = RowFailure("write", "KeyConflict", str(e))


def main(rows: int, bad: int, repeat: int, folder: str) -> dict:
    df = mixed_frame(rows)
    rng = np.random.default_rng(1)
    clash = np.sort(rng.choice(rows, bad, replace=False))
    path = f"{folder}/bench_failures.db"
    url = f"sqlite:///{path}"

    def seed(with_clashes: bool):
        remove_db(path)
        with dk.connect(url) as s:
            df.iloc[clash if with_clashes else []].dk.save(s, "t")

    def save(writer=None):
        def run():
            with dk.connect(url) as s:
                if writer is None:
                    res = df.dk.save(s, "t", if_exists="append")
                else:
                    from dataknobs_pd import api

                    api_writer, api.BatchWriter = api.BatchWriter, writer
                    try:
                        res = df.dk.save(s, "t", if_exists="append")
                    finally:
                        api.BatchWriter = api_writer
            expected = 0 if run.clean else bad
            assert res.failed == expected and res.succeeded == rows - expected, res
        return run

    clean, dirty, old = save(), save(), save(RowByRowWriter)
    clean.clean, dirty.clean, old.clean = True, False, False
    results = [
        ("clean save (no bad rows)", timed(clean, lambda: seed(False), repeat), ""),
        (f"dirty save ({bad:,} existing keys at random)", timed(dirty, lambda: seed(True), repeat),
         "each conflict reported with its row"),
        ("dirty save, earlier design (row-by-row retry)", timed(old, lambda: seed(True), 1), "1 run"),
    ]
    remove_db(path)
    return {"failures": report(f"Failure cost on SQLite, {rows:,} rows, {bad:,} bad", results, results[0][0])}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--bad", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--folder", default="/tmp")
    a = ap.parse_args()
    print(save_results("failures", main(a.rows, a.bad, a.repeat, a.folder)))
