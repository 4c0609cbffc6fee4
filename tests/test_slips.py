"""The usual slips, each answered by a message that says what is wrong and what to do, and nothing
written or created on the way: a mistyped SQLite path, a Series where a DataFrame goes, a table too wide for
PostgreSQL, a relative path; and the documentation of every public call's parameters."""

from __future__ import annotations

import inspect
import os
import sqlite3

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd.accessor import DkAccessor
from tests import pg


# -- a SQLite path where there is no database ------------------------------------------------------------------
def test_loading_from_a_sqlite_file_that_does_not_exist_creates_nothing_and_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    where = str(tmp_path / "nope.db")
    with pytest.raises(dk.TableNotFoundError) as info:
        dk.load("sqlite:///nope.db", "t")
    message = str(info.value)
    assert "no SQLite database" in message and repr(where) in message and "'t'" in message
    store = dk.connect("sqlite:///nope.db")
    assert store.tables() == []
    for call in (lambda: store.drop("t"), lambda: store.schema("t")):
        with pytest.raises(dk.TableNotFoundError, match="no SQLite database"):
            call()
    frame = pd.DataFrame({"id": [1], "v": [1.5]})
    for call in (lambda: frame.dk.update_batch(store, "t"), lambda: frame.dk.delete(store, "t")):
        with pytest.raises(dk.TableNotFoundError, match="no SQLite database"):
            call()
    assert os.listdir(tmp_path) == []  # no nope.db, no -wal or -journal beside it

    with pytest.raises(dk.StorageError, match="does not exist"):  # a missing folder is refused at connect, as ever
        dk.connect("sqlite:///no/such/folder/x.db")


def test_a_store_of_a_new_sqlite_file_creates_it_at_its_first_write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    early = dk.connect("sqlite:///new.db")  # opened before the file exists: it sees what is written later
    store = dk.connect("sqlite:///new.db")
    assert not (tmp_path / "new.db").exists()
    df = pd.DataFrame({"id": [1, 2], "v": ["a", "b"]})
    assert df.dk.save(store, "t").ok
    assert (tmp_path / "new.db").is_file()
    assert early.tables() == ["t"]
    assert_frame_equal(dk.load(early, "t"), df)

    other = dk.connect("sqlite:///made-elsewhere.db")  # another tool creates the file after the store opened
    with sqlite3.connect(tmp_path / "made-elsewhere.db") as con:
        con.execute("CREATE TABLE plain (a INTEGER)")
        con.execute("INSERT INTO plain VALUES (7)")
    assert other.tables() == ["plain"]
    assert dk.load(other, "plain")["a"].tolist() == [7]
    for s in (early, store, other):
        s.close()


