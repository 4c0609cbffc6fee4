"""The backend contract: what is saved comes back exactly (values, dtypes, column order, index)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk

from .frames import dtype_matrix


class RoundTripContract:
    """Every dtype of the matrix, indexes and labels come back exactly."""

    def test_dtype_matrix_round_trips_with_key(self, store):
        df = dtype_matrix()
        res = df.dk.save(store, "matrix")
        assert res.ok and res.succeeded == len(df)
        assert_frame_equal(pd.DataFrame.dk.load(store, "matrix"), df, check_dtype=True)

    def test_dtype_matrix_round_trips_without_key_in_insertion_order(self, store):
        df = dtype_matrix(with_key=False).iloc[::-1].reset_index(drop=True)
        df.dk.save(store, "nokey")
        assert_frame_equal(dk.load(store, "nokey"), df, check_dtype=True)

    def test_every_column_alone_round_trips(self, store):
        """Each dtype also survives on its own (no other column to hide a mix-up)."""
        df = dtype_matrix(with_key=False)
        for i, col in enumerate(df.columns):
            one = df[[col]]
            one.dk.save(store, f"c{i}")
            assert_frame_equal(dk.load(store, f"c{i}"), one, check_dtype=True)

    def test_key_rows_come_back_ordered_by_key(self, store):
        df = pd.DataFrame({"id": [30, 10, 20], "v": ["c", "a", "b"]})
        df.dk.save(store, "t")
        out = dk.load(store, "t")
        assert out["id"].tolist() == [10, 20, 30] and out["v"].tolist() == ["a", "b", "c"]

    @pytest.mark.parametrize(
        "index",
        [
            pd.Index([5, 3, 9], name=None),
            pd.Index(["x", "y", "z"], name="label"),
            pd.DatetimeIndex(["2020-01-01", "2020-01-02", "2020-01-03"], name="day").as_unit("s"),
            pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["grp", "n"]),
            pd.RangeIndex(10, 13, name="rid"),
        ],
        ids=["unnamed-int", "named-str", "datetime", "multi", "named-range"],
    )
    def test_index_comes_back(self, store, index):
        df = pd.DataFrame({"v": [1.5, 2.5, 3.5], "s": ["a", "b", "c"]}, index=index)
        df.dk.save(store, "ix")
        out = dk.load(store, "ix")
        expected = df.sort_index() if any(index.names) else df
        if isinstance(index, pd.RangeIndex):
            expected = df.set_axis(pd.Index(list(range(10, 13)), name="rid"))
        assert_frame_equal(out, expected, check_dtype=True, check_index_type=not isinstance(index, pd.RangeIndex))

    def test_named_index_is_the_key(self, store):
        df = pd.DataFrame({"v": [1, 2]}, index=pd.Index([7, 8], name="flight"))
        df.dk.save(store, "t")
        assert store.schema("t").key == ["flight"]
        with pytest.raises(dk.DataKnobsError):
            pd.DataFrame({"v": [3]}, index=pd.Index([7], name="flight")).dk.save(
                store, "t", if_exists="append", errors="raise"
            )

    def test_integer_column_labels_and_column_order(self, store):
        df = pd.DataFrame({"z": [1], 3: [2.0], "a": ["x"]})
        df.dk.save(store, "t")
        out = dk.load(store, "t")
        assert list(out.columns) == ["z", 3, "a"]
        assert_frame_equal(out, df)

    def test_empty_frame_round_trips(self, store):
        df = dtype_matrix().iloc[:0]
        res = df.dk.save(store, "empty")
        assert res.total == 0 and res.ok
        assert_frame_equal(dk.load(store, "empty"), df, check_dtype=True, check_index_type=False)
        assert "empty" in store.tables()

    def test_load_columns_subset_in_callers_order(self, store):
        df = dtype_matrix()
        df.dk.save(store, "m")
        out = dk.load(store, "m", columns=["str", "id", "dt_ny"])
        assert_frame_equal(out, df[["str", "id", "dt_ny"]], check_dtype=True)

    @pytest.mark.parametrize(
        "where, expected",
        [
            ([("i64", ">", 0)], lambda d: d["i64"] > 0),
            ([("str", "==", "plain")], lambda d: d["str"] == "plain"),
            ([("id", "in", [1, 7, 100])], lambda d: d["id"].isin([1, 7, 100])),
            ([("id", "not in", [1, 7])], lambda d: ~d["id"].isin([1, 7])),
            ([("f64", "<=", 0.1), ("bool", "==", True)], lambda d: (d["f64"] <= 0.1) & d["bool"]),
            ([[("id", "==", 1)], [("id", "==", 4)]], lambda d: d["id"].isin([1, 4])),
            (
                [("dt_ny", ">=", pd.Timestamp("2021-03-14 03:00", tz="UTC"))],
                lambda d: d["dt_ny"] >= pd.Timestamp("2021-03-14 03:00", tz="UTC"),
            ),
            (
                [("dt_ns", "<", pd.Timestamp("2021-03-14 02:30"))],
                lambda d: d["dt_ns"] < pd.Timestamp("2021-03-14 02:30"),
            ),
            ([("cat_str", "==", "b")], lambda d: d["cat_str"] == "b"),
            ([("Int64", "==", None)], lambda d: d["Int64"].isna()),
        ],
        ids=["gt", "eq-str", "in", "not-in", "and", "or", "tz", "naive-ts", "category", "is-null"],
    )
    def test_where_filters(self, store, where, expected):
        df = dtype_matrix(n=40)
        df.dk.save(store, "m")
        out = dk.load(store, "m", where=where)
        want = df[expected(df).fillna(False).astype(bool)].reset_index(drop=True)
        assert len(want) > 0
        assert_frame_equal(out, want, check_dtype=True)

    def test_order_by_and_limit(self, store):
        df = pd.DataFrame({"id": range(10), "v": [5, 3, 8, 1, 9, 2, 7, 0, 6, 4]})
        df.dk.save(store, "t")
        out = dk.load(store, "t", order_by=[("v", "desc")], limit=3)
        assert out["v"].tolist() == [9, 8, 7]
        assert dk.load(store, "t", order_by="v", limit=2)["id"].tolist() == [7, 3]
        assert len(dk.load(store, "t", limit=0)) == 0

    def test_chunksize_streams_frames(self, store):
        df = dtype_matrix(n=25)
        df.dk.save(store, "m")
        parts = list(dk.load(store, "m", chunksize=10))
        assert [len(p) for p in parts] == [10, 10, 5]
        assert_frame_equal(pd.concat(parts), df, check_dtype=True)

    def test_large_frame_round_trips_in_chunks(self, store):
        n = 50_000
        rng = np.random.default_rng(0)
        df = pd.DataFrame(
            {
                "id": rng.permutation(n).astype("int64"),
                "x": rng.normal(size=n),
                "s": pd.Series(rng.choice(np.array(["a", "bb", None, "ccc"], dtype=object), n), dtype="str"),
                "t": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 10**9, n), unit="s"),
            }
        )
        res = df.dk.save(store, "big", chunksize=7_000)
        assert res.succeeded == n
        out = dk.load(store, "big")
        assert_frame_equal(out, df.sort_values("id").reset_index(drop=True), check_dtype=True)

    def test_missing_values_in_filters_mean_null(self, store):
        df = pd.DataFrame({"f": [1.0, np.nan, 2.0], "t": pd.to_datetime(["2020-01-01", None, "2021-01-01"])})
        df.dk.save(store, "t")
        assert len(dk.load(store, "t", where=[("f", "in", [np.nan, 1.0])])) == 2
        assert len(dk.load(store, "t", where=[("t", "==", pd.NaT)])) == 1
        assert len(dk.load(store, "t", where=[("f", "!=", pd.NA)])) == 2
        with pytest.raises(dk.DataKnobsError, match="missing value"):
            dk.load(store, "t", where=[("t", "<", pd.NaT)])

    def test_nested_arrow_dtypes_round_trip(self, store):
        import pyarrow as pa

        df = pd.DataFrame(
            {
                "lst": pd.Series([[1, 2], None, []], dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
                "st": pd.Series(
                    [{"a": 1, "b": "x"}, None, {"a": None, "b": "y"}],
                    dtype=pd.ArrowDtype(pa.struct([("a", pa.int64()), ("b", pa.string())])),
                ),
            }
        )
        df.dk.save(store, "t")
        assert_frame_equal(dk.load(store, "t"), df, check_dtype=True)
