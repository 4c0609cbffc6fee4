"""What is particular to DuckDB: native types other DuckDB users query, CHECK constraints of tables made
elsewhere (isolated without savepoints), all or nothing, one writing process per file, threads, kill -9."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd.backends.duckdb import checks
from dataknobs_pd.testing import dtype_matrix

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "store.duckdb")


@pytest.fixture
def store(path):
    s = dk.connect(f"duckdb:///{path}")
    yield s
    s.close()


def sql(path, query, *params):
    """Plain DuckDB SQL on the file, as another user would run it (this process shares the open database)."""
    con = duckdb.connect(path)
    try:
        return con.execute(query, list(params)).fetchall()
    finally:
        con.close()


def run(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- native types ------------------------------------------------------------------------------
def test_columns_get_natural_duckdb_types(store, path):
    df = dtype_matrix()
    df["td_us"] = df["td"].astype("timedelta64[us]")
    df["wide"] = pd.Series([decimal.Decimal("1" * 45 + ".5"), None] * 3 + [decimal.Decimal(-2)], dtype=object)
    df["lst"] = pd.Series([[1, 2], None, [], [3], [4], [5], [6]], dtype=pd.ArrowDtype(pa.list_(pa.int64())))
    df.dk.save(store, "m")
    types = {
        c: (t, n)
        for c, t, n in sql(path, "SELECT column_name, data_type, comment FROM duckdb_columns() WHERE table_name = 'm'")
    }
    assert {
        c: t
        for c, (t, _) in types.items()
        if c
        in (
            "id",
            "u8",
            "u32",
            "f32",
            "bool",
            "str",
            "cat_str",
            "cat_num",
            "dt_s",
            "dt_ms",
            "dt_us",
            "dt_ns",
            "dt_utc",
            "dt_ny",
            "dec",
            "bytes",
            "date",
            "json",
            "td_us",
            "lst",
        )
    } == {
        "id": "BIGINT",
        "u8": "UTINYINT",
        "u32": "UINTEGER",
        "f32": "FLOAT",
        "bool": "BOOLEAN",
        "str": "VARCHAR",
        "cat_str": "ENUM('c', 'b', 'a')",
        "cat_num": "BIGINT",
        "dt_s": "TIMESTAMP_S",
        "dt_ms": "TIMESTAMP_MS",
        "dt_us": "TIMESTAMP",
        "dt_ns": "TIMESTAMP_NS",
        "dt_utc": "TIMESTAMP WITH TIME ZONE",
        "dt_ny": "TIMESTAMPTZ_NS",
        "dec": "DECIMAL(38,4)",
        "bytes": "BLOB",
        "date": "DATE",
        "json": "JSON",
        "td_us": "INTERVAL",
        "lst": "BIGINT[]",
    }
    # the two encodings say what they hold
    assert types["td"] == ("BIGINT", "duration in nanoseconds (timedelta64[ns])")
    assert types["wide"][0] == "VARCHAR" and "exact text" in types["wide"][1]
    # values, as plain SQL sees them
    row = sql(
        path,
        "SELECT dt_ny, dt_ns, td, td_us, dec, json->>'$.a[1]', cat_str::VARCHAR, cat_ord::VARCHAR, u32, date,"
        " epoch_ns(dt_ns) FROM m WHERE id = 1",
    )[0]
    assert row[0] == dt.datetime(2021, 3, 14, 1, 59, 59, tzinfo=dt.UTC)
    assert row[2] == 1_000_000_000 and row[3] == dt.timedelta(seconds=1)
    assert row[4] == decimal.Decimal("1.1") and row[5] == "2" and row[6] == "b"
    assert row[7] == "lo"
    assert row[8] == 0 and row[9] == dt.date(2020, 2, 29)
    assert row[10] == int(df["dt_ns"].iloc[0].value)  # nanoseconds kept
    assert_frame_equal(dk.load(store, "m"), df, check_dtype=True)


def test_schema_sits_in_dk_schema_and_is_not_a_user_table(store, path):
    pd.DataFrame({"id": [1]}).dk.save(store, "t")
    assert store.tables() == ["t"]
    assert [r[0] for r in sql(path, 'SELECT name FROM "_dk_schema" ORDER BY name')] == ["t", "t__batches"]
    store.drop("t")
    assert store.tables() == [] and sql(path, 'SELECT count(*) FROM "_dk_schema"') == [(0,)]


def test_categories_grow_as_the_enum_grows_and_rows_keep_their_order(store, path):
    pd.DataFrame({"c": pd.Categorical(["b", "a"]), "n": [1, 2]}).dk.save(store, "t")  # no key: insertion order
    pd.DataFrame({"c": pd.Categorical(["z", "a"]), "n": [3, 4]}).dk.save(store, "t", if_exists="append")
    assert sql(path, "SELECT data_type FROM duckdb_columns() WHERE table_name = 't' AND column_name = 'c'") == [
        ("ENUM('a', 'b', 'z')",)
    ]
    out = dk.load(store, "t")
    assert out["n"].tolist() == [1, 2, 3, 4] and out["c"].tolist() == ["b", "a", "z", "a"]
    assert list(out["c"].cat.categories) == ["a", "b", "z"]


def test_values_duckdb_cannot_hold_fail_their_rows_at_convert(store):
    far = np.array(["2020-01-01", "9999-12-31"], dtype="datetime64[s]").astype("int64")
    df = pd.DataFrame(
        {
            "id": [1, 2, 3],
            # 10**13 s is about 317,000 years: beyond TIMESTAMPTZ's and INTERVAL's microseconds
            "aware": pd.Series(np.array([far[0], 10**13, far[1]], dtype="datetime64[s]")).dt.tz_localize("UTC"),
            "span": pd.Series(np.array([1, 2, 10**13], dtype="timedelta64[s]")),
        }
    )
    res = df.dk.save(store, "t")
    assert res.failures["row"].tolist() == [1, 2]
    assert set(res.failures["stage"]) == {"convert"} and set(res.failures["error"]) == {"OutOfRange"}
    assert "'aware'" in res.failures["message"].iloc[0] and "microseconds" in res.failures["message"].iloc[0]
    assert "'span'" in res.failures["message"].iloc[1]
    assert_frame_equal(dk.load(store, "t"), df.iloc[[0]].reset_index(drop=True), check_dtype=True)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("nat", [True, False], ids=["nat", "no_nat"])
def test_durations_with_nat_round_trip_through_every_write(store, unit, nat):
    # pandas leaves int64's minimum under a NaT, which DuckDB scaled to microseconds and refused (s, ms)
    dtype = f"timedelta64[{unit}]"

    def frame(ids, *spans):
        spans_ = [pd.NaT if s is None and nat else pd.Timedelta(s if s is not None else 9, "s") for s in spans]
        return pd.DataFrame({"id": ids, "d": pd.Series(spans_, dtype="timedelta64[ns]").astype(dtype)})

    df = frame([1, 2], 5, None)
    assert df.dk.save(store, "t").failures.empty
    assert_frame_equal(dk.load(store, "t"), df)
    more = frame([3, 4, 5], None, 7, None)
    assert more.dk.save(store, "t", if_exists="append", chunksize=2).failures.empty
    up = frame([2, 6], 8, None)
    assert up.dk.save(store, "t", if_exists="upsert").failures.empty
    change = frame([1, 3], None, 4)
    assert change.dk.update_batch(store, "t").failures.empty
    want = frame([1, 2, 3, 4, 5, 6], None, 8, 4, 7, None, None)
    assert_frame_equal(dk.load(store, "t"), want)
    if nat:
        assert dk.load(store, "t", where=[("d", "==", pd.Timedelta(8, "s"))])["id"].tolist() == [2]
        assert dk.load(store, "t", where=[("d", "==", None)])["id"].tolist() == [1, 5, 6]
        assert dk.load(store, "t", where=[("d", "in", [pd.NaT, pd.Timedelta(4, "s")])])["id"].tolist() == [1, 3, 5, 6]


def test_filters_compare_exactly_in_every_unit(store):
    t0 = pd.Timestamp("2021-03-14 02:30:00")
    ns = pd.Series([t0, t0 + pd.Timedelta(1, "ns"), t0 + pd.Timedelta(2, "ns")])
    wide = [decimal.Decimal("9" * 40), decimal.Decimal("-" + "9" * 40), decimal.Decimal(5)]
    df = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "ns": ns,
            "aware": ns.dt.tz_localize("Asia/Tokyo"),
            "span": pd.to_timedelta([1, 2, 3], unit="ns"),
            "wide": pd.Series(wide, dtype=object),
        }
    )
    df.dk.save(store, "t")
    assert dk.load(store, "t", where=[("ns", ">", t0 + pd.Timedelta(1, "ns"))])["id"].tolist() == [3]
    edge = (t0 + pd.Timedelta(1, "ns")).tz_localize("Asia/Tokyo").tz_convert("UTC")
    assert dk.load(store, "t", where=[("aware", "==", edge)])["id"].tolist() == [2]
    assert dk.load(store, "t", where=[("span", ">=", pd.Timedelta(2, "ns"))])["id"].tolist() == [2, 3]
    assert dk.load(store, "t", where=[("wide", ">", 0)])["id"].tolist() == [1, 3]  # as numbers, not text
    assert dk.load(store, "t", where=[("wide", "in", [wide[2]])])["id"].tolist() == [3]
    assert dk.load(store, "t", order_by="wide")["id"].tolist() == [2, 3, 1]


def test_filter_values_are_bound_not_spliced(store):
    df = pd.DataFrame({"id": [1, 2], "s": ["x'; DROP TABLE t; --", "y"]})
    df.dk.save(store, "t")
    assert dk.load(store, "t", where=[("s", "==", "x'; DROP TABLE t; --")])["id"].tolist() == [1]
    assert store.tables() == ["t"]


def test_a_table_made_elsewhere_loads_with_its_types_and_key(store, path):
    sql(
        path,
        "CREATE TABLE ext (code INTEGER PRIMARY KEY, n INTEGER NOT NULL, m INTEGER, name VARCHAR,"
        " seen TIMESTAMPTZ, d DECIMAL(10, 2), tags VARCHAR[], mood ENUM('sad', 'ok'))",
    )
    sql(
        path,
        "INSERT INTO ext VALUES (2, 1, NULL, 'b', '2020-01-01 00:00:00+00', 1.25, ['x'], 'ok'),"
        " (1, 2, 7, NULL, NULL, NULL, NULL, NULL)",
    )
    assert store.schema("ext").key == ["code"]
    out = dk.load(store, "ext")
    assert out["code"].tolist() == [1, 2] and out["code"].dtype == "int32" and out["n"].dtype == "int32"
    assert out["m"].dtype == "Int32" and out["m"].isna().tolist() == [False, True]
    assert out["name"].tolist() == [None, "b"] and out["mood"].tolist() == [None, "ok"]
    assert out["seen"].dtype == "datetime64[us, UTC]" and out["d"].iloc[1] == decimal.Decimal("1.25")
    assert (
        pd.DataFrame({"code": np.array([1], dtype="int32"), "name": ["a"]}).dk.update_batch(store, "ext", key="code").ok
    )
    assert sql(path, "SELECT name FROM ext ORDER BY code") == [("a",), ("b",)]


def test_primary_key_option_declares_the_key(path):
    with dk.connect(f"duckdb:///{path}", primary_key=True) as store:
        pd.DataFrame({"id": [1, 2], "v": ["a", "b"]}).dk.save(store, "t")
        pd.DataFrame({"id": [2, 3], "v": ["B", "C"]}).dk.save(store, "t", if_exists="upsert")
    assert sql(
        path,
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE table_name = 't'"
        " AND constraint_type = 'PRIMARY KEY'",
    ) == [(["id"],)]
    sql(path, "INSERT OR REPLACE INTO t VALUES (3, 'c')")  # what a declared key lets other users do
    assert sql(path, "SELECT * FROM t ORDER BY id") == [(1, "a"), (2, "B"), (3, "c")]


def test_new_columns_get_natural_types_too(path):
    with dk.connect(f"duckdb:///{path}", primary_key=True) as store:  # a table with an index as well
        pd.DataFrame({"id": [1, 2], "v": [1.5, 2.5]}).dk.save(store, "t")
        new = pd.DataFrame({"id": [2], "c": pd.Categorical(["x"]), "span": pd.to_timedelta([5], unit="ns")})
        assert new.dk.update_batch(store, "t", new_columns="add").ok
        out = dk.load(store, "t")
    types = dict(sql(path, "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 't'"))
    assert types == {"id": "BIGINT", "v": "DOUBLE", "c": "ENUM('x')", "span": "BIGINT"}
    assert out["span"].tolist()[1] == pd.Timedelta(5, "ns") and out["c"].isna().tolist() == [True, False]


def test_reading_in_chunks_while_writing_in_the_same_thread(store):
    pd.DataFrame({"id": range(250), "v": 1.5}).dk.save(store, "a")
    for part in dk.load(store, "a", chunksize=100):  # each read has a connection of its own
        assert part.dk.save(store, "b", if_exists="append").ok
    assert dk.load(store, "b")["id"].tolist() == list(range(250))


# -- failures without savepoints ----------------------------------------------------------------
@pytest.fixture
def prices(store, path):
    sql(
        path,
        "CREATE TABLE prices (id BIGINT PRIMARY KEY, price DOUBLE CHECK (price > 0), qty INTEGER,"
        " CHECK (qty < 100 OR qty IS NULL))",
    )
    return store


def priced(n, bad_price=(), bad_qty=()):
    price = np.linspace(1, 2, n)
    price[list(bad_price)] = -1.0
    qty = np.arange(n, dtype="int32") % 50
    qty[list(bad_qty)] = 150
    return pd.DataFrame({"id": np.arange(1, n + 1), "price": price, "qty": qty})


def test_check_violations_are_isolated_to_their_rows_with_duckdbs_message(prices, path, monkeypatch):
    probes = []
    real = checks.refused_rows
    monkeypatch.setattr(checks, "refused_rows", lambda *a: probes.append(1) or real(*a))
    df = priced(1000, bad_price=[3, 500, 998], bad_qty=[501])
    res = df.dk.save(prices, "prices", if_exists="append", chunksize=256)
    assert res.failures["row"].tolist() == [3, 500, 501, 998]
    assert set(res.failures["stage"]) == {"write"} and set(res.failures["error"]) == {"CheckConstraint"}
    assert set(res.failures["code"]) == {"ConstraintException"}
    messages = res.failures.set_index("row")["message"]
    assert 'CHECK constraint failed on table "prices"' in messages[3] and "(price > 0)" in messages[3]
    assert "(qty < 100)" in messages[501]
    ids = [r[0] for r in sql(path, "SELECT id FROM prices ORDER BY id")]
    assert ids == [i + 1 for i in range(1000) if i not in (3, 500, 501, 998)]
    assert len(probes) == 4  # one evaluation per chunk, however many halvings the engine makes


def test_check_on_updated_rows_sees_the_columns_not_given(prices, path):
    priced(10).dk.save(prices, "prices", if_exists="append")
    fix = pd.DataFrame({"id": [2, 3, 4], "qty": np.array([7, 500, 8], dtype="int32")})  # price stays as stored
    res = fix.dk.update_batch(prices, "prices")
    assert res.failures["row"].tolist() == [1] and res.failures["error"].tolist() == ["CheckConstraint"]
    assert sql(path, "SELECT id, qty FROM prices WHERE id BETWEEN 2 AND 4 ORDER BY id") == [(2, 7), (3, 2), (4, 8)]
    bad = pd.DataFrame({"id": [5, 6], "price": [-5.0, 9.0]})
    res = bad.dk.save(prices, "prices", if_exists="upsert")
    assert res.failures["row"].tolist() == [0] and "(price > 0)" in res.failures["message"].iloc[0]
    assert sql(path, "SELECT price FROM prices WHERE id = 6") == [(9.0,)]


def test_errors_raise_is_all_or_nothing_across_chunks(prices, path):
    priced(5).dk.save(prices, "prices", if_exists="append")
    before = sql(path, "SELECT * FROM prices ORDER BY id")
    df = priced(900, bad_price=[850]).assign(id=lambda d: d["id"] + 5)
    with pytest.raises(dk.BatchError) as info:
        df.dk.save(prices, "prices", if_exists="append", errors="raise", chunksize=100)
    assert info.value.result.failures["row"].tolist() == [850]
    assert sql(path, "SELECT * FROM prices ORDER BY id") == before


def test_a_statement_duckdb_refuses_anyway_ends_the_call_whole(store, path):
    """A UNIQUE constraint is not evaluated beforehand: DuckDB aborts the transaction, so the call
    raises StorageError and writes nothing (never continues on an aborted transaction)."""
    sql(path, "CREATE TABLE u (id BIGINT PRIMARY KEY, email VARCHAR UNIQUE)")
    sql(path, "INSERT INTO u VALUES (1, 'a@x')")
    df = pd.DataFrame({"id": [2, 3, 4], "email": ["b@x", "a@x", "c@x"]})
    with pytest.raises(dk.StorageError, match=r"'u'.*(?i:duplicate|unique).*nothing of this call was written"):
        df.dk.save(store, "u", if_exists="append", chunksize=1)
    assert sql(path, "SELECT * FROM u") == [(1, "a@x")]
    assert df.iloc[[0, 2]].dk.save(store, "u", if_exists="append").ok  # the store goes on working


# -- processes and threads ----------------------------------------------------------------------
def test_a_second_process_gets_a_clear_error_while_the_file_is_open(store, path):
    pd.DataFrame({"id": [1]}).dk.save(store, "t")
    out = run(
        """
        import sys, time, dataknobs_pd as dk
        start = time.monotonic()
        try:
            dk.connect("duckdb:///" + sys.argv[1], timeout=0.5)
        except dk.StorageError as e:
            print(f"{time.monotonic() - start:.2f}", e)
    """,
        path,
    )
    assert out.returncode == 0, out.stderr
    waited, message = out.stdout.split(" ", 1)
    assert float(waited) >= 0.5 and "another process has this DuckDB file open" in message and "timeout=" in message


def test_a_second_process_waits_for_the_file_within_its_timeout(path):
    store = dk.connect(f"duckdb:///{path}")
    pd.DataFrame({"id": [1], "v": ["first"]}).dk.save(store, "t")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
        import sys, pandas as pd, dataknobs_pd as dk
        print("trying", flush=True)
        with dk.connect("duckdb:///" + sys.argv[1], timeout=60) as s:
            pd.DataFrame({"id": [2], "v": ["second"]}).dk.save(s, "t", if_exists="append")
        print("saved", flush=True)
    """),
            path,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "trying"
    time.sleep(1.0)  # the child waits while this process holds the file
    assert child.poll() is None
    store.close()
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and "saved" in out, err
    assert dk.load(f"duckdb:///{path}", "t")["v"].tolist() == ["first", "second"]
    dk.connect(f"duckdb:///{path}").close()


