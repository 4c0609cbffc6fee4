"""The cost of failures that outlive the kernel: quarantine, before-images (undoable) and undo, each against
the same call without it, side by side in one run (SQLite, and PostgreSQL when a server answers), on the
mixed-dtype frame:

    (a) a clean save of all the rows into a new table, quarantine=True vs the plain save (goal 1.05x)
    (b) an append of all the rows into the (empty) table, 0.1% of them bad (a string in the int32 column
        `qty`), quarantine=True vs the same call without (goal 1.2x); and with an error budget as well
    (c) update_batch of 4 columns (int, float, string, timestamp) of 10% of the rows, undoable=True vs the
        plain update_batch (goal 1.3x)
    (d) dk.undo of that undoable update vs the update itself (goal 1.5x)

A store is opened, and the table made ready, before each timed call (untimed); only the call is timed.

    python benchmarks/bench_quarantine.py                       # 1M rows
    python benchmarks/bench_quarantine.py --rows 100000 --postgres ''
    python benchmarks/bench_quarantine.py --profile             # also cProfile each treated call once

The server comes from DK_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres); the
script works in a database of its own and drops it at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the package, when not installed

from common import interleaved, mixed_frame, remove_db, report, save_results

import dataknobs_pd as dk

GOALS = {"a": 1.05, "b": 1.2, "c": 1.3, "d": 1.5}


def dirty_frame(df: pd.DataFrame, bad: np.ndarray) -> pd.DataFrame:
    """`df` with the string "x" in its int32 column `qty` at the positions `bad` (the column becomes object)."""
    qty = df["qty"].astype(object)
    qty.iloc[bad] = "x"
    return df.assign(qty=qty)


def update_frame(df: pd.DataFrame) -> pd.DataFrame:
    """4 columns (an int, a float, a string, a timestamp) of 10% of the rows at random, by key."""
    upd = df.sample(frac=0.1, random_state=1).sort_values("id")[["id", "qty", "price", "name", "ts"]]
    return upd.assign(
        qty=upd["qty"] + 1, price=upd["price"] * 2, name=upd["name"] + "!", ts=upd["ts"] + pd.Timedelta(hours=1)
    )


def vacuum(url: str, table: str) -> None:
    """VACUUM ANALYZE of a PostgreSQL table just loaded, as autovacuum does soon after a bulk load: without it
    the first statement that reads the new rows also writes their hint bits, and a call that reads them twice
    (the before-images, then the update) pays that once more than the plain call, which no table a user has
    had for a minute does."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'VACUUM (ANALYZE) "{table}"')


class Place:
    """Where one backend's runs happen: a store handle opened before each timed call (untimed) and the table
    made ready there: `empty` (no table), `seeded` (an empty table of the frame's schema), `full` (the frame
    saved, as before any update). SQLite: a fresh file, or a copy of one saved once; PostgreSQL: drop and save."""

    def __init__(self, url: str, table: str, df: pd.DataFrame, path: str | None = None):
        self.url, self.table, self.df, self.path = url, table, df, path
        self.store: dk.Store | None = None
        if path:  # SQLite: the full table saved once, copied before each run that needs it
            self.base = path + ".base"
            remove_db(self.base)
            with dk.connect(f"sqlite:///{self.base}") as s:
                df.dk.save(s, table)

    def open(self) -> dk.Store:
        self.close()
        self.store = dk.connect(self.url)
        return self.store

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def empty(self) -> dk.Store:
        if self.path:
            self.close()
            remove_db(self.path)
            return self.open()
        s = self.open()
        if self.table in s.tables():
            s.drop(self.table)  # and its quarantine, batch log and undo images
        return s

    def seeded(self) -> dk.Store:
        s = self.empty()
        self.df.iloc[:0].dk.save(s, self.table)
        return s

    def full(self) -> dk.Store:
        if self.path:
            self.close()
            remove_db(self.path)
            shutil.copy(self.base, self.path + ".tmp")
            os.replace(self.path + ".tmp", self.path)
            return self.open()
        s = self.empty()
        self.df.dk.save(s, self.table)
        vacuum(self.url, self.table)
        return s

    def finish(self) -> None:
        self.close()
        if self.path:
            remove_db(self.path)
            remove_db(self.base)
        else:
            with dk.connect(self.url) as s:
                if self.table in s.tables():
                    s.drop(self.table)


