"""The stores' own catalogue: a damaged schema record is a clear error naming its table, and it
spoils nothing else (issue: saving to `_dk_schema` used to rewrite other tables' schemas)."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from tests import pg


def _frames(store):
    a = pd.DataFrame({"id": [1, 2], "v": ["x", "y"]})
    b = pd.DataFrame({"id": [3], "w": [1.5]})
    a.dk.save(store, "a")
    b.dk.save(store, "b")
    return a, b


def test_sqlite_damaged_schema_names_the_table(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    with dk.connect(url) as store:
        _, b = _frames(store)
        con = sqlite3.connect(tmp_path / "s.db")
        con.execute("UPDATE _dk_schema SET schema = '{broken' WHERE name = 'a'")
        con.commit()
        con.close()
        with pytest.raises(dk.StorageError, match="'a'.*damaged"):
            dk.load(store, "a")
        assert_frame_equal(dk.load(store, "b"), b)


def test_postgres_damaged_schema_names_the_table():
    url = pg.new_store_url()
    with dk.connect(url) as store:
        _, b = _frames(store)
        conn = pg.admin(url)
        try:
            pg.execute(conn, "UPDATE _dk_schema SET schema = 'not json' WHERE name = 'a'")
        finally:
            conn.close()
        with pytest.raises(dk.StorageError, match="'a'.*damaged"):
            dk.load(store, "a")
        assert_frame_equal(dk.load(store, "b"), b)


def test_parquet_damaged_schema_names_the_table(tmp_path):
    with dk.connect(f"parquet://{tmp_path}/f") as store:
        _, b = _frames(store)
        manifest = max((tmp_path / "f" / "a" / "_dk_parquet").glob("*.json"))
        doc = json.loads(manifest.read_text())
        doc["schema"] = {"columns": "nonsense"}
        manifest.write_text(json.dumps(doc))
        with pytest.raises(dk.StorageError, match="'a'.*damaged"):
            dk.load(store, "a")
        assert_frame_equal(dk.load(store, "b"), b)


@pytest.mark.parametrize("url", ["sqlite", "postgresql"])
def test_the_catalogue_cannot_be_written_through_the_api(tmp_path, url):
    url = f"sqlite:///{tmp_path}/s.db" if url == "sqlite" else pg.new_store_url()
    with dk.connect(url) as store:
        a, b = _frames(store)
        hostile = pd.DataFrame({"name": ["a", "b"], "schema": ["{broken", "{broken"]})
        for call in (
            lambda: hostile.dk.save(store, "_dk_schema", if_exists="upsert", key="name"),
            lambda: hostile.dk.save(store, "_dk_schema", if_exists="replace"),
            lambda: store.drop("_dk_schema"),
        ):
            with pytest.raises(dk.InvalidArgumentError, match="reserved"):
                call()
        assert_frame_equal(dk.load(store, "a"), a)
        assert_frame_equal(dk.load(store, "b"), b)