def test_read_only_stores_share_the_file_and_refuse_writes(path):
    with dk.connect(f"duckdb:///{path}") as s:
        pd.DataFrame({"id": [1, 2]}).dk.save(s, "t")
    with dk.connect(f"duckdb:///{path}", read_only=True) as ro:
        out = run(
            """
            import sys, dataknobs_pd as dk
            print(dk.load(dk.connect("duckdb:///" + sys.argv[1], read_only=True), "t")["id"].tolist())
        """,
            path,
        )
        assert out.stdout.strip() == "[1, 2]", out.stderr
        with pytest.raises(dk.StorageError, match="read-only"):
            pd.DataFrame({"id": [3]}).dk.save(ro, "t", if_exists="append")
        assert dk.load(ro, "t")["id"].tolist() == [1, 2]


def test_eight_threads_share_one_database(store):
    n, per = 8, 5_000
    pd.DataFrame({"id": np.arange(n * per), "v": 0}).dk.save(store, "shared")
    errors = []
    go = threading.Barrier(n)

    def work(i):
        try:
            go.wait(timeout=30)
            ids = np.arange(i * per, (i + 1) * per)
            assert pd.DataFrame({"id": ids, "v": i + 1}).dk.update_batch(store, "shared").ok
            assert pd.DataFrame({"id": ids[:10], "w": str(i)}).dk.save(store, f"own{i}").ok
            assert len(dk.load(store, "shared", where=[("id", ">=", 0)])) == n * per
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, repr(errors[0])
    out = dk.load(store, "shared")
    assert (out["v"].to_numpy() == out["id"].to_numpy() // per + 1).all()
    assert sorted(t for t in store.tables() if t.startswith("own")) == [f"own{i}" for i in range(n)]


def test_threads_upserting_the_same_new_keys_take_turns(store):
    """Without a PRIMARY KEY DuckDB would let two transactions insert the same key: writers of one table
    wait for each other (claim), so each key is written once, by one of them."""
    pd.DataFrame({"id": np.array([], dtype="int64"), "w": pd.Series([], dtype="string")}).dk.save(store, "t")
    errors = []
    go = threading.Barrier(6)

    def upsert(i):
        try:
            go.wait(timeout=30)
            for _ in range(3):
                df = pd.DataFrame({"id": np.arange(2000), "w": f"t{i}"})
                assert df.dk.save(store, "t", if_exists="upsert").ok
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=upsert, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, repr(errors[0])
    out = dk.load(store, "t")
    assert out["id"].tolist() == list(range(2000)) and out["w"].nunique() == 1


def test_kill_9_during_a_replacing_save_leaves_the_old_table_whole(path):
    old = pd.DataFrame({"id": np.arange(1000), "v": np.linspace(0, 1, 1000), "s": "old"})
    with dk.connect(f"duckdb:///{path}") as s:
        old.dk.save(s, "t")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
        import sys, numpy as np, pandas as pd, dataknobs_pd as dk
        from dataknobs_pd.backends.duckdb import DuckDBBackend
        write = DuckDBBackend.write
        def reporting(self, *args):
            out = write(self, *args)
            print("chunk", flush=True)
            return out
        DuckDBBackend.write = reporting
        n = 4_000_000
        df = pd.DataFrame({"id": np.arange(n), "v": np.ones(n), "s": "new"})
        df.dk.save("duckdb:///" + sys.argv[1], "t", if_exists="replace", chunksize=100_000)
        print("done", flush=True)
    """),
            path,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = [child.stdout.readline().strip() for _ in range(5)]
    assert seen == ["chunk"] * 5, child.stderr.read()
    os.kill(child.pid, signal.SIGKILL)
    rest, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL and "done" not in rest
    with dk.connect(f"duckdb:///{path}") as s:
        assert s.tables() == ["t"]
        assert_frame_equal(dk.load(s, "t"), old, check_dtype=True)
        assert pd.DataFrame({"id": [5000], "v": [2.0], "s": ["after"]}).dk.save(s, "t", if_exists="append").ok
