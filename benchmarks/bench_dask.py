"""Dask: ddf.dk.save from a Parquet dataset into PostgreSQL on a 2-worker LocalCluster against Dask's own
ddf.to_sql, with the peak memory of each worker and of the driver at N and 2N rows; then the cost of the
Dask path against one pandas frame (df.dk.save) into SQLite and PostgreSQL, on the default scheduler and on
the cluster. Every figure is a ratio against a peer timed in the same run.

    python benchmarks/bench_dask.py                          # 10M and 20M rows (to_sql at 10M), 2M for part 2
    python benchmarks/bench_dask.py --rows 1M --small 200k   # quick
    python benchmarks/bench_dask.py --to-sql-rows 20M        # to_sql at 20M too (about 10 more minutes here)

The default run takes about 10.5 minutes on a 2-core machine, 5 of them Dask's to_sql of 10M rows.

The dataset is the mixed-dtype frame of common.py written as Parquet files of --rows/--partitions rows
each (one Dask partition per file, the same partition size at every N, so that 2N is twice the partitions).
Each large case runs in a fresh process with a fresh LocalCluster (2 worker processes x 1 thread), so the
RSS high-water marks (getrusage ru_maxrss) are those of that case alone. Dask's to_sql runs with its
defaults (parallel=False: the partitions written one after another, each by a worker; method=None:
pandas' executemany) through SQLAlchemy + psycopg 3, as `pip install 'dataknobs-pd[bench]'` brings.
Where the driver's time goes is timed around a few of the engine's calls (per partition or chunk: no
measurable cost), in the timed part-1 runs and in one extra run of each part-2 case.

The server comes from DK_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
the script works in a database of its own and drops it at the end, and removes its files.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the package, when not installed
sys.path.insert(0, str(Path(__file__).resolve().parent))

SERVER = os.environ.get("DK_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
WORKERS = 2


def count(text: str) -> int:
    """10M, 2.5M, 200k or 1000000."""
    t = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if scale > 1 else t) * scale)


def short(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def on_database(url: str, name: str) -> str:
    head, _, _ = url.partition("?")
    return head.rsplit("/", 1)[0] + "/" + name


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def warm() -> None:
    """What either side imports on a worker, imported before anything is timed."""
    import dask.dataframe  # noqa: F401
    import psycopg  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import sqlalchemy  # noqa: F401


def cluster(files: list[str]):
    """A LocalCluster of WORKERS processes x 1 thread and a client that is not the default one, its
    workers warmed up (imports done, one file read) so that no timing pays for that."""
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    lc = LocalCluster(
        n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    client = Client(lc, set_as_default=False)
    client.run(warm)
    warm()
    with client.as_current():
        client.compute(dd.read_parquet(files[:1]), sync=True)
    return lc, client


# -- where the driver's time goes: timers around a few calls of the engine (per chunk or partition) ----
@contextmanager
def breakdown(spent: dict):
    """Add the driver thread's time in each step of a save to `spent` while inside."""
    import distributed

    import dataknobs_pd.backends.postgres.backend as pgb
    import dataknobs_pd.backends.sqlite.backend as slb
    import dataknobs_pd.batch as batch
    import dataknobs_pd.types as types

    main = threading.current_thread()
    targets = [
        (distributed.Future, "result", "wait for the next partition"),
        (batch.BatchWriter, "_refit", "fit each partition to the table"),
        (batch.BatchWriter, "_validate", "validate keys (also across partitions)"),
        (types.TypeMapper, "to_arrow", "convert to Arrow"),
        (pgb.PostgresBackend, "prepare", "prepare for the store"),
        (slb.SQLiteBackend, "prepare", "prepare for the store"),
        (pgb.PostgresBackend, "write", "write (COPY / INSERT)"),
        (slb.SQLiteBackend, "write", "write (COPY / INSERT)"),
    ]
    targets.append((concurrent.futures.Future, "result", "wait for the next partition"))  # default scheduler
    saved = []
    depth = [0]  # only the outermost timed call counts

    def timer(orig, label):
        def timed(*a, **k):
            if depth[0] or threading.current_thread() is not main:
                return orig(*a, **k)
            depth[0] += 1
            t = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                spent[label] += time.perf_counter() - t
                depth[0] -= 1

        return timed

    for cls, name, label in targets:
        if name not in cls.__dict__:  # the engine changed: its share shows as "other"
            continue
        orig = cls.__dict__[name]
        saved.append((cls, name, orig))
        kind = type(orig) if isinstance(orig, (staticmethod, classmethod)) else None
        setattr(cls, name, kind(timer(orig.__func__, label)) if kind else timer(orig, label))
    t = time.perf_counter()
    try:
        yield spent
    finally:
        spent["total"] += time.perf_counter() - t
        for cls, name, orig in saved:
            setattr(cls, name, orig)


