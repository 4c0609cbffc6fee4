"""The backend contract: every error path raises the documented class with a message naming what is at fault,
and loses nothing already stored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dataknobs_pd as dk


def unchanged(store, df):
    pd.testing.assert_frame_equal(dk.load(store, "t"), df)


class ErrorContract:
    """Every error path raises the documented class, names what is at fault, loses nothing."""

    @pytest.fixture
    def saved(self, store):
        df = pd.DataFrame({"id": [1, 2, 3], "v": [1.0, 2.0, 3.0]})
        df.dk.save(store, "t")
        return store, df

    def test_load_missing_table_names_it_and_lists_tables(self, saved):
        store, _ = saved
        with pytest.raises(dk.TableNotFoundError, match=r"'nope'.*\['t'\]"):
            dk.load(store, "nope")

    def test_update_and_delete_of_missing_table(self, store):
        df = pd.DataFrame({"id": [1]})
        with pytest.raises(dk.TableNotFoundError, match="'nope'"):
            df.dk.update_batch(store, "nope")
        with pytest.raises(dk.TableNotFoundError):
            df.dk.delete(store, "nope")
        with pytest.raises(dk.TableNotFoundError):
            store.drop("nope")

    @pytest.mark.parametrize(
        "call",
        [
            lambda df, s: df.dk.save(s, "k", if_exists="upsert"),
            lambda df, s: df.dk.update_batch(s, "t"),
            lambda df, s: df.dk.delete(s, "t"),
        ],
        ids=["upsert", "update_batch", "delete"],
    )
    def test_key_required_before_anything_is_written(self, saved, call):
        store, df = saved
        nokey = pd.DataFrame({"a": [1, 2], "v": [9.0, 9.0]})
        with pytest.raises(dk.KeyRequiredError, match="key"):
            call(nokey, store)
        unchanged(store, df)
        assert "k" not in store.tables()

    def test_unknown_key_column_is_named(self, store):
        with pytest.raises(dk.KeyRequiredError, match="'nope'"):
            pd.DataFrame({"a": [1]}).dk.save(store, "t", key="nope")

    def test_key_resolution_order(self, store):
        df = pd.DataFrame({"record_id": [1, 2], "id": [20, 10], "x": [5, 6]}).set_index(pd.Index(["a", "b"], name="n"))
        df.dk.save(store, "a")
        assert store.schema("a").key == ["id"]
        df.drop(columns="id").dk.save(store, "b")
        assert store.schema("b").key == ["record_id"]
        df.drop(columns=["id", "record_id"]).dk.save(store, "c")
        assert store.schema("c").key == ["n"]
        df.dk.save(store, "d", key=["x"])
        assert store.schema("d").key == ["x"]
        df.reset_index(drop=True).drop(columns=["id", "record_id"]).dk.save(store, "e")
        assert store.schema("e").key is None

    def test_unknown_columns_on_append_are_named_and_nothing_written(self, saved):
        store, df = saved
        with pytest.raises(dk.SchemaMismatchError, match="'extra'"):
            pd.DataFrame({"id": [9], "v": [1.0], "extra": [1]}).dk.save(store, "t", if_exists="append")
        unchanged(store, df)

    def test_different_key_is_refused(self, saved):
        store, df = saved
        with pytest.raises(dk.SchemaMismatchError, match=r"\['v'\]"):
            df.dk.update_batch(store, "t", key="v")
        unchanged(store, df)

    @pytest.mark.parametrize(
        "bad",
        [
            pd.Series([1 + 2j]),
            pd.Series(pd.arrays.IntervalArray.from_breaks([0, 1])),
            pd.Series([pd.Period("2020-01", "M")]),
            pd.Series([object()], dtype=object),
        ],
        ids=["complex", "interval", "period", "object"],
    )
    def test_unsupported_dtypes_name_the_column(self, store, bad):
        df = pd.DataFrame({"ok": [1] * len(bad), "weird": bad})
        with pytest.raises(dk.UnsupportedDtypeError, match="'weird'"):
            df.dk.save(store, "t")
        assert "t" not in store.tables()

    @pytest.mark.parametrize(
        "kwargs, name",
        [
            ({"if_exists": "overwrite"}, "if_exists"),
            ({"errors": "ignore"}, "errors"),
            ({"chunksize": 0}, "chunksize"),
        ],
    )
    def test_bad_options_are_named(self, store, kwargs, name):
        with pytest.raises(dk.DataKnobsError, match=name):
            pd.DataFrame({"a": [1]}).dk.save(store, "t", **kwargs)

    @pytest.mark.parametrize(
        "kwargs, fragment",
        [
            ({"columns": ["nope"]}, "nope"),
            ({"where": [("nope", "==", 1)]}, "nope"),
            ({"where": [("v", "~", 1)]}, "'~'"),
            ({"where": [("v", "in", 1)]}, "list"),
            ({"where": [("v", ">", "abc")]}, r"'abc'.*'v'"),
            ({"order_by": "nope"}, "nope"),
            ({"limit": -1}, "limit"),
            ({"chunksize": 0}, "chunksize"),
        ],
    )
    def test_bad_load_arguments_are_named(self, saved, kwargs, fragment):
        store, _ = saved
        with pytest.raises(dk.DataKnobsError, match=fragment):
            dk.load(store, "t", **kwargs)

    def test_batch_error_carries_the_report(self, saved):
        store, df = saved
        with pytest.raises(dk.BatchError) as info:
            pd.DataFrame({"id": [3, 4], "v": [0.0, 0.0]}).dk.save(store, "t", if_exists="append", errors="raise")
        assert "nothing was written" in str(info.value) and "row 0" in str(info.value)
        assert info.value.result.failed == 1
        unchanged(store, df)

    def test_nan_key_is_a_validate_failure(self, store):
        df = pd.DataFrame({"id": [1.0, np.nan, 2.0], "v": [1, 2, 3]})
        res = df.dk.save(store, "t")
        assert res.failures["error"].tolist() == ["NullKey"]
