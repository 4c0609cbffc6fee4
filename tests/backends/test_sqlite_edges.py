"""SQLite at the edges: racing processes, names SQLite folds or reserves, shadowed rowids, threads
sharing one Store, a full disk, and files that are not databases. Real files, processes and threads."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd.schema import Column, TableSchema

ROOT = Path(__file__).resolve().parents[2]

# One racing writer: says it is ready, then saves ids LO..HI-1 tagged TAG; prints one JSON line.
WRITER = """
import json, sys, numpy as np, pandas as pd, dataknobs_pd as dk
url, mode, lo, hi, tag, ready = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
df = pd.DataFrame({"id": np.arange(lo, hi, dtype="int64"), "w": tag})
st = dk.connect(url)
open(ready, "w").close()
try:
    res = df.dk.save(st, "fresh", if_exists=mode)
    print(json.dumps({"succeeded": res.succeeded, "failed": res.failed}))
except dk.DataKnobsError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


def _raw(path, query, *params):
    con = sqlite3.connect(path)
    try:
        rows = con.execute(query, params).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


# -- item 1: two processes creating one table ------------------------------------------------


@pytest.mark.parametrize("mode", ["upsert", "fail"])
def test_processes_racing_to_create_one_table_lose_no_row(tmp_path, mode):
    """Both writers decide while a third connection holds the write lock, so both see no table;
    then they go one after the other. The second must write into the first one's table, never
    drop it (upsert), or say it exists and write nothing (fail)."""
    db = tmp_path / "race.db"
    url = f"sqlite:///{db}"
    pd.DataFrame({"id": [0]}).dk.save(url, "before")  # the file, WAL and the catalogue exist before the race
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    ranges = {"A": (0, 40_000), "B": (20_000, 60_000)}
    procs = {}
    try:
        for tag, (lo, hi) in ranges.items():
            procs[tag] = subprocess.Popen(
                [sys.executable, "-c", WRITER, url, mode, str(lo), str(hi), tag, str(tmp_path / tag)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        deadline = time.monotonic() + 60
        while not all((tmp_path / tag).exists() for tag in ranges):
            assert time.monotonic() < deadline, "the writers never started"
            assert all(p.poll() is None for p in procs.values()), [p.stderr.read() for p in procs.values()]
            time.sleep(0.01)
        time.sleep(1.0)  # both have looked for the table and wait for the write lock
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    reports = {}
    for tag, p in procs.items():
        try:
            out, err = p.communicate(timeout=120)
        finally:
            p.kill()
        assert p.returncode == 0, err[-2000:]
        reports[tag] = json.loads(out.strip().splitlines()[-1])

    out = dk.load(url, "fresh")
    assert out["id"].is_unique
    if mode == "upsert":
        assert reports == {"A": {"succeeded": 40_000, "failed": 0}, "B": {"succeeded": 40_000, "failed": 0}}
        assert out["id"].tolist() == list(range(60_000))
        assert set(out.loc[out["id"] < 20_000, "w"]) == {"A"}
        assert set(out.loc[out["id"] >= 40_000, "w"]) == {"B"}
        assert out.loc[out["id"].between(20_000, 39_999), "w"].nunique() == 1  # the later writer's
    else:
        winners = [t for t, r in reports.items() if "succeeded" in r]
        assert len(winners) == 1, reports
        loser = reports[({"A", "B"} - set(winners)).pop()]
        assert loser["error"] == "TableExistsError", loser
        lo, hi = ranges[winners[0]]
        assert out["id"].tolist() == list(range(lo, hi)) and set(out["w"]) == {winners[0]}


# -- item 2: names equal but for case --------------------------------------------------------


def test_names_equal_but_for_case_are_not_one_table(sqlite_store):
    b = sqlite_store.backend
    upper = pd.DataFrame({"id": [1, 2], "v": ["upper", "upper"]})
    upper.dk.save(sqlite_store, "Data")
    schema = b.schema("Data")
    assert b.schema("data") is None and b.schema("DATA") is None
    with pytest.raises(dk.InvalidArgumentError, match="'Data'"), b.transaction():
        b.create("data", schema)
    with b.transaction():
        b.drop("data")  # no table of that exact name: nothing to drop
    assert_frame_equal(dk.load(sqlite_store, "Data"), upper)
    # SQLite folds ASCII letters only: these two are distinct tables to it
    with b.transaction():
        b.create("caf\u00c9", schema)
        b.create("caf\u00e9", schema)
    assert b.schema("caf\u00c9") == schema and b.schema("caf\u00e9") == schema
    assert {"caf\u00c9", "caf\u00e9", "Data"} <= set(sqlite_store.tables())


def test_column_names_equal_but_for_case_are_refused_before_writing(sqlite_store):
    with pytest.raises(dk.InvalidArgumentError, match="'a'.*'A'|'A'.*'a'"):
        pd.DataFrame({"a": [1], "A": [2]}).dk.save(sqlite_store, "t")
    assert sqlite_store.tables() == []


# -- item 3: internal names cannot be shadowed -----------------------------------------------


def test_a_foreign_table_named_like_the_stage_is_never_confused_with_it(sqlite_store):
    path = sqlite_store.backend.path
    _raw(path, 'CREATE TABLE "_dk_stage" (id INTEGER PRIMARY KEY, v INTEGER)')
    _raw(path, 'INSERT INTO "_dk_stage" VALUES (1, 1)')
    try:  # refused, or written exactly
        res = pd.DataFrame({"id": [1, 2], "v": [10, 20]}).dk.save(sqlite_store, "_dk_stage", if_exists="upsert")
        assert res.ok and _raw(path, 'SELECT id, v FROM "_dk_stage" ORDER BY id') == [(1, 10), (2, 20)]
    except dk.InvalidArgumentError as e:
        assert "_dk_stage" in str(e)
        assert _raw(path, 'SELECT id, v FROM "_dk_stage" ORDER BY id') == [(1, 1)]
    # the backend itself keeps the user's table and its temporary stage apart
    b = sqlite_store.backend
    schema = b.schema("_dk_stage")
    data = pa.table({"id": pa.array([2, 3], pa.int64()), "v": pa.array([200, 300], pa.int64())})
    stored = {i for (i,) in _raw(path, 'SELECT id FROM "_dk_stage"')}
    with b.transaction():
        existed = b.write("_dk_stage", data, schema, "upsert")
    assert ([False, False] if existed is None else existed.tolist()) == [i in stored for i in (2, 3)]
    assert _raw(path, 'SELECT id, v FROM "_dk_stage" WHERE id > 1 ORDER BY id') == [(2, 200), (3, 300)]


def test_a_table_named_like_a_statement_alias(sqlite_store):
    """Statements call the stage `s` and the table `d`: tables of those names work all the same."""
    for name in ("s", "d"):
        pd.DataFrame({"id": [1, 2], "v": [1, 2]}).dk.save(sqlite_store, name)
        res = pd.DataFrame({"id": [2, 3], "v": [20, 30]}).dk.save(sqlite_store, name, if_exists="upsert")
        assert res.ok, res.failures["message"].tolist()
        assert pd.DataFrame({"id": [1], "v": [-1]}).dk.update_batch(sqlite_store, name).ok
        assert pd.DataFrame({"id": [2]}).dk.delete(sqlite_store, name).ok
        assert dk.load(sqlite_store, name).to_dict("list") == {"id": [1, 3], "v": [-1, 30]}


# -- item 4: insertion order whatever the columns are called -------------------------------


@pytest.mark.parametrize(
    "columns", [["rowid"], ["ROWID", "_rowid_"], ["rowid", "_rowid_", "oid"], ["RowId", "_ROWID_", "Oid", "x"]]
)
def test_keyless_tables_keep_insertion_order_whatever_their_columns(sqlite_store, columns):
    df = pd.DataFrame({c: [30, 10, 20] for c in columns})
    df.dk.save(sqlite_store, "t")
    df.dk.save(sqlite_store, "t", if_exists="append")
    want = pd.concat([df, df], ignore_index=True)
    assert_frame_equal(dk.load(sqlite_store, "t"), want)
    assert_frame_equal(pd.concat(dk.load(sqlite_store, "t", chunksize=2)), want)
    assert dk.load(sqlite_store, "t", limit=2)[columns[0]].tolist() == [30, 10]


def test_a_foreign_keyless_table_with_a_rowid_column_keeps_insertion_order(sqlite_store):
    path = sqlite_store.backend.path
    _raw(path, "CREATE TABLE plain (rowid INTEGER, s TEXT)")
    _raw(path, "INSERT INTO plain VALUES (3, 'a'), (1, 'b'), (2, 'c')")
    assert dk.load(sqlite_store, "plain")["s"].tolist() == ["a", "b", "c"]


# -- item 10: threads sharing one Store ------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "memory"])
def test_threads_sharing_one_store_write_and_read_exactly(tmp_path, where):
    url = f"sqlite:///{tmp_path}/th.db" if where == "file" else "sqlite:///:memory:"
    base = pd.DataFrame({"id": np.arange(1000, dtype="int64"), "v": np.zeros(1000, dtype="int64")})
    writers, rounds, per = 3, 15, 100
    errors: list[BaseException] = []
    start = threading.Barrier(writers + 3)
    with dk.connect(url) as st:
        base.dk.save(st, "t")

        def run(work):
            def target():
                try:
                    start.wait(timeout=30)
                    work()
                except BaseException as e:  # noqa: BLE001 - reported by the main thread
                    errors.append(e)

            return threading.Thread(target=target)

        def writer(k):
            for r in range(rounds):
                ids = np.arange(per, dtype="int64") + 1000 + k * 10_000 + r * per
                res = pd.DataFrame({"id": ids, "v": np.full(per, k + 1)}).dk.save(st, "t", if_exists="upsert")
                assert res.ok and res.succeeded == per
                pd.DataFrame({"id": [10**6 + k], "v": [r]}).dk.save(st, f"own{k}", if_exists="replace")

        def updater():
            for r in range(rounds):
                ids = np.arange(r * 50, r * 50 + 50, dtype="int64")
                assert pd.DataFrame({"id": ids, "v": np.full(50, -1)}).dk.update_batch(st, "t").ok

        def reader():
            for _ in range(rounds):
                out = dk.load(st, "t")
                assert out["id"].is_unique and out["id"].is_monotonic_increasing and len(out) >= 1000
                assert len(pd.concat(dk.load(st, "t", chunksize=700, where=[("id", "<", 1000)]))) == 1000
                assert "t" in st.tables()

        threads = [run(lambda k=k: writer(k)) for k in range(writers)] + [run(updater), run(reader), run(reader)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a thread hung"
        assert not errors, repr(errors[0])

        want = pd.concat(
            [base.assign(v=np.where(base["id"] < rounds * 50, -1, 0))]
            + [
                pd.DataFrame(
                    {
                        "id": np.arange(rounds * per, dtype="int64") + 1000 + k * 10_000,
                        "v": np.full(rounds * per, k + 1),
                    }
                )
                for k in range(writers)
            ],
            ignore_index=True,
        )
        assert_frame_equal(dk.load(st, "t"), want)
        for k in range(writers):
            assert dk.load(st, f"own{k}")["v"].tolist() == [rounds - 1]


@pytest.mark.parametrize("where", ["file", "memory"])
def test_writing_and_reading_while_iterating_a_chunked_load(tmp_path, where):
    """A chunked load holds nothing between chunks: the loop may read and write the same store."""
    url = f"sqlite:///{tmp_path}/n.db" if where == "file" else "sqlite:///:memory:"
    done: list = []

    def loop():
        with dk.connect(url) as st:
            pd.DataFrame({"id": np.arange(100), "v": 0}).dk.save(st, "t")
            for chunk in dk.load(st, "t", chunksize=10):
                assert len(dk.load(st, "t")) == 100
                assert chunk.assign(v=1).dk.update_batch(st, "t").ok
            done.append(dk.load(st, "t")["v"].tolist())

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the loop hung"
    assert done == [[1] * 100]


# -- item 13: names SQLite cannot take, full disk, files that are not databases --------------


@pytest.mark.parametrize("name", ["sqlite_master", "sqlite_sequence", "SQLite_x", "sqlite_"])
def test_names_sqlite_reserves_are_refused_before_writing(sqlite_store, name):
    pd.DataFrame({"id": [1]}).dk.save(sqlite_store, "keep")
    df = pd.DataFrame({"id": [1], "name": ["x"]})
    for mode in ("fail", "replace", "append", "upsert"):
        with pytest.raises(dk.InvalidArgumentError, match="sqlite_"):
            df.dk.save(sqlite_store, name, if_exists=mode)
    for call in (
        lambda: df.dk.update_batch(sqlite_store, name),
        lambda: dk.load(sqlite_store, name),
        lambda: sqlite_store.drop(name),
    ):
        with pytest.raises(dk.InvalidArgumentError, match="sqlite_"):
            call()
    assert sqlite_store.tables() == ["keep"]


def test_names_that_only_look_reserved_are_ordinary(sqlite_store):
    for name in ("sqlite1", "sqliteXfoo", "my_sqlite_t"):
        pd.DataFrame({"id": [1]}).dk.save(sqlite_store, name)
    assert sqlite_store.tables() == ["my_sqlite_t", "sqlite1", "sqliteXfoo"]


def test_nul_in_names_is_an_invalid_argument_in_the_backend(sqlite_store):
    b = sqlite_store.backend
    pd.DataFrame({"id": [1], "v": [1]}).dk.save(sqlite_store, "t")
    schema = b.schema("t")
    with pytest.raises(dk.InvalidArgumentError, match="NUL"):
        b.schema("a\x00b")
    with pytest.raises(dk.InvalidArgumentError, match="NUL"), b.transaction():
        b.create("a\x00b", schema)
    bad = TableSchema(
        columns=[schema.columns[0], Column("v\x00w", "int64", pa.int64(), True, {"name": "Int64"})], key=["id"]
    )
    with pytest.raises(dk.InvalidArgumentError, match="NUL"), b.transaction():
        b.create("u", bad)
    assert sqlite_store.tables() == ["t"]


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs, unmounted whatever happens."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=False, capture_output=True, timeout=30
    ).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], check=False, capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True, timeout=30)