# -- a Series where a DataFrame goes ---------------------------------------------------------------------------
def test_a_series_given_to_a_writing_call_is_refused_saying_to_use_to_frame(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    named = pd.Series([1.5, 2.5], name="v")
    calls = {
        "dk.save": lambda: dk.save(named, url, "t"),
        "dk.update_batch": lambda: dk.update_batch(named, url, "t"),
        "dk.delete": lambda: dk.delete(named, url, "t"),
        "series.dk.save": lambda: named.dk.save(url, "t"),
        "series.dk.update_batch": lambda: named.dk.update_batch(url, "t", key="v"),
    }
    for name, call in calls.items():
        with pytest.raises(dk.InvalidArgumentError) as info:
            call()
        message = str(info.value)
        assert "the input is a pandas Series" in message and "series.to_frame()" in message and "'v'" in message, name
    with pytest.raises(dk.InvalidArgumentError, match=r"item 1 of the input is a pandas Series.*to_frame"):
        dk.save([named.to_frame(), named], url, "t")
    with pytest.raises(dk.InvalidArgumentError, match=r"pandas Series.*series\.to_frame\(name\)"):  # no name to use
        dk.save(pd.Series([1.0, 2.0]), url, "t")
    with pytest.raises(dk.InvalidArgumentError, match=r"a dict.*pd\.DataFrame\(data\)"):
        dk.save({"id": [1, 2]}, url, "t")
    assert dk.connect(url).tables() == []
    assert named.to_frame().dk.save(url, "t").ok  # what the message says to do works


# -- a table wider than PostgreSQL allows ----------------------------------------------------------------------
def _wide(n: int, key: str | None = None) -> pd.DataFrame:
    df = pd.DataFrame(np.zeros((2, n), dtype=bool), columns=[f"c{i}" for i in range(n)])
    if key:
        df[key] = [1, 2]
    return df


def test_a_postgresql_table_of_more_than_1600_columns_is_refused_naming_the_table_and_the_limit():
    store = dk.connect(pg.new_store_url())
    # 1,600 columns and no key: the hidden _dk_seq (insertion order) makes 1,601
    with pytest.raises(dk.InvalidArgumentError) as info:
        _wide(1600).dk.save(store, "wide")
    message = str(info.value)
    assert "'wide'" in message and "1,600" in message and "1,601" in message and "_dk_seq" in message
    assert "key=" in message  # with a key it would fit
    with pytest.raises(dk.InvalidArgumentError, match=r"'wider'.*at most 1,600 columns.*needs 1,601"):
        _wide(1601, key="c0").dk.save(store, "wider", key="c0")
    assert store.tables() == []

    fits = _wide(1597, key="id")  # 1,598 columns
    assert fits.dk.save(store, "t", key="id").ok
    more = fits.assign(x=True, y=False, z=True)  # 1,601 with the new ones
    with pytest.raises(dk.SchemaMismatchError) as info:
        more.dk.save(store, "t", if_exists="upsert", new_columns="add")
    message = str(info.value)
    assert "'t'" in message and "1,600" in message and "['x', 'y', 'z']" in message and "1,598" in message
    assert_frame_equal(dk.load(store, "t"), fits)  # nothing written

    full = pd.concat([fits, _wide(1597, key="id").assign(id=[3, 4])], ignore_index=True).assign(x=True, y=False)
    assert full.iloc[2:].dk.save(store, "t", if_exists="append", new_columns="add").ok  # 1,600 columns: they fit
    # a write by key stages the rows in a temporary table with one column more: refused, saying what to do
    with pytest.raises(dk.InvalidArgumentError, match=r"table 't'.*temporary table of 1,601 columns.*update_batch"):
        full.dk.save(store, "t", if_exists="upsert")
    assert full[["id", "x"]].dk.update_batch(store, "t").ok  # fewer columns a call
    out = dk.load(store, "t", columns=["id", "x", "y"])
    assert out["id"].tolist() == [1, 2, 3, 4] and out["x"].tolist() == [True] * 4
    assert out["y"].isna().tolist() == [True, True, False, False]
    store.close()


# -- store.url shows where a file store is ---------------------------------------------------------------------
def test_store_url_shows_the_absolute_path_of_a_local_store_and_errors_name_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    cases = {
        "sqlite:///a.db": f"sqlite:///{tmp_path}/a.db",
        "sqlite+pysqlite:///sub/../b.db": f"sqlite+pysqlite:///{tmp_path}/b.db",
        f"sqlite:///{tmp_path}/c.db": f"sqlite:///{tmp_path}/c.db",
        "duckdb:///d.duckdb": f"duckdb:///{tmp_path}/d.duckdb",
        "parquet://pq": f"parquet://{tmp_path}/pq",
        "csv://./sub/csv": f"csv://{tmp_path}/sub/csv",
        "jsonl://js": f"jsonl://{tmp_path}/js",
        "delta://dl": f"delta://{tmp_path}/dl",
        "sqlite:///:memory:": "sqlite:///:memory:",
        "duckdb:///:memory:": "duckdb:///:memory:",
        "memory://slips": "memory://slips",
    }
    stores = {}
    for url, shown in cases.items():
        stores[url] = dk.connect(url)
        assert stores[url].url == shown, url
    with pytest.raises(dk.TableNotFoundError, match=f"in parquet://{tmp_path}/pq"):
        dk.load(stores["parquet://pq"], "none")

    df = pd.DataFrame({"id": [1, 2], "v": [0.5, 1.5]})
    monkeypatch.chdir(tmp_path / "sub")  # the store stays where it was opened
    assert df.dk.save(stores["sqlite:///a.db"], "t").ok and df.dk.save(stores["parquet://pq"], "t").ok
    assert (tmp_path / "a.db").is_file() and not (tmp_path / "sub" / "a.db").exists()
    assert (tmp_path / "pq").is_dir() and not (tmp_path / "sub" / "pq").exists()
    for s in stores.values():
        s.close()


# -- help() explains every parameter ---------------------------------------------------------------------------
PUBLIC = [
    dk.connect,
    dk.load,
    dk.save,
    dk.update_batch,
    dk.delete,
    dk.Store.tables,
    dk.Store.drop,
    dk.Store.close,
    dk.Store.history,
    DkAccessor.save,
    DkAccessor.update_batch,
    DkAccessor.delete,
    dk.BatchResult.commit,
    dk.BatchResult.failed_rows,
    dk.BatchResult.summary,
]


@pytest.mark.parametrize("function", PUBLIC, ids=lambda f: f.__qualname__)
def test_every_public_call_documents_each_of_its_parameters(function):
    doc = inspect.getdoc(function) or ""
    params = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
    if params:
        assert "\nArgs:\n" in doc, f"{function.__qualname__}: no Args section"
        args = doc.split("\nArgs:\n", 1)[1]
    for p in params:
        name = f"**{p.name}" if p.kind is p.VAR_KEYWORD else p.name
        assert f"\n    {name}: " in "\n" + args, f"{function.__qualname__} does not explain {name}"
    assert "borrowed.py" not in doc


def test_load_explains_and_types_where_order_by_and_chunksize():
    doc = inspect.getdoc(dk.load) or ""
    for words in ["(column, op, value)", "joined by OR", '"asc" | "desc"', "iterator of frames"]:
        assert words in doc
    hints = inspect.signature(dk.load).parameters
    assert hints["where"].annotation == "Filters | None" and hints["order_by"].annotation == "OrderBy | None"
    assert all(inspect.getdoc(getattr(dk.BatchResult, n)) for n in ("ok", "rows_per_second"))
    assert inspect.getdoc(dk.Store.url) and "absolute" in inspect.getdoc(dk.Store.url)
