"""DuckDB: dk save/upsert/load against DuckDB's own bulk statements, and the cost of failing rows;
same frame, same run, the best of `--repeat` runs taken in turns (DuckDB files on local disk, opened and closed each run).

Goals (issue 12): save <= 1.25x CREATE TABLE AS SELECT from the registered frame; upsert of 10% of
the rows <= 1.25x INSERT OR REPLACE / MERGE INTO; load <= 1.25x con.sql(...).df(); with 0.1% of
the rows failing, dirty <= 1.5x clean for existing keys and <= 3x clean for CHECK violations.
"""

from __future__ import annotations

import argparse
import os

import duckdb
import numpy as np
from common import interleaved, mixed_frame, report, save_results

import dataknobs_pd as dk

COLUMNS = "id, qty, price, name, grade, ts, score, flag"
# the table a user would declare for the frame, with a CHECK the dirty rows break
CHECKED = (
    "CREATE TABLE t (id BIGINT PRIMARY KEY, qty INTEGER NOT NULL CHECK (qty >= 0), price DOUBLE, name VARCHAR,"
    " grade VARCHAR, ts TIMESTAMP, score BIGINT, flag BOOLEAN NOT NULL)"
)


def remove(path: str) -> None:
    for p in (path, path + ".wal"):
        if os.path.exists(p):
            os.remove(p)


def main(rows: int, repeat: int, folder: str, bad: int) -> dict:
    df = mixed_frame(rows)
    path = f"{folder}/bench_duckdb.duckdb"
    url = f"duckdb:///{path}"
    rng = np.random.default_rng(1)

    # -- save -----------------------------------------------------------------------------------
    def dk_save():
        with dk.connect(url) as s:
            assert df.dk.save(s, "t").succeeded == rows

    def ctas():
        con = duckdb.connect(path)
        con.register("frame", df)
        con.execute("CREATE TABLE t AS SELECT * FROM frame")
        con.close()

    t = interleaved([(ctas, lambda: remove(path)), (dk_save, lambda: remove(path))], repeat)
    saves = [
        ("DuckDB CREATE TABLE AS SELECT (registered frame)", t[0], "no key"),
        ("dk save (key, exact dtypes, row isolation)", t[1], ""),
    ]

    # -- upsert of 10% of the rows ----------------------------------------------------------------
    upd = df.iloc[np.sort(rng.choice(rows, rows // 10, replace=False))].copy()
    upd["price"] = -upd["price"]
    upd["name"] = upd["name"] + "!"

    def seed_dk():
        remove(path)
        with dk.connect(url) as s:
            df.dk.save(s, "t")

    def seed_sql(primary_key: bool):
        def seed():
            remove(path)
            con = duckdb.connect(path)
            con.register("frame", df)
            con.execute("CREATE TABLE t AS SELECT * FROM frame")
            if primary_key:
                con.execute("ALTER TABLE t ADD PRIMARY KEY (id)")
            con.close()

        return seed

    def dk_upsert():
        with dk.connect(url) as s:
            assert upd.dk.save(s, "t", if_exists="upsert").succeeded == len(upd)

    def insert_or_replace():
        con = duckdb.connect(path)
        con.register("upd", upd)
        con.execute(f"INSERT OR REPLACE INTO t SELECT {COLUMNS} FROM upd")
        con.close()

    def merge_into():
        con = duckdb.connect(path)
        con.register("upd", upd)
        sets = ", ".join(f"{c} = u.{c}" for c in COLUMNS.split(", ")[1:])
        con.execute(
            f"MERGE INTO t USING upd u ON t.id = u.id WHEN MATCHED THEN UPDATE SET {sets}"
            f" WHEN NOT MATCHED THEN INSERT ({COLUMNS}) VALUES ({', '.join('u.' + c for c in COLUMNS.split(', '))})"
        )
        con.close()

    t = interleaved([(insert_or_replace, seed_sql(True)), (merge_into, seed_sql(False)), (dk_upsert, seed_dk)], repeat)
    upserts = [
        ("DuckDB INSERT OR REPLACE (table with PRIMARY KEY)", t[0], ""),
        ("DuckDB MERGE INTO (table without index)", t[1], ""),
        ("dk save(if_exists='upsert') of 10% of the rows", t[2], "reports which keys existed"),
    ]

    # -- load -----------------------------------------------------------------------------------
    seed_dk()

    def dk_load():
        with dk.connect(url) as s:
            assert len(dk.load(s, "t")) == rows

    def duck_df():
        con = duckdb.connect(path)
        con.sql("SELECT * FROM t").df()
        con.close()

    t = interleaved([(duck_df, None), (dk_load, None)], repeat)
    loads = [
        ("DuckDB con.sql(...).df()", t[0], "dtypes not restored, no order"),
        ("dk load (exact dtypes, key order)", t[1], ""),
    ]

    # -- the cost of failures -------------------------------------------------------------------
    clash = np.sort(rng.choice(rows, bad, replace=False))

    def seed_keys(with_clashes: bool):
        def seed():
            remove(path)
            with dk.connect(url) as s:
                df.iloc[clash if with_clashes else []].dk.save(s, "t")

        return seed

    def append(expected: int, frame=df):
        def run():
            with dk.connect(url) as s:
                res = frame.dk.save(s, "t", if_exists="append")
            assert res.failed == expected and res.succeeded == rows - expected, res

        return run

    dirty = df.copy()
    dirty.loc[clash, "qty"] = -1

    def seed_checked():
        remove(path)
        con = duckdb.connect(path)
        con.execute(CHECKED)
        con.close()

    t = interleaved(
        [
            (append(0), seed_keys(False)),
            (append(bad), seed_keys(True)),
            (append(0), seed_checked),
            (append(bad, dirty), seed_checked),
        ],
        repeat,
    )
    failures = [
        ("clean append (no bad rows)", t[0], ""),
        (f"dirty append ({bad:,} existing keys at random)", t[1], "each reported with its row"),
        ("clean append, table with a CHECK", t[2], ""),
        (f"dirty append ({bad:,} CHECK violations at random)", t[3], "each with DuckDB's message"),
    ]
    remove(path)
    return {
        "save": report(f"DuckDB save, {rows:,} rows x {df.shape[1]} columns", saves, saves[0][0]),
        "upsert": report(f"DuckDB upsert of {len(upd):,} of {rows:,} rows", upserts, upserts[0][0]),
        "load": report(f"DuckDB load, {rows:,} rows", loads, loads[0][0]),
        "keys": report(f"DuckDB failures: existing keys, {rows:,} rows", failures[:2], failures[0][0]),
        "checks": report(f"DuckDB failures: CHECK violations, {rows:,} rows", failures[2:], failures[2][0]),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bad", type=int, default=None, help="failing rows (default 0.1%% of --rows)")
    ap.add_argument("--folder", default="/tmp")
    a = ap.parse_args()
    print(save_results("duckdb", main(a.rows, a.repeat, a.folder, a.bad or max(1, a.rows // 1000))))
