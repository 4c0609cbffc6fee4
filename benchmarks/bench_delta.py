"""Delta Lake store vs deltalake itself, side by side in one run, as ratios (1M-row mixed frame).

    python benchmarks/bench_delta.py [--rows 1000000] [--repeat 3]

- save: `df.dk.save(delta://...)` vs `deltalake.write_deltalake(path, df)` of the same frame;
- load: `dk.load` vs `DeltaTable(path).to_pyarrow_table().to_pandas()`;
- upsert of 1k and of 100k keys (half existing, half new) into the 1M-row table: `dk.save(if_exists="upsert")`
  vs `DeltaTable.merge(...).when_matched_update_all().when_not_matched_insert_all()`;
- the cost of failures: the 100k upsert with 0.1% bad rows (null and repeated keys, text in a number column)
  vs the same upsert clean, and with 0.1% of rows breaking a CHECK constraint. Delta's own merge fails
  whole on either (shown). Each dirty call is still one commit.

Every upsert starts from a copy of the same 1M-row table (untimed). The best of `--repeat` interleaved runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import mixed_frame, report, save_results
from deltalake import DeltaTable, write_deltalake

import dataknobs_pd as dk


def best_of(fns: dict, repeat: int, setup=None) -> dict:
    """The best time of each function, runs interleaved so that a busy moment hits every side alike."""
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            if setup:
                setup(name)
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: min(ts) for name, ts in times.items()}


def changes(df: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """k rows to upsert: half of existing keys (at random, new values), half new keys."""
    rng = np.random.default_rng(seed)
    n = len(df)
    old = df.iloc[np.sort(rng.choice(n, k // 2, replace=False))].copy()
    new = mixed_frame(k - k // 2, seed=seed + 1)
    new["id"] = np.arange(n, n + len(new), dtype="int64")
    out = pd.concat([old, new], ignore_index=True)
    out["qty"] = out["qty"] // 2
    out["grade"] = out["grade"].astype(df["grade"].dtype)
    return out


def dirty(up: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, int]:
    """`up` with `share` of its rows bad, in thirds: a null key, a repeated key, text in a number column."""
    rng = np.random.default_rng(seed)
    bad = rng.choice(len(up), max(3, int(len(up) * share)), replace=False)
    out = up.copy()
    out["id"] = out["id"].astype("Int64")
    out["price"] = out["price"].astype(object)
    third = len(bad) // 3
    out.loc[bad[:third], "id"] = pd.NA
    out.loc[bad[third : 2 * third], "id"] = out["id"].iloc[0]
    out.loc[bad[2 * third :], "price"] = "n/a"
    return out, len(bad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    df = mixed_frame(args.rows)
    work = tempfile.mkdtemp(prefix="dk-bench-delta-")
    records = {}
    try:
        raw = os.path.join(work, "raw")
        store = dk.connect(f"delta://{work}/lake")
        dk_path = store.backend.loc.folder("t")

        # -- save and load ------------------------------------------------------------------------
        def raw_save():
            write_deltalake(raw, df, mode="overwrite")

        def dk_save():
            df.dk.save(store, "t", if_exists="replace", progress=False)

        raw_save(), dk_save()  # warm up (imports, page cache)
        pd.testing.assert_frame_equal(dk.load(store, "t"), df)  # exact: every dtype back
        shutil.rmtree(raw)
        shutil.rmtree(dk_path)
        t = best_of(
            {
                "dk save": dk_save,
                "write_deltalake": raw_save,
                "dk load": lambda: dk.load(store, "t"),
                "to_pyarrow_table().to_pandas()": lambda: DeltaTable(raw).to_pyarrow_table().to_pandas(),
            },
            args.repeat,
        )
        rows = [
            ("dk save (key, exact dtypes, one commit)", t["dk save"], ""),
            ("deltalake write_deltalake", t["write_deltalake"], "category->string, ns->us"),
            ("dk load (exact dtypes, key order)", t["dk load"], ""),
            ("DeltaTable.to_pyarrow_table().to_pandas()", t["to_pyarrow_table().to_pandas()"], ""),
        ]
        print(f"{args.rows:,} rows x {df.shape[1]} columns ({', '.join(map(str, df.dtypes.unique()))})")
        records["save"] = report("save", rows[:2], "deltalake write_deltalake")
        records["load"] = report("load", rows[2:], "DeltaTable.to_pyarrow_table().to_pandas()")

        # -- upserts into 1M rows --------------------------------------------------------------------
        df.dk.save(store, "base", if_exists="replace", progress=False)
        write_deltalake(os.path.join(work, "raw_base"), df, mode="overwrite")
        dk_base, raw_base = store.backend.loc.folder("base"), os.path.join(work, "raw_base")

        def reset(name):
            for src, dst in ((dk_base, dk_path), (raw_base, raw)):
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst)

        for k in sorted({min(1_000, args.rows // 10), args.rows // 10}):  # 1k keys and 10% of the rows
            up = changes(df, k, seed=k)
            src = pa.Table.from_pandas(up, preserve_index=False)

            def dk_upsert(up=up):
                res = up.dk.save(store, "t", if_exists="upsert", progress=False)
                assert res.ok, res

            def merge(src=src):
                (
                    DeltaTable(raw)
                    .merge(src, "s.id = t.id", source_alias="s", target_alias="t")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute()
                )

            t = best_of({"dk": dk_upsert, "merge": merge}, args.repeat, setup=reset)
            records[f"upsert {k}"] = report(
                f"upsert {k:,} keys (half new) into {args.rows:,} rows",
                [
                    ("dk save(if_exists='upsert')", t["dk"], "exact dtypes, report"),
                    ("DeltaTable.merge (update_all, insert_all)", t["merge"], ""),
                ],
                "DeltaTable.merge (update_all, insert_all)",
            )

        # -- the cost of failures ------------------------------------------------------------------
        up = changes(df, args.rows // 10, seed=7)
        bad_up, nbad = dirty(up, 0.001, seed=8)
        checked = up.copy()
        rule = np.random.default_rng(9).choice(len(up), len(up) // 1000, replace=False)
        checked.loc[rule, "qty"] = -1

        def with_constraint(name):
            reset(name)
            if name == "constraint":
                DeltaTable(dk_path).alter.add_constraint({"qty_not_negative": "qty >= 0"})

        def run(frame, expect):
            def go():
                v = DeltaTable(dk_path).version()
                res = frame.dk.save(store, "t", if_exists="upsert", progress=False)
                assert res.failed == expect and DeltaTable(dk_path).version() == v + 1, res

            return go

        t = best_of(
            {"clean": run(up, 0), "dirty": run(bad_up, nbad), "constraint": run(checked, len(rule))},
            args.repeat,
            setup=with_constraint,
        )
        reset("merge")
        try:
            DeltaTable(raw).merge(
                pa.Table.from_pandas(bad_up, preserve_index=False), "s.id = t.id", source_alias="s", target_alias="t"
            ).when_matched_update_all().when_not_matched_insert_all().execute()
            merge_note = "merged (unexpected)"
        except Exception as e:  # noqa: BLE001 - what Delta's own merge does with the dirty rows
            merge_note = f"fails whole: {type(e).__name__}"
        records["failures"] = report(
            f"the cost of failures: upsert of {len(up):,} keys into {args.rows:,} rows",
            [
                ("clean", t["clean"], "one commit"),
                (f"dirty: {nbad} bad rows (null/repeated keys, text)", t["dirty"], f"one commit; merge {merge_note}"),
                (f"dirty: {len(rule)} rows break a CHECK constraint", t["constraint"], "one commit"),
            ],
            "clean",
        )
        print(f"\n(pandas {pd.__version__}, pyarrow {pa.__version__}, deltalake {__import__('deltalake').__version__})")
        save_results("delta", records)
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
