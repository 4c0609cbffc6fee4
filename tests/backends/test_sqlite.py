"""What is particular to SQLite: native declarations, constraints of its own, quoting, foreign tables."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

import dataknobs_pd as dk
from dataknobs_pd.backends.sqlite.reader import READERS


def sql(store, query, *params):
    return sqlite3.connect(store.backend.path).execute(query, params).fetchall()


def test_declares_types_not_null_and_primary_key(sqlite_store):
    df = pd.DataFrame({"id": [1], "f": [1.5], "s": ["x"], "b": [b"x"], "n": pd.array([None], dtype="Int64")})
    df.dk.save(sqlite_store, "t")
    info = {r[1]: (r[2], r[3], r[5]) for r in sql(sqlite_store, 'PRAGMA table_info("t")')}
    assert info == {
        "id": ("INTEGER", 1, 1),
        "f": ("REAL", 0, 0),
        "s": ("TEXT", 0, 0),
        "b": ("BLOB", 0, 0),
        "n": ("INTEGER", 0, 0),
    }
    assert sql(sqlite_store, 'SELECT name FROM "_dk_schema" ORDER BY name') == [("t",), ("t__batches",)]


def test_values_are_natural_for_other_sqlite_tools(sqlite_store):
    df = pd.DataFrame(
        {
            "id": [1],
            "when": pd.to_datetime(["2020-01-01 00:00:01"]).as_unit("s"),
            "d": [pd.Timestamp("2021-05-06").date()],
        }
    )
    df.dk.save(sqlite_store, "t")
    assert sql(sqlite_store, 'SELECT "when", "d" FROM "t"') == [(1577836801, "2021-05-06")]


def test_check_constraint_failures_are_isolated_by_halving(sqlite_store):
    pd.DataFrame({"id": [0], "v": [1]}).dk.save(sqlite_store, "t")
    con = sqlite3.connect(sqlite_store.backend.path)
    con.execute(
        "CREATE TRIGGER no_neg BEFORE INSERT ON \"t\" WHEN NEW.v < 0 BEGIN SELECT RAISE(ABORT, 'v must be >= 0'); END"
    )
    con.commit()
    con.close()
    n = 1000
    v = np.arange(n)
    bad = [3, 500, 501, 998]
    v[bad] = -1
    res = pd.DataFrame({"id": np.arange(1, n + 1), "v": v}).dk.save(
        sqlite_store, "t", if_exists="append", chunksize=256
    )
    assert res.failures["row"].tolist() == bad
    assert set(res.failures["stage"]) == {"write"}
    assert "v must be >= 0" in res.failures["message"].iloc[0]
    assert res.failures["code"].iloc[0].startswith("SQLITE_CONSTRAINT")
    ids = dk.load(sqlite_store, "t", columns=["id"])["id"]
    assert len(ids) == 1 + n - len(bad) and not ids.isin([b + 1 for b in bad]).any()


def test_uint64_beyond_int64_is_a_convert_failure(sqlite_store):
    df = pd.DataFrame({"u": np.array([1, 2**63 + 5, 7], dtype="uint64")})
    res = df.dk.save(sqlite_store, "t")
    assert res.failures["row"].tolist() == [1] and res.failures["stage"].tolist() == ["convert"]
    assert res.failures["error"].tolist() == ["OutOfRange"]
    assert dk.load(sqlite_store, "t")["u"].tolist() == [1, 7]


def test_awkward_identifiers_are_quoted(sqlite_store):
    df = pd.DataFrame({'we"ird col': [1, 2], "select": ["a", "b"], "id": [1, 2]})
    df.dk.save(sqlite_store, 'tab"le; DROP TABLE x')
    out = dk.load(sqlite_store, 'tab"le; DROP TABLE x', where=[('we"ird col', "==", 2)])
    assert out["select"].tolist() == ["b"]


def test_filter_values_are_bound_not_spliced(sqlite_store):
    pd.DataFrame({"s": ["a", "x' OR '1'='1"]}).dk.save(sqlite_store, "t")
    assert dk.load(sqlite_store, "t", where=[("s", "==", "x' OR '1'='1")])["s"].tolist() == ["x' OR '1'='1"]
    assert dk.load(sqlite_store, "t", where=[("s", "==", "' OR 1=1 --")]).empty


def test_decimal_range_filters_compare_numbers(sqlite_store):
    import decimal

    df = pd.DataFrame({"d": pd.Series([decimal.Decimal(x) for x in ("9.5", "10.25", "-3")], dtype=object)})
    df.dk.save(sqlite_store, "t")
    out = dk.load(sqlite_store, "t", where=[("d", ">", decimal.Decimal("9.9"))])
    assert out["d"].tolist() == [decimal.Decimal("10.25")]


def test_foreign_table_loads(sqlite_store):
    con = sqlite3.connect(sqlite_store.backend.path)
    con.execute("CREATE TABLE plain (k INTEGER PRIMARY KEY, x REAL, s TEXT)")
    con.execute("INSERT INTO plain VALUES (2, 1.5, 'b'), (1, NULL, NULL)")
    con.commit()
    out = dk.load(sqlite_store, "plain")
    assert out["k"].tolist() == [1, 2] and out["s"].tolist() == [None, "b"]
    assert "plain" in sqlite_store.tables()


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(dk.DataKnobsError, match="does not exist"):
        dk.connect(f"sqlite:///{tmp_path}/no/such/dir/x.db")


def test_reads_resume_when_adbc_guesses_a_type_wrong(sqlite_store):
    """ADBC (in the reader process) types a column from its first rows; a TEXT column that is NULL for
    longer than that must still come back whole (the rest is read with sqlite3 from where it stopped)."""
    assert READERS.wait(60), "no reader process started"
    n = 70_000 + 10
    s = pd.Series([None] * 70_000 + ["late"] * 10, dtype="str")
    df = pd.DataFrame({"id": range(n), "s": s, "b": pd.Series([None] * 70_000 + [b"x"] * 10, dtype=object)})
    df.dk.save(sqlite_store, "t")
    pd.testing.assert_frame_equal(dk.load(sqlite_store, "t"), df)
    parts = list(dk.load(sqlite_store, "t", chunksize=30_000))
    pd.testing.assert_frame_equal(pd.concat(parts), df)
    assert dk.load(sqlite_store, "t", limit=70_003)["s"].tail(3).tolist() == ["late"] * 3


def test_dtype_matrix_through_the_sqlite3_read_path():
    from dataknobs_pd.testing import dtype_matrix

    df = dtype_matrix()
    with dk.connect("sqlite:///:memory:") as s:  # a reader process cannot share an in-memory database
        assert s.backend.conn.readers is None
        df.dk.save(s, "m")
        pd.testing.assert_frame_equal(dk.load(s, "m"), df, check_dtype=True)


def test_in_memory_sqlite():
    with dk.connect("sqlite:///:memory:") as s:
        pd.DataFrame({"a": [1]}).dk.save(s, "t")
        assert dk.load(s, "t")["a"].tolist() == [1]


@pytest.mark.parametrize(
    "keys",
    [
        pd.Series([3, -(2**63), 2**63 - 1, 0, 7], dtype="int64"),  # one integer key: found through json_each
        pd.Series(["é", 'q"uote', "🙂", "", "x y"], dtype="string"),  # one text key: likewise
        pd.Series(pd.to_datetime(["2020-01-01", "1970-01-01", "2262-01-01", "1900-01-01", "2000-02-29"])),
        pd.Series(pd.Categorical(["b", "a", "c", "d", "e"])),
    ],
    ids=["int", "text", "timestamp", "category"],
)
def test_existing_keys_among_new_rows_fail_alone_and_the_rest_is_written(sqlite_store, keys):
    df = pd.DataFrame({"k": keys, "v": np.arange(5)})
    df.iloc[[1, 3]].dk.save(sqlite_store, "t", key="k")
    res = df.assign(v=df["v"] + 10).dk.save(sqlite_store, "t", if_exists="append")
    assert (res.succeeded, sorted(res.failures["row"])) == (3, [1, 3])
    out = dk.load(sqlite_store, "t").set_index("k")["v"]
    assert out.to_dict() == {keys[i]: v for i, v in zip(range(5), [10, 1, 12, 3, 14])}


def test_existing_composite_keys_fail_alone(sqlite_store):
    df = pd.DataFrame({"a": [1, 1, 2, 2], "b": ["x", "y", "x", "y"], "v": [1, 2, 3, 4]})
    df.iloc[[2]].dk.save(sqlite_store, "t", key=["a", "b"])
    res = df.dk.save(sqlite_store, "t", if_exists="append")
    assert (res.succeeded, list(res.failures["row"])) == (3, [2])
    assert len(dk.load(sqlite_store, "t")) == 4


def test_undo_reads_its_images_through_a_reader_process_before_it_writes(tmp_path, monkeypatch):
    """dk.undo reads the images and the rows they are of in its write transaction, before writing: a reader
    process reads them then (the last commit is what the transaction sees), and they are put back exactly."""
    from pandas.testing import assert_frame_equal

    url = f"sqlite:///{tmp_path}/u.db"
    df = pd.DataFrame(
        {
            "id": np.arange(50),
            "f": np.where(np.arange(50) % 7 == 0, np.nan, np.arange(50) / 3),
            "s": pd.Series([f"é{i}" if i % 5 else None for i in range(50)], dtype="string"),
            "c": pd.Categorical(["a", "b"] * 25),
            "t": pd.date_range("2024-03-10", periods=50, freq="h", tz="America/New_York"),
            "n": pd.array([i if i % 4 else None for i in range(50)], dtype="Int64"),
        }
    )
    df.dk.save(url, "t")
    upd = df.iloc[::3].assign(f=-1.0, s="new", c="b", t=df["t"].iloc[0], n=7)
    res = upd.dk.update_batch(url, "t", undoable=True)
    assert READERS.wait(30)
    asked: list[str] = []
    real = READERS.read
    monkeypatch.setattr(READERS, "read", lambda path, sql, *a: asked.append(sql) or real(path, sql, *a))
    u = dk.undo(url, "t", res.batch_id)
    assert u.ok and u.succeeded == len(upd) and any("t__undo" in sql for sql in asked)
    assert_frame_equal(dk.load(url, "t"), df)


def test_a_transaction_is_pristine_until_it_writes(tmp_path):
    store = dk.connect(f"sqlite:///{tmp_path}/p.db")
    pd.DataFrame({"id": [1]}).dk.save(store, "t")
    conn = store.backend.conn
    assert not conn.pristine()  # outside a transaction
    with store.backend.transaction():
        assert conn.pristine()
        with conn.sql("writing") as c:
            c.execute('CREATE TABLE "x" (a)')
        assert not conn.pristine()  # a table made, no row changed
    with store.backend.transaction():
        with conn.sql("writing") as c:
            c.execute('INSERT INTO "x" VALUES (1)')
        assert not conn.pristine()
    store.close()
