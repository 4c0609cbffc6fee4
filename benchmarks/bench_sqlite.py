"""SQLite: dk save/load against pandas to_sql/read_sql and ADBC's SQLite driver, same frame, same run."""

from __future__ import annotations

import argparse
import sqlite3

import adbc_driver_sqlite.dbapi as adbc
import pandas as pd
import pyarrow as pa
from common import mixed_frame, remove_db, report, save_results, timed

import dataknobs_pd as dk


def main(rows: int, repeat: int, folder: str) -> dict:
    df = mixed_frame(rows)
    table = pa.Table.from_pandas(df, preserve_index=False)
    paths = {k: f"{folder}/bench_{k}.db" for k in ("dk", "adbc", "pandas")}

    def dk_save():
        with dk.connect(f"sqlite:///{paths['dk']}") as s:
            df.dk.save(s, "t")

    def adbc_save():
        with adbc.connect(paths["adbc"]) as c:
            with c.cursor() as cur:
                cur.adbc_ingest("t", table, mode="create")
            c.commit()

    def pandas_save():
        with sqlite3.connect(paths["pandas"]) as c:
            df.to_sql("t", c, index=False, chunksize=100_000)

    saves = [
        ("dk save (exact dtypes, key, row isolation)", timed(dk_save, lambda: remove_db(paths["dk"]), repeat), ""),
        ("ADBC adbc_ingest", timed(adbc_save, lambda: remove_db(paths["adbc"]), repeat), "no key, timestamps as text"),
        (
            "pandas to_sql (sqlite3)",
            timed(pandas_save, lambda: remove_db(paths["pandas"]), max(1, repeat - 1)),
            "no key",
        ),
    ]

    def dk_load():
        with dk.connect(f"sqlite:///{paths['dk']}") as s:
            out = dk.load(s, "t")
        assert len(out) == rows

    def adbc_load():
        with adbc.connect(paths["adbc"]) as c:
            with c.cursor() as cur:
                cur.execute("SELECT * FROM t")
                cur.fetch_arrow_table().to_pandas()

    def pandas_load():
        with sqlite3.connect(paths["pandas"]) as c:
            pd.read_sql("SELECT * FROM t", c)

    loads = [
        ("dk load (exact dtypes, key order)", timed(dk_load, repeat=repeat), ""),
        ("ADBC fetch_arrow_table + to_pandas", timed(adbc_load, repeat=repeat), "dtypes not restored"),
        ("pandas read_sql (sqlite3)", timed(pandas_load, repeat=max(1, repeat - 1)), "dtypes not restored"),
    ]
    for p in paths.values():
        remove_db(p)
    return {
        "save": report(f"SQLite save, {rows:,} rows x {df.shape[1]} columns", saves, saves[1][0]),
        "load": report(f"SQLite load, {rows:,} rows", loads, loads[1][0]),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--folder", default="/tmp")
    a = ap.parse_args()
    print(save_results("sqlite", main(a.rows, a.repeat, a.folder)))
