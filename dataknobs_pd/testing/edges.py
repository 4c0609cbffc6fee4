"""The backend contract: hostile names, reserved names, frames with nothing to store, whole-column mismatches,
descending order. Each either round-trips exactly or fails clearly before anything is written."""

from __future__ import annotations

import math
import signal
from contextlib import contextmanager

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk

HOSTILE = {
    "quote": 'it\'s "quoted"',
    "semicolon": "t; DROP TABLE x",
    "comment": "t -- comment",
    "newline": "two\nlines",
    "unicode": "naïve ☃ 日本",
    "space": " padded ",
    "dotdot-slash": "../x",
    "absolute": "/abs",
    "slash": "a/b",
    "dot": ".",
    "dotdot": "..",
    "percent": "50%off",
    "long": "l" * 300,
    "sqlish": "select",
    "nul": "a\x00b",
    "empty": "",
    "catalogue": "_dk_schema",
    "stage": "_dk_stage",
    "reserved-case": "_DK_schema",
}


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (the main thread's alarm; pytest runs tests there)."""

    def expire(*_):
        raise TimeoutError(f"took longer than {seconds}s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class EdgeContract:
    """Hostile and reserved names, frames with nothing to store, whole-column mismatches, order."""

    @pytest.fixture
    def keep(self, store):
        """A table that must survive whatever the test does to other names."""
        df = pd.DataFrame({"id": [1, 2], "v": ["a", "b"]})
        df.dk.save(store, "keep")
        yield store
        assert_frame_equal(dk.load(store, "keep"), df)

    @pytest.mark.parametrize("name", list(HOSTILE.values()), ids=list(HOSTILE))
    def test_hostile_table_name_round_trips_or_is_refused_before_writing(self, keep, name):
        store = keep
        df = pd.DataFrame({"id": [1, 2, 3], "v": [1.5, 2.5, 3.5]})
        before = store.tables()
        try:
            res = df.dk.save(store, name)
        except dk.InvalidArgumentError as e:
            assert repr(name)[:30] in str(e) or "table" in str(e)
            assert store.tables() == before
            return
        assert res.ok
        assert name in store.tables()
        assert_frame_equal(dk.load(store, name), df)
        df.assign(v=0.0).dk.save(store, name, if_exists="upsert")
        assert dk.load(store, name)["v"].tolist() == [0.0] * 3
        store.drop(name)
        assert store.tables() == before

    @pytest.mark.parametrize("name", ["_dk_schema", "_dk_stage", "_DK_Schema", "a\x00b", ""])
    def test_reserved_and_unstorable_names_are_refused_everywhere(self, keep, name):
        store = keep
        df = pd.DataFrame({"name": ["keep"], "schema": ["{broken"]})
        for call in (
            lambda: df.dk.save(store, name, if_exists="replace"),
            lambda: df.dk.save(store, name, if_exists="upsert", key="name"),
            lambda: df.dk.update_batch(store, name, key="name"),
            lambda: df.dk.delete(store, name, key="name"),
            lambda: dk.load(store, name),
            lambda: store.drop(name),
        ):
            with pytest.raises(dk.InvalidArgumentError):
                call()

    @pytest.mark.parametrize("column", ["_dk_row", "_dk_seq", "_DK_ns_x", "a\x00b"])
    def test_reserved_and_unstorable_column_names_are_refused(self, keep, column):
        store = keep
        with pytest.raises(dk.InvalidArgumentError, match="name"):
            pd.DataFrame({"id": [1], column: [1]}).dk.save(store, "t")
        with pytest.raises(dk.InvalidArgumentError, match="name"):
            pd.DataFrame({"v": [1]}, index=pd.Index([1], name=column)).dk.save(store, "t")
        assert "t" not in store.tables()

    def test_names_equal_but_for_case_never_stand_in_for_each_other(self, keep):
        store = keep
        upper = pd.DataFrame({"id": [1, 2], "v": ["upper", "upper"]})
        upper.dk.save(store, "Data")
        lower = pd.DataFrame({"id": [2, 3], "v": ["lower", "lower"]})
        for call in (
            lambda: lower.dk.save(store, "data"),
            lambda: lower.dk.save(store, "data", if_exists="replace"),
            lambda: lower.dk.save(store, "data", if_exists="upsert"),
            lambda: lower.dk.save(store, "DATA", if_exists="append"),
        ):
            with pytest.raises(dk.InvalidArgumentError, match="'Data'"):
                call()
        with pytest.raises(dk.TableNotFoundError):
            lower.dk.update_batch(store, "data")
        with pytest.raises(dk.TableNotFoundError):
            dk.load(store, "data")
        assert_frame_equal(dk.load(store, "Data"), upper)
        assert "data" not in store.tables()

    @pytest.mark.parametrize(
        "frame",
        [
            pd.DataFrame(index=range(3)),
            pd.DataFrame(),
        ],
        ids=["rows-no-columns", "empty"],
    )
    def test_a_frame_with_nothing_to_store_is_a_clear_error(self, keep, frame):
        store = keep
        for call in (
            lambda: frame.dk.save(store, "t"),
            lambda: frame.dk.save(store, "keep", if_exists="append"),
        ):
            with pytest.raises(dk.InvalidArgumentError, match="no columns"):
                call()
        assert "t" not in store.tables()

    def test_a_frame_of_only_a_named_index_is_stored(self, store):
        df = pd.DataFrame(index=pd.Index([3, 1, 2], name="id"))
        assert df.dk.save(store, "t").succeeded == 3
        assert_frame_equal(dk.load(store, "t"), df.sort_index())

    @pytest.mark.parametrize("stored_tz, new_tz", [(None, "UTC"), ("UTC", None)], ids=["naive->aware", "aware->naive"])
    def test_timezone_mismatch_of_a_whole_column_fails_its_rows_at_once(self, keep, stored_tz, new_tz):
        """Naive timestamps into a tz-aware column (or the other way round) fail every row that has one, at
        stage convert, found at once (not row by row), and change nothing."""
        store = keep
        old = pd.DataFrame({"id": [1, 2], "t": pd.to_datetime(["2020-01-01", "2020-01-02"]).tz_localize(stored_tz)})
        old.dk.save(store, "tz")
        n = 20_000
        new = pd.DataFrame(
            {"id": range(1, n + 1), "t": pd.Series(pd.to_datetime(["2021-01-01"] * n)).dt.tz_localize(new_tz)}
        )
        new.loc[1, "t"] = pd.NaT  # no timestamp, no mismatch: row 1 updates its value to NaT
        with deadline(60):
            res = new.dk.update_batch(store, "tz", errors="collect", insert_missing=True)
        assert res.failed == n - 1 and res.succeeded == 1
        assert set(res.failures["stage"]) == {"convert"} and set(res.failures["error"]) == {"TypeConversion"}
        assert "'t'" in res.failures["message"].iloc[0] and "tz" in res.failures["message"].iloc[0]
        expected = old.copy()
        expected.loc[1, "t"] = pd.NaT
        assert_frame_equal(dk.load(store, "tz"), expected)

    def test_descending_order_is_pushed_down(self, store):
        df = pd.DataFrame({"id": [1, 2, 3, 4], "x": ["b", "a", "b", "a"], 5: [10, 20, 30, 40]})
        df.dk.save(store, "t")
        assert dk.load(store, "t", order_by=("id", "desc"))["id"].tolist() == [4, 3, 2, 1]
        assert dk.load(store, "t", order_by=[("x", "desc"), ("id", "asc")])["id"].tolist() == [1, 3, 2, 4]
        assert dk.load(store, "t", order_by=[("x", "asc"), ("id", "descending")])["id"].tolist() == [4, 2, 3, 1]
        assert dk.load(store, "t", order_by=(5, "desc"), limit=2)["id"].tolist() == [4, 3]
        with pytest.raises(dk.InvalidArgumentError, match="'sideways'"):
            dk.load(store, "t", order_by=("id", "sideways"))

    def test_repeated_load_columns_are_a_clear_error(self, store):
        pd.DataFrame({"id": [1], "s": ["x"]}).dk.save(store, "t")
        with pytest.raises(dk.InvalidArgumentError, match=r"\['s'\].*once"):
            dk.load(store, "t", columns=["s", "s"])

    def test_bad_arguments_are_value_errors(self, keep):
        with pytest.raises(ValueError):
            dk.load(keep, "keep", limit=-1)
        with pytest.raises(ValueError):
            pd.DataFrame({"a": [1]}).dk.save(keep, "t", if_exists="nope")

    def test_negative_zero_round_trips_or_fails_its_row(self, store):
        df = pd.DataFrame({"id": [1, 2, 3], "f": [0.0, -0.0, float("nan")]})
        res = df.dk.save(store, "z")
        out = dk.load(store, "z")
        kept = df[~df.index.isin(res.failures["row"])].reset_index(drop=True)
        assert_frame_equal(out, kept)
        signs = [math.copysign(1.0, v) for v in out["f"] if not math.isnan(v)]
        assert signs == [math.copysign(1.0, v) for v in kept["f"] if not math.isnan(v)]  # -0.0 kept, or refused
        assert set(res.failures["stage"]) <= {"convert"}