@pytest.mark.parametrize("mode", ["replace", "upsert", "append"])
def test_a_full_disk_is_a_storage_error_and_the_old_table_stays_whole(small_disk, mode):
    old = pd.DataFrame({"id": np.arange(100, dtype="int64"), "s": "old"})
    st = dk.connect(f"sqlite:///{small_disk}/f.db")
    try:
        old.dk.save(st, "t")
        big = pd.DataFrame({"id": np.arange(50, 20_050, dtype="int64"), "s": "y" * 500})
        with pytest.raises(dk.StorageError, match="(?i)disk is full") as e:
            big.dk.save(st, "t", if_exists=mode)
        assert "f.db" in str(e.value) and "'t'" in str(e.value)
        assert_frame_equal(dk.load(st, "t"), old)
        assert st.tables() == ["t"]
    finally:
        st.close()


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(dk.StorageError, match="notes.db") as e:
        dk.connect(f"sqlite:///{bad}")
    assert "not a database" in str(e.value)
    with pytest.raises(dk.StorageError, match="cannot open"):  # a folder where the file should be
        dk.connect(f"sqlite:///{tmp_path}")
    assert bad.read_text().startswith("these are my notes")


def test_a_database_locked_past_the_timeout_is_a_storage_error(tmp_path):
    db = tmp_path / "locked.db"
    url = f"sqlite:///{db}"
    with dk.connect(url) as st:
        pd.DataFrame({"id": [1]}).dk.save(st, "t")
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with dk.connect(url, timeout=0.2) as st:
            began = time.monotonic()
            with pytest.raises(dk.StorageError, match="locked") as e:
                pd.DataFrame({"id": [2]}).dk.save(st, "t", if_exists="append")
            assert time.monotonic() - began < 10 and "locked.db" in str(e.value)
            assert not isinstance(e.value, dk.ConcurrentWriteError)
            assert dk.load(st, "t")["id"].tolist() == [1]  # readers are not held up by a writer
    finally:
        other.execute("ROLLBACK")
        other.close()
