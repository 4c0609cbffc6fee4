"""Tables other tools made, with and without a key of their own, written to by key and read back by those tools.

Each table is made by the tool (pandas `to_sql`, plain `sqlite3`, DuckDB SQL, PostgreSQL SQL, deltalake,
pandas `to_parquet`, pyarrow's `write_dataset`), then
loaded, appended to (a frame with an `id` column is just a column there), updated and deleted from by
the table's own key or, without one, by key=; the tool then reads the same columns in the same forms.
"""

from __future__ import annotations

import sqlite3

import deltalake
import duckdb
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from tests import pg

FLIGHTS = pd.DataFrame(
    {
        "id": [1, 2, 3],
        "carrier": ["UA", "AA", "UA"],
        "dep_delay": [2.0, -4.0, 11.0],
    }
)


class Tool:
    """Makes a table `fl` from FLIGHTS in a store and reads it back as the tool sees it."""

    def __init__(self, kind: str, tmp_path, primary_key: bool):
        self.kind, self.primary_key = kind, primary_key
        if kind == "sqlite":
            self.path = tmp_path / "tool.db"
            self.url = f"sqlite:///{self.path}"
        elif kind == "duckdb":
            self.path = tmp_path / "tool.duckdb"
            self.url = f"duckdb:///{self.path}"
        elif kind in ("delta", "parquet", "dataset"):
            self.path = tmp_path / "data" / ("fl.parquet" if kind == "parquet" else "fl")
            self.path.parent.mkdir()
            self.url = f"{'delta' if kind == 'delta' else 'parquet'}://{self.path.parent}"
        else:
            self.url = pg.new_store_url()  # a new schema, first on the URL's search_path

    def store(self):
        return dk.connect(self.url)

    def make(self, df: pd.DataFrame) -> None:
        pk = " PRIMARY KEY" if self.primary_key else ""
        ddl = f"CREATE TABLE fl (id BIGINT{pk}, carrier TEXT, dep_delay DOUBLE PRECISION)"
        rows = list(df.itertuples(index=False, name=None))
        if self.kind == "sqlite" and not self.primary_key:
            with sqlite3.connect(self.path) as c:
                df.to_sql("fl", c, index=False)
        elif self.kind == "sqlite":
            with sqlite3.connect(self.path) as c:
                c.execute(ddl.replace("BIGINT", "INTEGER").replace("DOUBLE PRECISION", "REAL"))
                c.executemany("INSERT INTO fl VALUES (?, ?, ?)", rows)
        elif self.kind == "delta":
            deltalake.write_deltalake(str(self.path), pa.Table.from_pandas(df, preserve_index=False))
        elif self.kind == "parquet":
            df.to_parquet(self.path, index=False)
        elif self.kind == "dataset":
            ds.write_dataset(pa.Table.from_pandas(df, preserve_index=False), self.path, format="parquet")
        elif self.kind == "duckdb":
            with duckdb.connect(str(self.path)) as c:
                c.execute(ddl)
                c.executemany("INSERT INTO fl VALUES (?, ?, ?)", rows)
        else:
            with psycopg.connect(self.url, autocommit=True) as c:
                c.execute(ddl)
                with c.cursor() as cur:
                    cur.executemany("INSERT INTO fl VALUES (%s, %s, %s)", rows)

    def read(self) -> pd.DataFrame:
        sql = "SELECT * FROM fl ORDER BY id"
        if self.kind == "sqlite":
            with sqlite3.connect(self.path) as c:
                return pd.read_sql(sql, c)
        if self.kind == "delta":
            return deltalake.DeltaTable(str(self.path)).to_pandas().sort_values("id", ignore_index=True)
        if self.kind == "parquet":
            return pd.read_parquet(self.path).sort_values("id", ignore_index=True)
        if self.kind == "dataset":
            return ds.dataset(self.path, format="parquet").to_table().to_pandas().sort_values("id", ignore_index=True)
        if self.kind == "duckdb":
            with duckdb.connect(str(self.path), read_only=True) as c:
                return c.execute(sql).df()
        with psycopg.connect(self.url, autocommit=True) as c:
            cur = c.execute(sql)
            return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