def measure(
    place: Place, df: pd.DataFrame, bad: np.ndarray, upd: pd.DataFrame, repeat: int, profile: bool, only: str = "abc"
) -> dict:
    """The four comparisons on one backend, each one's runs taken in turns; records by case."""
    table, n, nbad = place.table, len(df), len(bad)
    dirty = dirty_frame(df, bad)
    rate = 10 * nbad / n  # a budget the call stays within
    last: dict = {}

    def save(**kw):
        def go():
            res = df.dk.save(place.store, table, **kw)
            assert res.ok and res.succeeded == n and res.quarantined == 0, res

        return go

    def append(**kw):
        def go():
            res = dirty.dk.save(place.store, table, if_exists="append", **kw)
            assert res.failed == nbad and res.succeeded == n - nbad, res
            assert res.quarantined == (nbad if kw.get("quarantine") else 0), res
            assert set(res.failures["stage"].astype(str)) == {"convert"}, res.failures.head()

        return go

    def update(**kw):
        def go():
            res = upd.dk.update_batch(place.store, table, **kw)
            assert res.ok and res.succeeded == len(upd), res
            last["batch_id"] = res.batch_id

        return go

    def updated():  # setup of the undo: the table as before, then the undoable update (untimed)
        place.full()
        update(undoable=True)()

    def undo():
        res = dk.undo(place.store, table, last["batch_id"])
        assert res.ok and res.succeeded == len(upd), res

    cases = {
        "a": (
            f"(a) clean save, {n:,} rows into a new table",
            [
                ("save", save(), place.empty, ""),
                ("save quarantine=True", save(quarantine=True), place.empty, "nothing to quarantine"),
            ],
        ),
        "b": (
            f"(b) append of {n:,} rows, {nbad:,} bad (a string in an int32 column), into an empty table",
            [
                ("save", append(), place.seeded, "failures reported"),
                ("save quarantine=True", append(quarantine=True), place.seeded, "and kept in the quarantine"),
                (
                    f"save quarantine=True max_error_rate={rate:g}",
                    append(quarantine=True, max_error_rate=rate),
                    place.seeded,
                    "within the budget",
                ),
            ],
        ),
        "c": (
            f"(c) update_batch of {len(upd):,} of {n:,} rows (4 columns)",
            [
                ("update_batch", update(), place.full, ""),
                ("update_batch undoable=True", update(undoable=True), place.full, "before-images kept"),
                ("dk.undo of it", undo, updated, "the undoable update's rows put back"),
            ],
        ),
    }
    out = {}
    for case, (title, ops) in cases.items():
        if case not in only:
            continue
        times = interleaved([(fn, setup) for _, fn, setup, _ in ops], repeat)
        rows = [(name, t, note) for (name, _, _, note), t in zip(ops, times)]
        if case == "c":  # (c): undoable vs plain; (d): the undo vs that undoable update
            out["c"] = report(f"{title} (goal {GOALS['c']}x)", rows[:2], rows[0][0])
            out["d"] = report(f"(d) dk.undo of that update vs the update (goal {GOALS['d']}x)", rows[1:], rows[1][0])
            out["d_vs_plain"] = report("    the same, against the plain update_batch", rows, rows[0][0])
        else:
            out[case] = report(f"{title} (goal {GOALS[case]}x)", rows, rows[0][0])
        if profile:
            for name, fn, setup, _ in ops[1:]:
                setup()
                print(f"\n  cProfile of {name!r} (top 15 by cumulative time)")
                prof = cProfile.Profile()
                prof.runcall(fn)
                pstats.Stats(prof).sort_stats("cumulative").print_stats(15)
    place.close()
    return out


def warm(place: Place, df: pd.DataFrame) -> None:
    """Imports, first-call set-up and (SQLite) the reader process, none of them counted."""
    small = df.head(1000)
    s = place.empty()
    small.dk.save(s, place.table, quarantine=True)
    res = small.head(100).assign(qty=small["qty"].head(100) + 1).dk.update_batch(s, place.table, undoable=True)
    dk.undo(s, place.table, res.batch_id)
    dk.load(s, place.table)
    if place.path:
        from dataknobs_pd.backends.sqlite.reader import READERS

        READERS.wait(30)
    place.close()


def main(rows: int, bad: int, repeat: int, folder: str, postgres: str | None, profile: bool, only: str = "abc") -> dict:
    df = mixed_frame(rows)
    at = np.sort(np.random.default_rng(1).choice(rows, bad, replace=False))
    upd = update_frame(df)
    out = {}
    path = f"{folder}/bench_quarantine.db"
    remove_db(path)
    place = Place(f"sqlite:///{path}", "t", df, path)
    try:
        warm(place, df)
        print(f"\nSQLite, {rows:,} rows")
        out["sqlite"] = measure(place, df, at, upd, repeat, profile, only)
    finally:
        place.finish()
    if postgres:
        import adbc_driver_postgresql.dbapi as adbc

        name = f"dk_bench_{uuid.uuid4().hex[:8]}"
        admin = adbc.connect(postgres, autocommit=True)
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        url = postgres.partition("?")[0].rsplit("/", 1)[0] + "/" + name
        place = None
        try:
            place = Place(url, "dk_bench_quarantine", df)
            warm(place, df)
            print(f"\nPostgreSQL, {rows:,} rows")
            out["postgres"] = measure(place, df, at, upd, repeat, profile, only)
        finally:
            if place is not None:
                place.close()
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--bad", type=int, default=None, help="bad rows in (b) (default: 0.1%% of the rows)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--folder", default="/tmp")
    ap.add_argument(
        "--postgres",
        default=os.environ.get("DK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL URL to measure too ('' to skip)",
    )
    ap.add_argument("--profile", action="store_true", help="cProfile each treated call once, after the timings")
    ap.add_argument("--cases", default="abc", help="which of (a), (b), (c) with (d) to run (default: abc)")
    a = ap.parse_args()
    bad = a.bad if a.bad is not None else max(1, a.rows // 1000)
    print(save_results("quarantine", main(a.rows, bad, a.repeat, a.folder, a.postgres or None, a.profile, a.cases)))
