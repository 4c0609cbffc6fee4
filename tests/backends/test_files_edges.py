"""File stores at the edges (issue 9): writers racing in processes and threads, readers beside them,
cells bigger than a reader's block, folders removed under a store, hostile table names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from tests import s3_server

FORMATS = ["parquet", "csv", "jsonl"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def connect(tmp_path, fmt, **options):
    if fmt.endswith("-s3"):  # a fresh prefix on the moto S3 server of this session
        url, more = s3_server.store_spec(fmt[:-3])
        return dk.connect(url, **more, **options)
    return dk.connect(f"{fmt}://{tmp_path}/store", **options)


def rows(ids, who: int, rnd: int = 0) -> pd.DataFrame:
    """Rows whose values tell who wrote them: v = id * 10 + w."""
    ids = np.asarray(ids, dtype="int64")
    return pd.DataFrame(
        {
            "id": ids,
            "w": np.full(len(ids), who, dtype="int64"),
            "r": np.full(len(ids), rnd, dtype="int64"),
            "v": ids * 10 + who,
        }
    )


def consistent(df: pd.DataFrame) -> bool:
    """Keys sorted and distinct, and every row whole (written by one writer)."""
    return bool(df["id"].is_monotonic_increasing and df["id"].is_unique and (df["v"] == df["id"] * 10 + df["w"]).all())


# -- 1. processes creating and upserting the same table at once ---------------------------------------
# One set of processes races on every store of a test in turn (a start file per store), so that the
# interpreters start once, not once per store.
_RACER = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np, pandas as pd
    import dataknobs_pd as dk
    from dataknobs_pd.backends.files.manifest import Manifests
    who, lo, n, slow, how, targets = sys.argv[1:7]
    who, lo, n, slow = int(who), int(lo), int(n), float(slow)
    if slow:  # a slow disk: each publish takes a while, so racing commits overlap every time
        put = Manifests.put
        def slow_put(self, table, *args, **kwargs):
            time.sleep(slow)
            return put(self, table, *args, **kwargs)
        Manifests.put = slow_put
    ids = np.arange(lo, lo + n, dtype="int64")
    df = pd.DataFrame({"id": ids, "w": np.full(n, who, dtype="int64"), "r": np.zeros(n, dtype="int64"),
                       "v": ids * 10 + who})
    for url, options, go in json.loads(targets):
        store = dk.connect(url, **options)
        store.tables()  # connected before the start
        def wait():
            print("ready", flush=True)
            while not os.path.exists(go):
                time.sleep(0.001)
        try:
            if how == "save":
                wait()
                res = df.dk.save(store, "t", if_exists="upsert", progress=False)
                report = {"saved": res.succeeded, "failed": res.failed}
            else:  # the store's own transaction, without the engine: only the commit's check guards it
                b = store.backend
                schema = store.schema("t")
                with b.transaction():  # every writer has read the same version and written its parts: commit
                    b.write("t", dk.TypeMapper().to_arrow(df, schema, False)[0], schema, "upsert")
                    wait()
                report = {"saved": n, "failed": 0}
        except dk.DataKnobsError as e:
            report = {"error": type(e).__name__, "message": str(e)}
        print(json.dumps(report), flush=True)
""")

_READER = textwrap.dedent("""
    import json, os, sys, time
    import dataknobs_pd as dk
    for url, options, go, stop in json.loads(sys.argv[1]):
        store = dk.connect(url, **options)
        while not os.path.exists(go):
            time.sleep(0.001)
        loads, bad = 0, []
        while not os.path.exists(stop) or not loads:
            try:
                df = dk.load(store, "t")
            except dk.TableNotFoundError:
                continue
            except Exception as e:
                bad.append(f"{type(e).__name__}: {e}")
                break
            loads += 1
            ok = df["id"].is_monotonic_increasing and df["id"].is_unique and (df["v"] == df["id"] * 10 + df["w"]).all()
            if not ok:
                bad.append(f"an inconsistent read of {len(df)} rows")
        print(json.dumps({"loads": loads, "bad": bad}), flush=True)
""")