KINDS = ["sqlite", "duckdb", "postgresql", "delta", "parquet", "dataset"]
KEYED = ["sqlite", "duckdb", "postgresql"]  # the tools that can give a table a PRIMARY KEY


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.mark.parametrize(
    ("kind", "primary_key"), [(k, True) for k in KEYED] + [(k, False) for k in KINDS], ids=lambda v: str(v)
)
def test_a_table_another_tool_made_is_loaded_appended_updated_and_deleted_by_key(kind, tmp_path, primary_key):
    tool = Tool(kind, tmp_path, primary_key)
    tool.make(FLIGHTS)
    with tool.store() as store:
        assert "fl" in store.tables()
        assert store.schema("fl").key == (["id"] if primary_key else None)
        loaded = dk.load(store, "fl")
        assert loaded["id"].tolist() == [1, 2, 3] and loaded["carrier"].tolist() == ["UA", "AA", "UA"]
        assert list(loaded.columns) == ["id", "carrier", "dep_delay"]

        # an append: the frame's id is the table's key, or just a column of a table without one
        more = pd.DataFrame({"id": [4, 5], "carrier": ["B6", "DL"], "dep_delay": [0.0, 7.5]})
        assert more.dk.save(store, "fl", if_exists="append").ok
        # an update and a delete: by the table's own key, or by key= on a table without one
        key = {} if primary_key else {"key": "id"}
        res = pd.DataFrame({"id": [2, 9], "dep_delay": [-1.0, 0.0]}).dk.update_batch(store, "fl", **key)
        assert res.succeeded == 1 and res.failures["stage"].tolist() == ["missing"]
        assert pd.DataFrame({"id": [3]}).dk.delete(store, "fl", **key).ok
        res = pd.DataFrame({"id": [5, 6], "carrier": ["DL", "WN"], "dep_delay": [8.0, 1.0]}).dk.save(
            store, "fl", if_exists="upsert", **key
        )
        assert res.ok
        assert store.schema("fl").key == (["id"] if primary_key else None)

    want = pd.DataFrame(
        {"id": [1, 2, 4, 5, 6], "carrier": ["UA", "AA", "B6", "DL", "WN"], "dep_delay": [2.0, -1.0, 0.0, 8.0, 1.0]}
    )
    seen = tool.read()
    assert list(seen.columns) == ["id", "carrier", "dep_delay"]  # no column added, hidden or not
    assert_frame_equal(seen.astype({"id": "int64"}), want, check_dtype=False)


def test_a_key_the_table_holds_twice_fails_that_row_and_names_the_value(kind, tmp_path):
    tool = Tool(kind, tmp_path, primary_key=False)
    tool.make(pd.concat([FLIGHTS, FLIGHTS.iloc[[2]]], ignore_index=True))  # id 3 twice
    with tool.store() as store:
        res = pd.DataFrame({"id": [3, 1], "dep_delay": [0.0, 5.0]}).dk.update_batch(store, "fl", key="id")
        assert res.succeeded == 1
        (failure,) = res.failures.itertuples()
        assert (failure.row, failure.stage, failure.error) == (0, "write", "AmbiguousKey")
        assert "id=3" in failure.message and "2 rows" in failure.message
    assert tool.read()["dep_delay"].tolist() == [5.0, -4.0, 11.0, 11.0]


def test_upsert_without_key_on_a_table_without_one_names_its_columns(kind, tmp_path):
    tool = Tool(kind, tmp_path, primary_key=False)
    tool.make(FLIGHTS)
    with tool.store() as store:
        with pytest.raises(dk.KeyRequiredError, match=r"key=.*'carrier'"):
            FLIGHTS.dk.save(store, "fl", if_exists="upsert")
    assert len(tool.read()) == 3
