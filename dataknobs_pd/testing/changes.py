"""The backend contract: dry runs leave the table exactly as it was and report what would change;
new columns are added to the table with its stored rows missing in them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk


def snapshot(store, table):
    """The whole table and its dk schema, to compare before and after."""
    return dk.load(store, table), store.schema(table).to_json(), sorted(store.tables())


def same(store, table, before):
    out, schema, tables = before
    assert_frame_equal(dk.load(store, table), out)
    assert store.schema(table).to_json() == schema
    assert sorted(store.tables()) == tables


def base_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.arange(1, 7, dtype="int64"),
            "f": [1.0, np.nan, 3.0, 4.0, np.inf, 6.0],
            "s": pd.array(["a", None, "c", "d", "e", "f"], dtype="string"),
            "t": pd.to_datetime(
                ["2020-01-01", None, "2020-01-03", "2020-01-04", "2020-01-05", "2020-01-06"]
            ).tz_localize("America/New_York"),
            "n": pd.array([1, 2, None, 4, 5, 6], dtype="Int64"),
        }
    )


class DryRunContract:
    """Dry runs ask the store, change nothing, and report each row's action and changed values."""

    @pytest.fixture
    def based(self, store):
        df = base_frame()
        df.dk.save(store, "t")
        return store, df

    def test_dry_run_update_changes_nothing_and_reports_the_diff(self, based):
        store, df = based
        before = snapshot(store, "t")
        new = df.iloc[[0, 1, 2, 3]].copy()
        new["f"] = [1.0, np.nan, 30.0, 4.5]  # same, NaN stays NaN, changed, changed
        new["s"] = pd.array(["a", None, "c", "D"], dtype="string")
        new = pd.concat([new, pd.DataFrame({"id": [99], "f": [9.0]})], ignore_index=True)
        res = new.dk.update_batch(store, "t", dry_run=True)
        same(store, "t", before)
        assert res.committed is False and res.dry_run
        assert (res.total, res.succeeded, res.failed) == (5, 4, 1)
        assert res.failures["error"].tolist() == ["MissingKey"]
        c = res.changes.set_index("key")
        assert c["action"].to_dict() == {1: "unchanged", 2: "unchanged", 3: "update", 4: "update"}
        assert c.loc[3, "changed"] == ["f"] and c.loc[3, "before"] == {"f": 3.0} and c.loc[3, "after"] == {"f": 30.0}
        assert sorted(c.loc[4, "changed"]) == ["f", "s"] and c.loc[4, "after"]["s"] == "D"
        assert "dry run" in str(res)
        counts = res.summary().dropna(subset=["action"]).set_index("action")["rows"].to_dict()
        assert counts == {"update": 2, "unchanged": 2}

    def test_dry_run_of_every_call_leaves_everything_as_it_was(self, based):
        store, df = based
        before = snapshot(store, "t")
        up = pd.DataFrame({"id": [1, 50], "f": [0.5, 5.0]})
        calls = [
            lambda: up.dk.save(store, "t", if_exists="upsert", dry_run=True),
            lambda: up.dk.save(store, "t", if_exists="append", dry_run=True),
            lambda: up.dk.save(store, "t", if_exists="replace", dry_run=True),
            lambda: up.dk.save(store, "new_table", dry_run=True),
            lambda: up.dk.update_batch(store, "t", insert_missing=True, dry_run=True),
            lambda: df.iloc[[0, 2]].dk.delete(store, "t", dry_run=True),
        ]
        for call in calls:
            res = call()
            assert res.committed is False
            same(store, "t", before)
        deleted = df.iloc[[0, 2]].dk.delete(store, "t", dry_run=True)
        assert deleted.changes["action"].tolist() == ["delete", "delete"]
        appended = up.dk.save(store, "t", if_exists="append", dry_run=True)
        assert appended.failures["error"].tolist() == ["KeyConflict"] and appended.changes["action"].tolist() == [
            "insert"
        ]

    def test_track_changes_on_a_real_call(self, based):
        store, df = based
        up = pd.DataFrame({"id": [2, 6, 7], "n": pd.array([2, 60, 7], dtype="Int64")})
        res = up.dk.save(store, "t", if_exists="upsert", track_changes=True)
        assert res.committed and not res.dry_run
        assert res.changes["action"].tolist() == ["unchanged", "update", "insert"]
        assert res.changes["before"].iloc[1] == {"n": 6} and res.changes["after"].iloc[1] == {"n": 60}
        assert dk.load(store, "t").set_index("id").loc[6, "n"] == 60
        assert up.dk.save(store, "t", if_exists="upsert").changes is None  # not tracked unless asked


class NewColumnsContract:
    """new_columns="add" adds the frame's new columns; "fail" names them and the option."""

    def test_new_columns_fail_names_them_and_the_option(self, store):
        base_frame().dk.save(store, "t")
        before = snapshot(store, "t")
        with pytest.raises(dk.SchemaMismatchError, match=r"\['x'\].*new_columns='add'"):
            pd.DataFrame({"id": [1], "x": [1]}).dk.update_batch(store, "t")
        same(store, "t", before)

    @pytest.mark.parametrize("call", ["upsert", "append", "update_batch"])
    def test_new_columns_are_added_and_stored_rows_read_back_missing(self, store, call):
        df = base_frame()
        df.dk.save(store, "t")
        new = pd.DataFrame(
            {
                "id": [2, 7] if call != "append" else [7, 8],
                "i": np.array([10, 20], dtype="int64"),
                "b": [True, False],
                "u": pd.array(["x", "y"], dtype="string"),
            }
        )
        if call == "update_batch":
            res = new.iloc[:1].dk.update_batch(store, "t", new_columns="add")
        else:
            res = new.dk.save(store, "t", if_exists=call, new_columns="add")
        assert res.ok and res.added == {"i": "Int64", "b": "boolean", "u": "string"}
        out = dk.load(store, "t")
        assert list(out.columns) == ["id", "f", "s", "t", "n", "i", "b", "u"]
        assert str(out["i"].dtype) == "Int64" and str(out["b"].dtype) == "boolean"
        assert out.set_index("id").loc[1, ["i", "b", "u"]].isna().all()
        assert_frame_equal(
            out[list(df.columns)].iloc[:6].reset_index(drop=True),
            df.iloc[:6].reset_index(drop=True).assign(**({} if call == "append" else {})),
            check_dtype=True,
        ) if call == "append" else None
        written = out.set_index("id").loc[new["id"].iloc[0]]
        assert written["i"] == 10 and bool(written["b"]) is True and written["u"] == "x"

    def test_a_failed_call_leaves_schema_and_rows_unchanged(self, store):
        base_frame().dk.save(store, "t")
        before = snapshot(store, "t")
        bad = pd.DataFrame({"id": [1, 1000], "x": [1, 2]})
        with pytest.raises(dk.BatchError):
            bad.dk.update_batch(store, "t", new_columns="add", errors="raise")
        same(store, "t", before)
        res = bad.dk.update_batch(store, "t", new_columns="add", dry_run=True)
        assert res.added == {"x": "Int64"}
        same(store, "t", before)