def _race(
    tmp_path, stores: list, writers: list[tuple[int, int]], slow: float, how: str = "save", readers: int = 0
) -> list[tuple[list[dict], list[dict]]]:
    """Writers (lo, n) and readers in processes, released at once on each store's table "t" in turn;
    per store, the writers' reports and the readers'."""
    goes = [tmp_path / f"go-{k}" for k in range(len(stores))]
    stops = [tmp_path / f"stop-{k}" for k in range(len(stores))]
    targets = [(s._url, s._options, str(go)) for s, go in zip(stores, goes)]
    run = {"cwd": ROOT, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(i), str(lo), str(n), str(slow), how, json.dumps(targets)], **run
        )
        for i, (lo, n) in enumerate(writers)
    ]
    watched = json.dumps([(*t, str(stop)) for t, stop in zip(targets, stops)])
    readers_ = [subprocess.Popen([sys.executable, "-c", _READER, watched], **run) for _ in range(readers)]

    def line(p) -> str:
        out = p.stdout.readline()
        assert out, p.stderr.read() if p.wait(timeout=300) is not None else "no output"
        return out.strip()

    results = []
    try:
        for go, stop in zip(goes, stops):
            for p in procs:
                assert line(p) == "ready"
            go.touch()
            reports = [json.loads(line(p)) for p in procs]
            stop.touch()
            results.append((reports, [json.loads(line(p)) for p in readers_]))
        for p in procs + readers_:
            assert p.wait(timeout=300) == 0, p.stderr.read()
    finally:
        for p in procs + readers_:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def _check_accounted(store, writers, reports, before: pd.DataFrame | None = None) -> None:
    """Every row a writer reported saved is in the table, in a value some successful writer of it wrote;
    the keys only losers wrote are absent; nothing else is there."""
    won = [i for i, r in enumerate(reports) if "saved" in r]
    for i, r in enumerate(reports):
        if "saved" in r:
            assert r == {"saved": writers[i][1], "failed": 0}, r
        else:  # a loser of the race: a clear error, nothing of it written
            assert r["error"] == "ConcurrentWriteError" and "nothing was written" in r["message"], r
    out = dk.load(store, "t")
    assert consistent(out)
    writers_of: dict[int, set] = {}
    for i in won:
        lo, n = writers[i]
        for k in range(lo, lo + n):
            writers_of.setdefault(k, set()).add(i)
    old = set() if before is None else set(before["id"])
    assert set(out["id"]) == set(writers_of) | old
    mine = out[out["id"].isin(list(writers_of))]
    assert all(w in writers_of[k] for k, w in zip(mine["id"], mine["w"]))  # no row of a loser survives
    if before is not None:  # rows no winner touched are as they were
        rest = out[~out["id"].isin(list(writers_of))].reset_index(drop=True)
        assert_frame_equal(rest, before[~before["id"].isin(list(writers_of))].reset_index(drop=True))


def test_processes_upserting_the_same_table_at_once_lose_no_row(tmp_path):
    kinds = [(fmt, fresh) for fmt in [*FORMATS, "parquet-s3"] for fresh in (True, False)]
    stores, befores = [], []
    for k, (fmt, fresh) in enumerate(kinds):
        stores.append(connect(tmp_path / str(k), fmt))
        befores.append(None if fresh else rows(range(0, 6_000, 7), who=9))
        if not fresh:
            befores[-1].dk.save(stores[-1], "t")
    writers = [(i * 1_000, 2_000) for i in range(4)]  # each overlaps the next by half
    results = _race(tmp_path, stores, writers, slow=0.1, readers=1)
    for kind, store, before, (reports, reads) in zip(kinds, stores, befores, results):
        # locally writers of a table take turns; on S3 the losers of a commit race run again: every call succeeds
        assert all("saved" in r for r in reports), (kind, reports)
        _check_accounted(store, writers, reports, before)
        assert reads[0]["bad"] == [] and reads[0]["loads"] > 0, (kind, reads)


def test_two_commits_of_the_same_version_cannot_both_succeed(tmp_path):
    stores = [connect(tmp_path / fmt, fmt) for fmt in [*FORMATS, "parquet-s3"]]
    for store in stores:
        rows(range(0), who=9).dk.save(store, "t")
    writers = [(0, 1000), (500, 1000), (1000, 1000)]
    for store, (reports, _) in zip(stores, _race(tmp_path, stores, writers, slow=0.0, how="raw")):
        assert sum("saved" in r for r in reports) == 1, reports  # the first to commit; the others lose, honestly
        _check_accounted(store, writers, reports)
        found, listed = _parts(store)
        assert found == listed  # the losers' parts are gone


def _parts(store, table="t") -> tuple[list[str], list[str]]:
    """The files in the table's folder but its manifests, and the parts its newest manifest lists."""
    b = store.backend
    found = [n for n in b.storage.ls(b._dir(table)) if n != f"_dk_{b.format}"]
    return sorted(found), sorted(p.file for p in b.manifests.head(table).state.parts)