@contextmanager
def one_writer():
    """ddf.dk.save as before parallel loads: the driver writes every partition itself (dataknobs_pd.aside off)."""
    import dataknobs_pd.batch as batch

    real = batch.aside.load
    batch.aside.load = lambda *a: None
    try:
        yield
    finally:
        batch.aside.load = real


def shares(spent: dict) -> dict:
    total = spent["total"]
    out = {k: v / total for k, v in spent.items() if k != "total"}
    out["other (driver)"] = max(0.0, 1 - sum(out.values()))
    return out


# -- one large case, in a process of its own ------------------------------------------------------------
def case(kind: str, files: list[str], rows: int, url: str, table: str) -> dict:
    import dask.dataframe as dd

    import dataknobs_pd.dask

    lc, client = cluster(files)
    try:
        ddf = dd.read_parquet(files)
        assert ddf.npartitions == len(files), (ddf.npartitions, len(files))
        gc.collect()
        start_workers = client.run(rss_mib)
        start_driver = rss_mib()
        spent: dict = defaultdict(float)
        with client.as_current():
            t = time.perf_counter()
            if kind in ("dk", "dk-one"):
                with breakdown(spent), one_writer() if kind == "dk-one" else contextlib.nullcontext():
                    res = ddf.dk.save(url, table, key="id")
                assert res.ok and res.succeeded == rows, res
            elif kind == "to_sql":
                ddf.to_sql(
                    table, url.replace("postgresql://", "postgresql+psycopg://", 1), index=False, if_exists="replace"
                )
            elif kind == "compute":  # the partitions computed on the workers and brought to the driver, no more
                n = sum(len(f) for f in dataknobs_pd.dask.Partitions(ddf))
                assert n == rows
            seconds = time.perf_counter() - t
        peak_workers = client.run(maxrss_mib)
        return {
            "kind": kind,
            "rows": rows,
            "partitions": len(files),
            "seconds": seconds,
            "worker_start_mib": sorted(start_workers.values()),
            "worker_peak_mib": sorted(peak_workers.values()),
            "driver_start_mib": start_driver,
            "driver_peak_mib": maxrss_mib(),
            "breakdown": shares(spent) if spent else None,
        }
    finally:
        client.close()
        lc.close()


def run_case(kind: str, files: list[str], rows: int, url: str, table: str) -> dict:
    spec = json.dumps({"kind": kind, "files": files, "rows": rows, "url": url, "table": table})
    p = subprocess.run([sys.executable, __file__, "--case", spec], capture_output=True, text=True)
    if p.returncode:
        sys.stderr.write(p.stdout + p.stderr)
        raise RuntimeError(f"the {kind} case at {rows:,} rows failed")
    return json.loads(p.stdout.strip().splitlines()[-1])


