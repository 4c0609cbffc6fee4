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


def remove_db(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def report(title: str, rows: list[tuple[str, float, str]], baseline: str) -> list[dict]:
    """Print a table of timings with each row's ratio to `baseline`; return it as records."""
    base = dict((name, t) for name, t, _ in rows)[baseline]
    print(f"\n{title}")
    print(f"  {'what':<46} {'seconds':>9} {'x ' + baseline:>22}")
    out = []
    for name, t, note in rows:
        print(f"  {name:<46} {t:>9.3f} {t / base:>21.2f}x  {note}")
        out.append({"what": name, "seconds": round(t, 4), "ratio": round(t / base, 3), "baseline": baseline})
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
