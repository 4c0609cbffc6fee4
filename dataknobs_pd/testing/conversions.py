"""The backend contract: values written into a table's existing columns of another type (append, upsert,
update_batch) follow the conversion rules (dataknobs_pd/conversion.py): each row is written with a value
equal to the one sent, or fails at stage convert naming the column and the value; never an exception of
another kind, never a rounded, truncated or coerced value, and the rows not written stay as they were."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk

D = decimal.Decimal

# name -> (the stored column, the values sent into it, the rows that must fail, the values then stored)
CASES = {
    "fraction-and-missing-into-int64": (
        pd.Series([2007, 2007, 2007]),
        pd.Series([2008.5, np.nan, 2009.0]),
        [0, 1],
        pd.Series([2007, 2007, 2009]),
    ),
    "numbers-into-category-of-strings": (
        pd.Series(["a", "b", "a"], dtype="category"),
        pd.Series([5.0, 7, "b"], dtype=object),
        [0, 1],
        pd.Series(["a", "b", "b"], dtype="category"),
    ),
    "ints-into-category-of-strings": (
        pd.Series(["a", "b"], dtype="category"),
        pd.Series([5, 7]),
        [0, 1],
        pd.Series(["a", "b"], dtype="category"),
    ),
    "numbers-into-bool": (
        pd.Series([True, False, True, False]),
        pd.Series([2, -1, 0, 1]),
        [0, 1],
        pd.Series([True, False, False, True]),
    ),
    "text-into-bool": (
        pd.Series([True, False, True, False, True]),
        pd.Series(["False", "TRUE", "0", " 1 ", "no"], dtype=object),
        [4],
        pd.Series([False, True, False, True, True]),
    ),
    "timestamps-into-dates": (
        pd.Series([dt.date(2020, 1, 1), dt.date(2020, 1, 2)], dtype=object),
        pd.Series([pd.Timestamp("2020-01-05 13:45"), pd.Timestamp("2020-01-06")]),
        [0],
        pd.Series([dt.date(2020, 1, 1), dt.date(2020, 1, 6)], dtype=object),
    ),
    "decimals-with-more-places": (
        pd.Series([D("1.23"), D("2.50"), D("3.00")], dtype=object),
        pd.Series([D("1.234"), D("9.999"), D("4.1")], dtype=object),
        [0, 1],
        pd.Series([D("1.23"), D("2.50"), D("4.10")], dtype=object),
    ),
    "floats-into-decimals": (
        pd.Series([D("1.23"), D("2.50")], dtype=object),
        pd.Series([1.234, 0.1]),
        [0],
        pd.Series([D("1.23"), D("0.10")], dtype=object),
    ),
    "numbers-into-strings": (
        pd.Series(["a", "b", "c"], dtype="str"),
        pd.Series([3, 4.5, "x"], dtype=object),
        [0, 1],
        pd.Series(["a", "b", "x"], dtype="str"),
    ),
    "strings-into-bytes": (
        pd.Series([b"a", b"b"], dtype=object),
        pd.Series(["x", b"y"], dtype=object),
        [0],
        pd.Series([b"a", b"y"], dtype=object),
    ),
    "naive-into-aware": (
        pd.Series(pd.to_datetime(["2020-01-01", "2020-01-02"]).tz_localize("UTC")),
        pd.Series(pd.to_datetime(["2021-01-01", None])),
        [0],
        pd.Series(pd.to_datetime(["2020-01-01", None]).tz_localize("UTC")),
    ),
    "big-int-into-float": (
        pd.Series([1.5, 2.5]),
        pd.Series([2**60 + 1, 3]),
        [0],
        pd.Series([1.5, 3.0]),
    ),
}


class ConversionContract:
    """Values of other types into existing columns: written equal, or reported at convert."""

    @pytest.mark.parametrize("case", sorted(CASES))
    @pytest.mark.parametrize("call", ["update_batch", "upsert"])
    def test_values_of_another_type_are_written_equal_or_reported(self, store, case, call):
        stored, sent, failing, after = CASES[case]
        n = len(stored)
        pd.DataFrame({"id": range(n), "v": stored}).dk.save(store, "t")
        new = pd.DataFrame({"id": range(n), "v": sent})
        if call == "update_batch":
            res = new.dk.update_batch(store, "t")
        else:
            res = new.dk.save(store, "t", if_exists="upsert")
        assert sorted(res.failures["row"].tolist()) == failing, res.failures.to_string()
        assert set(res.failures["stage"]) <= {"convert"}
        assert set(res.failures["error"]) <= {"TypeConversion", "OutOfRange", "NotNull"}
        for message in res.failures["message"]:
            assert "'v'" in message
        assert res.succeeded == n - len(failing)
        assert_frame_equal(dk.load(store, "t"), pd.DataFrame({"id": range(n), "v": after}))
        assert_frame_equal(res.failed_rows(), new.iloc[failing])

    def test_appended_rows_follow_the_same_rules(self, store):
        pd.DataFrame({"id": [1], "year": [2007], "ok": [True]}).dk.save(store, "t")
        new = pd.DataFrame({"id": [2, 3, 4], "year": [2008.5, np.nan, 2009.0], "ok": [2, "true", 0]})
        res = new.dk.save(store, "t", if_exists="append")
        assert res.failures["row"].tolist() == [0, 1]
        assert res.failures["error"].tolist()[1] == "NotNull"
        expected = pd.DataFrame({"id": [1, 4], "year": [2007, 2009], "ok": [True, False]})
        assert_frame_equal(dk.load(store, "t"), expected)

    def test_categories_of_timestamps_grow_once(self, store):
        """New categories are compared with the stored ones in their own dtype (they are saved as text)."""
        cats = pd.to_datetime(["2020-01-01", "2020-01-02"])
        pd.DataFrame({"id": [1, 2], "c": pd.Categorical(cats)}).dk.save(store, "t")
        more = pd.DataFrame({"id": [3, 4], "c": pd.Categorical(pd.to_datetime(["2020-01-02", "2020-01-03"]))})
        assert more.dk.save(store, "t", if_exists="append").ok
        out = dk.load(store, "t")
        assert out["c"].cat.categories.tolist() == list(pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"]))
        assert out["c"].tolist() == list(pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-02", "2020-01-03"]))