# -- the data ---------------------------------------------------------------------------------------
def write_dataset(folder: Path, nfiles: int, per_file: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from common import mixed_frame

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(nfiles):
        df = mixed_frame(per_file, seed=i)
        df["id"] += i * per_file
        path = folder / f"part.{i:05d}.parquet"
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
        files.append(str(path))
    os.sync()  # nothing of the dataset left to flush while the writes are timed
    return files


def sql(url: str, statement: str):
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(statement)
        return cur.fetchone() if cur.description else None


# -- part 1: N and 2N rows, Parquet -> PostgreSQL on the cluster ---------------------------------------
def large(url: str, files: list[str], per_file: int, sizes: list[int], to_sql_rows: int) -> dict:
    from common import report

    results = []
    plan = [("compute", sizes[0])] + [("dk", n) for n in sizes] + [("dk-one", sizes[0])]
    plan += [("to_sql", n) for n in sizes if n <= to_sql_rows]
    for kind, n in plan:  # the dk runs side by side; to_sql, the long one, last
        nf = -(-n // per_file)
        rows = nf * per_file
        table = f"t_{kind}"
        print(f"  {kind} at {rows:,} rows ({nf} partitions) ...", flush=True)
        r = run_case(kind, files[:nf], rows, url, table)
        if kind != "compute":
            stored = sql(url, f'SELECT count(*) FROM "{table}"')[0]
            assert stored == rows, (kind, stored, rows)
            if kind.startswith("dk"):  # through dk, which keeps the table's schema beside it
                import dataknobs_pd as dk

                with dk.connect(url) as store:
                    store.drop(table)
            else:
                sql(url, f'DROP TABLE "{table}"')
        results.append(r)
    names = {
        "dk": "ddf.dk.save (key='id', parallel load)",
        "dk-one": "ddf.dk.save, one writer at the driver",
        "to_sql": "ddf.to_sql (dask defaults, psycopg 3)",
        "compute": "partitions to the driver only (no write)",
    }
    notes = {
        "dk": "a COPY stream per worker",
        "dk-one": "one COPY stream",
        "to_sql": "no key; parallel=False, method=None",
        "compute": "read Parquet + transfer",
    }
    out: dict = {"cases": results, "tables": {}}
    order = {"dk": 0, "dk-one": 1, "to_sql": 2, "compute": 3}
    results.sort(key=lambda r: (r["rows"], order[r["kind"]]))
    for n in sorted({r["rows"] for r in results}):
        here = [r for r in results if r["rows"] == n]
        rows = [(names[r["kind"]], r["seconds"], notes[r["kind"]]) for r in here]
        out["tables"][str(n)] = report(
            f"Parquet -> PostgreSQL, {n:,} rows, {here[0]['partitions']} partitions, LocalCluster {WORKERS} workers",
            rows,
            names["dk"],
        )
    print("\nPeak memory (RSS high-water mark, MiB; 'start' = after the cluster started, before the job)")
    print(
        f"  {'case':<10} {'rows':>6} {'parts':>5} {'seconds':>8} {'worker start':>13} {'worker peak':>12}"
        f" {'driver start':>13} {'driver peak':>12}"
    )
    for r in results:
        print(
            f"  {r['kind']:<10} {short(r['rows']):>6} {r['partitions']:>5} {r['seconds']:>8.1f}"
            f" {max(r['worker_start_mib']):>13.0f} {max(r['worker_peak_mib']):>12.0f}"
            f" {r['driver_start_mib']:>13.0f} {r['driver_peak_mib']:>12.0f}"
        )
    for r in results:
        if r["breakdown"]:
            print(f"\nWhere the driver's time goes, ddf.dk.save at {r['rows']:,} rows ({r['seconds']:.1f} s)")
            for label, share in sorted(r["breakdown"].items(), key=lambda kv: -kv[1]):
                print(f"  {label:<40} {share:>6.1%}")
    return out


# -- part 2: one pandas frame against the Dask path, SQLite and PostgreSQL ----------------------------
def small(pg_url: str, files: list[str], rows: int, repeat: int, folder: Path) -> dict:
    import pandas as pd
    from common import remove_db

    df = pd.read_parquet(files)
    assert len(df) == rows
    lc, client = cluster(files)
    sqlite_path = str(folder / "dk_bench_dask.sqlite")
    stores = (
        ("SQLite", f"sqlite:///{sqlite_path}"),
        ("PostgreSQL", pg_url),
        ("Parquet", f"parquet://{folder}/store"),
        ("Delta", f"delta://{folder}/lake"),
    )
    try:
        return {label: one_store(label, url, df, files, repeat, client) for label, url in stores}
    finally:
        client.close()
        lc.close()
        remove_db(sqlite_path)


def one_store(label: str, url: str, df, files: list[str], repeat: int, client) -> dict:
    """The four ways of part 2 into one store, `repeat` rounds in turns, then one more run each, timed by step."""
    import dask.dataframe as dd
    import pandas as pd
    from common import report

    import dataknobs_pd as dk
    import dataknobs_pd.dask  # noqa: F401  (registers ddf.dk)
    from dataknobs_pd.backends.base import Backend

    rows = len(df)
    store = dk.connect(url)

    def setup():
        if "t" in store.tables():
            store.drop("t")

    def check(res):
        assert res.ok and res.succeeded == rows, res

    def in_memory():
        check(df.dk.save(store, "t", key="id"))

    def read_then_save():
        check(pd.read_parquet(files).dk.save(store, "t", key="id"))

    def threads():
        check(dd.read_parquet(files).dk.save(store, "t", key="id"))

    def distributed():
        with client.as_current():
            check(dd.read_parquet(files).dk.save(store, "t", key="id"))

    def distributed_one_writer():
        with one_writer():
            distributed()

    parallel = type(store.backend).open_aside is not Backend.open_aside
    ops = [
        ("df.dk.save (the frame in memory)", in_memory, "no read"),
        ("pd.read_parquet + df.dk.save", read_then_save, "the same files, one frame"),
        ("ddf.dk.save, default scheduler (threads)", threads, f"{len(files)} partitions"),
        (f"ddf.dk.save, LocalCluster {WORKERS} proc x 1 thread", distributed, f"{len(files)} partitions"),
    ]
    if parallel:  # the store takes a new table from the workers: the one writer's time beside it
        ops.append(("  the same, one writer at the driver", distributed_one_writer, "as before parallel loads"))
    times: dict = defaultdict(list)
    for _ in range(repeat):  # in turns, so that load on the machine falls on all alike
        for name, fn, _note in ops:
            setup()
            gc.collect()
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    table = report(
        f"{label}: one frame against the Dask path, {rows:,} rows (median of {repeat})",
        [(name, statistics.median(times[name]), note) for name, _, note in ops],
        ops[0][0],
    )
    where = {}
    for name, fn, _note in ops:
        if fn in (read_then_save, distributed_one_writer):
            continue
        setup()
        spent: dict = defaultdict(float)
        with breakdown(spent):
            fn()
        where[name] = shares(spent)
    setup()
    store.close()
    labels = sorted({k for w in where.values() for k in w}, key=lambda k: -max(w.get(k, 0) for w in where.values()))
    print(f"\n  where the driver's time goes (one more run each){'':<4} {'df':>8} {'threads':>8} {'cluster':>8}")
    for k in labels:
        print(f"    {k:<50} " + " ".join(f"{w.get(k, 0):>8.1%}" for w in where.values()))
    return {"table": table, "breakdown": where, "times": dict(times)}


def main(a) -> dict:
    import dask
    import distributed
    import pandas as pd
    import pyarrow as pa
    import sqlalchemy

    sizes = sorted({count(s) for s in a.scale.split(",")}) if a.scale else [a.rows, 2 * a.rows]
    per_file = max(1, a.rows // a.partitions)
    small_rows = min(a.small, a.rows)
    n_small = max(1, small_rows // per_file)
    nfiles = max(-(-max(sizes) // per_file), n_small)
    folder = Path(a.folder) / f"dk_bench_dask_{uuid.uuid4().hex[:8]}"
    versions = {
        "pandas": pd.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "pyarrow": pa.__version__,
        "sqlalchemy": sqlalchemy.__version__,
    }
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + f"; cpus {os.cpu_count()}")
    name = f"dk_bench_dask_{uuid.uuid4().hex[:8]}"
    sql(SERVER, f'CREATE DATABASE "{name}"')
    started = time.perf_counter()
    try:
        url = on_database(SERVER, name)
        t = time.perf_counter()
        files = write_dataset(folder, nfiles, per_file)
        print(f"wrote {nfiles} Parquet files of {per_file:,} rows in {time.perf_counter() - t:.0f} s", flush=True)
        print(f"\n-- part 1: Parquet -> PostgreSQL on a LocalCluster of {WORKERS} worker processes", flush=True)
        part1 = large(url, files, per_file, sizes, a.to_sql_rows or min(sizes))
        print(f"\n-- part 2: one pandas frame against the Dask path, {n_small * per_file:,} rows", flush=True)
        part2 = small(url, files[:n_small], n_small * per_file, a.repeat, folder)
    finally:
        sql(SERVER, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(folder, ignore_errors=True)

    ratios = []
    first = [r for r in part1["cases"] if r["rows"] == min(r["rows"] for r in part1["cases"])]
    by = {r["kind"]: r for r in first}
    if "to_sql" in by:
        ratios.append((f"to_sql / dk.save at {short(by['dk']['rows'])}", by["to_sql"]["seconds"] / by["dk"]["seconds"]))
    ratios.append(
        (f"partitions to driver / dk.save at {short(by['dk']['rows'])}", by["compute"]["seconds"] / by["dk"]["seconds"])
    )
    ratios.append(
        (f"parallel / one writer at {short(by['dk']['rows'])}", by["dk"]["seconds"] / by["dk-one"]["seconds"])
    )
    dks = sorted((r for r in part1["cases"] if r["kind"] == "dk"), key=lambda r: r["rows"])
    if len(dks) > 1:
        lo, hi = dks[0], dks[-1]
        tag = f"{short(hi['rows'])} / {short(lo['rows'])}"
        ratios += [
            (f"dk.save time, {tag}", hi["seconds"] / lo["seconds"]),
            (f"dk peak RSS per worker, {tag}", max(hi["worker_peak_mib"]) / max(lo["worker_peak_mib"])),
            (f"dk peak RSS of the driver, {tag}", hi["driver_peak_mib"] / lo["driver_peak_mib"]),
            (
                f"dk driver growth over start, {tag}",
                (hi["driver_peak_mib"] - hi["driver_start_mib"])
                / max(1.0, lo["driver_peak_mib"] - lo["driver_start_mib"]),
            ),
        ]
    for store, res in part2.items():
        t = [r["seconds"] for r in res["table"]]
        mem, read, thr, dist = t[:4]
        if len(t) > 4:
            ratios.append((f"{store}: ddf cluster, parallel / one writer", dist / t[4]))
        ratios += [
            (f"{store}: ddf threads / df in memory", thr / mem),
            (f"{store}: ddf cluster / df in memory", dist / mem),
            (f"{store}: ddf threads / read_parquet + df", thr / read),
            (f"{store}: ddf cluster / read_parquet + df", dist / read),
            (f"{store}: speed-up of the cluster over threads", thr / dist),
        ]
    print("\nRatios")
    for label, value in ratios:
        print(f"  {label:<48} {value:>7.2f}x")
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")
    return {
        "versions": versions,
        "part1": part1,
        "part2": part2,
        "ratios": [{"what": k, "ratio": round(v, 3)} for k, v in ratios],
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=count, default=10_000_000, help="N, the rows of part 1 (10M)")
    ap.add_argument("--scale", help="the sizes of part 1, comma-separated (default: N,2N), e.g. 10M,20M")
    ap.add_argument("--to-sql-rows", type=count, help="time to_sql at sizes up to this (default: the smallest)")
    ap.add_argument("--partitions", type=int, default=80, help="partitions (Parquet files) at N rows (80)")
    ap.add_argument("--small", type=count, default=2_000_000, help="the rows of part 2 (2M)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each part-2 case, in turns (median kept)")
    ap.add_argument("--folder", default="/tmp", help="where the Parquet files and the SQLite file go")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # one large case, run by this script in a process of its own
    a = ap.parse_args()
    if a.case:
        spec = json.loads(a.case)
        print(json.dumps(case(spec["kind"], spec["files"], spec["rows"], spec["url"], spec["table"])))
    else:
        from common import save_results

        np.random.seed(0)
        print(save_results("dask", main(a)))