def test_the_lock_files_stay_out_of_tables_and_of_plain_readers(tmp_path):
    store = connect(tmp_path, "parquet")
    df = rows(range(100), who=1)
    df.dk.save(store, "t")
    df.dk.save(store, "t", if_exists="upsert")
    assert store.tables() == ["t"]
    back = pd.read_parquet(store.backend._dir("t"))  # a dk parquet table is a plain parquet dataset
    assert_frame_equal(back.sort_values("id").reset_index(drop=True), df)
    found, listed = _parts(store)
    assert found == listed


# -- 4. threads sharing one Store ---------------------------------------------------------------------
def _run_threads(targets, timeout=120) -> list[str]:
    """Run the callables on threads at once; the exceptions they raised, as text."""
    errors: list[str] = []
    start = threading.Barrier(len(targets))

    def run(f):
        try:
            start.wait(timeout)
            f()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(f,), daemon=True) for f in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running after the timeout"
    return errors


@pytest.mark.parametrize("fmt", ["parquet", "csv", "parquet-s3"])
def test_threads_sharing_one_store_write_and_read_at_once(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    rows(range(400), who=0, rnd=-1).dk.save(store, "t", chunksize=100)
    n_writers, rounds = 4, 3 if fmt.endswith("-s3") else 6  # commits on S3 cost round trips to the server
    done = threading.Event()
    seen: list[int] = []

    def fresh_keys(i, r):
        return 10_000 + i * 1000 + r * 10 + np.arange(10)

    def writer(i):
        for r in range(rounds):  # overlapping keys (each with its neighbours) and new keys of its own
            ids = np.r_[np.arange(i * 100, i * 100 + 200) % 400, fresh_keys(i, r)]
            res = rows(np.sort(ids), who=i, rnd=r).dk.save(store, "t", if_exists="upsert", chunksize=70)
            assert res.ok and res.succeeded == len(ids), res

    def reader(chunked):
        while not done.is_set() or not seen:
            df = pd.concat(dk.load(store, "t", chunksize=150), ignore_index=True) if chunked else dk.load(store, "t")
            assert consistent(df), "an inconsistent read"
            assert set(range(400)) <= set(df["id"])
            for i in range(n_writers):  # a snapshot: a writer's new keys appear a whole round at a time, in order
                have = set(df["id"][(df["id"] >= 10_000 + i * 1000) & (df["id"] < 10_000 + (i + 1) * 1000)])
                k = len(have) // 10
                assert have == {int(x) for r in range(k) for x in fresh_keys(i, r)}, (i, sorted(have))
            seen.append(len(df))

    results: list[str] = []

    def all_writers():
        results.extend(_run_threads([lambda i=i: writer(i) for i in range(n_writers)]))
        done.set()

    errors = _run_threads([all_writers, lambda: reader(False), lambda: reader(True)])
    assert errors + results == []
    out = dk.load(store, "t")
    fresh = {int(x) for i in range(n_writers) for r in range(rounds) for x in fresh_keys(i, r)}
    assert set(out["id"]) == set(range(400)) | fresh and len(out) == 400 + len(fresh)
    assert consistent(out)
    core = out[out["id"] < 400]
    assert (core["r"] == rounds - 1).all()  # the last write of each key is its writer's last round
    assert all(w in {(k // 100) % 4, (k // 100 - 1) % 4} for k, w in zip(core["id"], core["w"]))
    new = out[out["id"] >= 10_000]
    assert ((new["id"] - 10_000) // 1000 == new["w"]).all() and ((new["id"] % 1000) // 10 == new["r"]).all()
    assert len(seen) > 0


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_threads_creating_the_same_table_at_once_all_succeed(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    writers = [(i * 100, 200) for i in range(4)]
    reports: list[dict] = [{} for _ in writers]

    def save(i):
        lo, n = writers[i]
        res = rows(range(lo, lo + n), who=i).dk.save(store, "t", if_exists="upsert")
        reports[i] = {"saved": res.succeeded, "failed": res.failed}

    assert _run_threads([lambda i=i: save(i) for i in range(len(writers))]) == []
    _check_accounted(store, writers, reports)


# -- 2. cells larger than a reader's block ------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_cell_larger_than_the_readers_block_reads_back(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    # CSV: ~6 MB of small rows before the big ones, so that Arrow's reader has yielded rows when it meets
    # them and must read again with larger blocks; JSON lines are read line by line: a few rows will do.
    n = 300_000 if fmt == "csv" else 3_000
    s = pd.Series(["small"] * n, dtype="string")
    s.iloc[n // 2] = "x" * (9 << 20)
    s.iloc[n // 2 + 1] = 'é,"\n' * (6 << 20)  # 30 MB of text that needs quoting
    df = pd.DataFrame({"id": np.arange(n, dtype="int64"), "s": s})
    assert df.dk.save(store, "t").ok
    assert_frame_equal(dk.load(store, "t"), df)
    chunks = list(dk.load(store, "t", chunksize=n // 3))
    assert [len(c) for c in chunks] == [n // 3] * 3
    assert_frame_equal(pd.concat(chunks), df)
    assert dk.load(store, "t", where=[("id", ">=", n // 2)], columns=["s"])["s"].str.len().tolist()[:3] == [
        9 << 20,
        24 << 20,
        5,
    ]


# -- 3. caches that outlive the truth -----------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_drop_then_save_on_the_same_store(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    df = rows(range(5), who=1)
    df.dk.save(store, "t")
    store.drop("t")
    assert store.tables() == []
    df.dk.save(store, "t")
    assert_frame_equal(dk.load(store, "t"), df)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("gone", ["table-folder", "root"])
def test_folders_removed_behind_the_stores_back(tmp_path, fmt, gone):
    store = connect(tmp_path, fmt)
    df = rows(range(5), who=1)
    df.dk.save(store, "t")
    shutil.rmtree(store.backend._dir("t") if gone == "table-folder" else f"{tmp_path}/store")
    assert "t" not in store.tables()  # (its batch log, a folder of its own, may stay)
    with pytest.raises(dk.TableNotFoundError):
        dk.load(store, "t")
    df.dk.save(store, "t")  # the store recovers at once
    assert_frame_equal(dk.load(store, "t"), df)
    rows(range(3, 8), who=2).dk.save(store, "t", if_exists="upsert")
    assert dk.load(store, "t")["w"].tolist() == [1, 1, 1, 2, 2, 2, 2, 2]


# -- 5. hostile table names ---------------------------------------------------------------------------
ROUND_TRIP = [
    "it's",
    'say "hi"',
    "a;b",
    "x'; DROP TABLE t; --",
    "--",
    "new\nline",
    "tab\tcr\r",
    "ünï 日本 😀",
    "../x",
    "../../etc/passwd",
    "/abs",
    "a/b",
    "a\\b",
    ".",
    "..",
    "...",
    "~",
    "%2E",
    "%",
    " ",
    "a" * 190,
    "CON",
    "nul.txt",
]
REFUSED = ["", "a" * 300, "é" * 150, "_dk_locks", "_DK_x", "\ud800", "a\x00b"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_table_names_round_trip_exactly_inside_the_store(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    for i, name in enumerate(ROUND_TRIP):
        df = rows(range(i, i + 3), who=i)
        assert df.dk.save(store, name).ok, name
        assert name in store.tables(), name
        assert_frame_equal(dk.load(store, name), df)
        assert rows([i], who=99).dk.save(store, name, if_exists="upsert").ok
    assert store.tables() == sorted(ROUND_TRIP)
    assert sorted(os.listdir(tmp_path)) == ["store"]  # nothing outside the store's folder
    for name in ROUND_TRIP:
        store.drop(name)
        assert name not in store.tables()
    assert store.tables() == []
    assert sorted(os.listdir(tmp_path)) == ["store"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_names_a_file_store_cannot_keep_are_refused_before_writing(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    for name in REFUSED:
        with pytest.raises(dk.InvalidArgumentError):
            rows(range(3), who=1).dk.save(store, name)
        assert not os.path.exists(f"{tmp_path}/store"), name  # not even the store's folder
    rows(range(3), who=1).dk.save(store, "T")
    with pytest.raises(dk.InvalidArgumentError, match="case"):
        rows(range(3), who=2).dk.save(store, "t")
    assert store.tables() == ["T"] and dk.load(store, "T")["w"].tolist() == [1, 1, 1]


def test_folder_name_errors_are_invalid_argument_errors():
    from dataknobs_pd.backends.files import folder_name

    for bad in ("", None, "a" * 300, "\ud800"):
        with pytest.raises(dk.InvalidArgumentError):
            folder_name(bad)
