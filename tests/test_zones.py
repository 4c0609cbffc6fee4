"""Time zones and index frequencies come back exactly from every store (the `store` fixture: all backends).

A tz-aware column of any zone pandas holds (named zones of zoneinfo, pytz and dateutil; fixed offsets of
every class; UTC in each spelling) loads back in that very zone object; tables saved while the dk schema
held `str(tz)` ("UTC-05:00", "pytz.FixedOffset(-300)", "tzfile('...')") load too. A DatetimeIndex or
TimedeltaIndex keeps its freq while the rows read still fit it.
"""

from __future__ import annotations

import datetime as dt
import warnings
import zoneinfo

import dateutil.tz
import pandas as pd
import pytest
from dateutil.zoneinfo import get_zonefile_instance
from pandas.testing import assert_frame_equal, assert_series_equal

import dataknobs_pd as dk
import dataknobs_pd.types
from dataknobs_pd import zones
from dataknobs_pd.errors import UnsupportedDtypeError

try:
    import pytz
except ImportError:  # pandas 3 does not need it; the zones of pytz are tested where it is installed
    pytz = None

tm = dk.TypeMapper()

# column name -> zone: every kind of zone a tz-aware pandas column can be in
ZONES: dict[str, dt.tzinfo] = {
    "iso_offset": pd.to_datetime(["2024-01-01T07:00:00-05:00"]).tz,  # what ISO strings with an offset give
    "timezone_0530": dt.timezone(dt.timedelta(hours=5, minutes=30)),
    "timezone_named": dt.timezone(dt.timedelta(hours=-3), "BRT"),
    "timezone_seconds": dt.timezone(dt.timedelta(hours=1, seconds=30)),  # Arrow names no such offset
    "timezone_utc": dt.UTC,
    "utc_string": pd.DatetimeTZDtype("ns", "UTC").tz,  # whatever pandas makes of "UTC"
    "zoneinfo_paris": zoneinfo.ZoneInfo("Europe/Paris"),
    "zoneinfo_kolkata": zoneinfo.ZoneInfo("Asia/Kolkata"),
    "zoneinfo_utc": zoneinfo.ZoneInfo("UTC"),
    "zoneinfo_etc": zoneinfo.ZoneInfo("Etc/GMT+5"),
    "dateutil_paris": dateutil.tz.gettz("Europe/Paris"),
    "dateutil_bundled": get_zonefile_instance().get("America/New_York"),  # dateutil's own database
    "dateutil_offset": dateutil.tz.tzoffset(None, -18000),
    "dateutil_offset_named": dateutil.tz.tzoffset("EST", -18000),
    "dateutil_utc": dateutil.tz.tzutc(),
}
if pytz is not None:
    ZONES |= {
        "pytz_fixed": pytz.FixedOffset(-300),
        "pytz_fixed_0530": pytz.FixedOffset(330),
        "pytz_paris": pytz.timezone("Europe/Paris"),
        "pytz_utc": pytz.utc,
    }

# the instants every zone column holds: winter and summer (both offsets of a zone with DST), a missing one
INSTANTS = pd.Series(
    pd.to_datetime(
        ["2024-01-01T07:00:00Z", "2024-07-01T12:30:00.123456Z", None, "1999-12-31T23:59:59Z"], format="ISO8601"
    )
)


def zoned(tz, unit: str = "us") -> pd.Series:
    return INSTANTS.dt.tz_convert(tz).dt.as_unit(unit)


def same_zone(got, want) -> bool:
    """The very zone: same class and same repr (zone name or offset, and a fixed offset's own name)."""
    return type(got) is type(want) and repr(got) == repr(want)


def assert_zones(out: pd.DataFrame, df: pd.DataFrame) -> None:
    wrong = {
        c: (repr(out[c].dt.tz), repr(df[c].dt.tz))
        for c in df.columns
        if isinstance(df[c].dtype, pd.DatetimeTZDtype) and not same_zone(out[c].dt.tz, df[c].dt.tz)
    }
    assert not wrong, wrong


# -- 1. every zone: saved, then read back in that zone ------------------------------------------------


def test_every_zone_comes_back(store):
    df = pd.DataFrame({name: zoned(tz) for name, tz in ZONES.items()})
    df["ns_offset"] = zoned(ZONES["iso_offset"], "ns")
    df["s_offset"] = zoned(ZONES["timezone_0530"]).dt.floor("s").dt.as_unit("s")
    df["category_offset"] = zoned(ZONES["iso_offset"]).astype("category")
    df.dk.save(store, "t")
    out = dk.load(store, "t")
    assert_frame_equal(out, df, check_dtype=True)
    assert_zones(out, df)
    assert same_zone(out["category_offset"].cat.categories.tz, ZONES["iso_offset"])


@pytest.fixture(params=["", "1"], ids=["", "pyarrow-ignore-timezone"])
def ignore_timezone(request, monkeypatch):
    """PYARROW_IGNORE_TIMEZONE as a user's process may have it: importing pandera sets it to 1."""
    if request.param:
        monkeypatch.setenv("PYARROW_IGNORE_TIMEZONE", request.param)


def test_a_zoned_column_is_filtered_and_written_into(store, ignore_timezone):
    tz = ZONES["iso_offset"]
    df = pd.DataFrame({"id": [1, 2, 3, 4], "at": zoned(tz)})
    df.dk.save(store, "t", key="id")
    since = pd.Timestamp("2024-01-01T07:00:00-05:00")
    got = dk.load(store, "t", where=[("at", ">=", since)])
    assert_frame_equal(got, df[df["at"] >= since].reset_index(drop=True))
    more = pd.DataFrame({"id": [5], "at": pd.Series(pd.to_datetime(["2025-03-01T10:00:00+05:30"]))})
    more.dk.save(store, "t", if_exists="append")
    out = dk.load(store, "t", order_by="id")
    assert same_zone(out["at"].dt.tz, tz)
    assert out["at"].iloc[-1] == pd.Timestamp("2025-03-01T04:30:00Z")


def test_a_zoned_index_comes_back(store):
    tz = pytz.FixedOffset(-300) if pytz is not None else ZONES["iso_offset"]
    # a named index is the key: no missing value in it
    df = pd.DataFrame({"x": range(3)}, index=pd.DatetimeIndex(zoned(tz, "ns").dropna(), name="at")).sort_index()
    df.dk.save(store, "t")
    out = dk.load(store, "t")
    assert_frame_equal(out, df, check_dtype=True)
    assert same_zone(out.index.tz, tz)


def test_the_schema_names_zones_arrow_and_pandas_read():
    df = pd.DataFrame({name: zoned(tz) for name, tz in ZONES.items()})
    schema = tm.schema(df)
    assert schema.column("iso_offset").arrow.tz == "-05:00"
    assert schema.column("timezone_0530").arrow.tz == "+05:30"
    assert schema.column("dateutil_paris").arrow.tz == "Europe/Paris"
    assert schema.column("timezone_seconds").arrow.tz == "UTC"  # the record keeps the seconds
    for name in ("timezone_utc", "zoneinfo_utc", "dateutil_utc", "utc_string"):
        assert schema.column(name).arrow.tz == "UTC"
    for col in schema.columns:
        # the dtype's name is one pandas reads (the record rebuilds the exact zone)
        assert pd.api.types.pandas_dtype(col.dtype["name"]).unit == col.arrow.unit
        assert zones.arrow_tz(col.dtype["tz"]) == col.arrow.tz
    again = type(schema).from_json(schema.to_json())
    assert again == schema and again.column("iso_offset").dtype["tz"]["offset"] == -18000


def test_a_zone_no_reader_could_rebuild_is_refused_before_anything_is_written(store):
    df = pd.DataFrame({"at": INSTANTS.dt.tz_convert(dateutil.tz.tzlocal())})
    with pytest.raises(UnsupportedDtypeError, match="tzlocal"):
        df.dk.save(store, "t")
    assert "t" not in store.tables()


# -- 1b. tables saved while the dk schema held str(tz) --------------------------------------------------


def _old_form(tz, unit, column):
    """What describe recorded before zone records: str(tz) as Arrow's zone and in the dtype's name."""
    OLD_FORMS.append(str(tz))
    return str(tz), {"name": f"datetime64[{unit}, {tz}]"}


OLD_FORMS: list[str] = []  # the zones _old_form described: the old form was what was saved


@pytest.fixture
def saved_by_older_code(store, monkeypatch):
    """save(df, table, **options) as code of before zone records did, then the store opened anew, as a later
    session opens it: the dk schema read back from the store, not the one this process saved. (A memory store
    and an in-memory DuckDB live only in their handle: there, the same handle.)"""
    opened = []

    def save(df: pd.DataFrame, table: str, **options):
        OLD_FORMS.clear()
        with monkeypatch.context() as m:
            m.setattr(dataknobs_pd.types, "_timestamp_spec", _old_form)
            df.dk.save(store, table, **options)
        assert OLD_FORMS, "the old form was not what was saved"
        if store.scheme == "memory" or store.url == "duckdb:///:memory:":
            return store
        store.close()
        opened.append(dk.connect(store._url, **store._options))
        return opened[-1]

    yield save
    for s in opened:
        s.close()


def test_a_table_saved_with_the_old_zone_form_loads(saved_by_older_code):
    old = {
        "iso_offset": ZONES["iso_offset"],  # "UTC-05:00"
        "timezone_0530": ZONES["timezone_0530"],  # "UTC+05:30"
        "dateutil_paris": ZONES["dateutil_paris"],  # "tzfile('/usr/share/zoneinfo/Europe/Paris')"
        "dateutil_bundled": ZONES["dateutil_bundled"],  # "tzfile('America/New_York')"
        "dateutil_offset": ZONES["dateutil_offset"],  # "tzoffset(None, -18000)"
        "dateutil_offset_named": ZONES["dateutil_offset_named"],  # "tzoffset('EST', -18000)"
        "dateutil_utc": ZONES["dateutil_utc"],  # "tzutc()"
    }
    if pytz is not None:
        old["pytz_fixed"] = ZONES["pytz_fixed"]  # "pytz.FixedOffset(-300)"
    named = {"zoneinfo_paris": ZONES["zoneinfo_paris"], "utc_string": ZONES["utc_string"]}  # as pandas reads them
    df = pd.DataFrame({"id": range(4)} | {name: zoned(tz) for name, tz in {**old, **named}.items()})
    df["category_offset"] = zoned(ZONES["iso_offset"]).astype("category")
    store = saved_by_older_code(df, "t", key="id")
    assert {"UTC-05:00", "tzutc()", str(ZONES["dateutil_paris"])} <= set(OLD_FORMS)

    out = dk.load(store, "t")
    assert_frame_equal(out.drop(columns=list(named)), df.drop(columns=list(named)), check_dtype=True)
    assert_zones(out[list(old)], df[list(old)])
    assert same_zone(out["category_offset"].cat.categories.tz, ZONES["iso_offset"])
    for name, tz in named.items():  # the zone as pandas reads its name: the same zone, in pandas' own library
        assert str(out[name].dt.tz) == str(tz)
        assert_series_equal(out[name].dt.tz_convert("UTC"), df[name].dt.tz_convert("UTC"))

    # such a table is written into and filtered (no new category: appending to a category of timestamps is
    # another matter)
    more = df.iloc[[0]].assign(id=9).drop(columns="category_offset")
    more.dk.save(store, "t", if_exists="append")
    got = dk.load(store, "t", where=[("iso_offset", "==", df["iso_offset"].iloc[0])], order_by="id")
    assert got["id"].tolist() == [0, 9]
    assert_zones(got[list(old)], df[list(old)])


def test_an_old_zoned_key_still_matches_rows(store, saved_by_older_code):
    tz = pytz.FixedOffset(-300) if pytz is not None else ZONES["iso_offset"]
    df = pd.DataFrame({"at": pd.date_range("2024-01-01", periods=3, freq="D", tz=tz), "v": [1, 2, 3]})
    try:
        store = saved_by_older_code(df, "t", key="at")
    except Exception as e:  # noqa: BLE001 - whatever the old form made the store raise
        pytest.skip(f"older code could not save such a table on this store ({type(e).__name__})")
    res = df.iloc[1:].assign(v=[5, 6]).dk.save(store, "t", if_exists="upsert", key="at")
    assert res.ok
    out = dk.load(store, "t", order_by="at")
    assert out["v"].tolist() == [1, 5, 6]
    assert same_zone(out["at"].dt.tz, tz)
    change = df.iloc[1:].assign(v=[7, 8])
    dry = change.dk.save(store, "t", if_exists="upsert", key="at", dry_run=True)
    assert dry.ok and len(dry.changes) == 2
    tracked = change.dk.save(store, "t", if_exists="upsert", key="at", track_changes=True)
    assert tracked.ok and len(tracked.changes) == 2
    assert dk.load(store, "t", order_by="at")["v"].tolist() == [1, 7, 8]


def test_the_old_zone_form_is_read_as_todays():
    df = pd.DataFrame({"offset": zoned(ZONES["iso_offset"]), "paris": zoned(ZONES["zoneinfo_paris"])})
    df["category"] = df["offset"].astype("category")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(dataknobs_pd.types, "_timestamp_spec", _old_form)
        text = tm.schema(df).to_json()
    schema = dk.TableSchema.from_json(text)
    offset, category = schema.column("offset"), schema.column("category")
    assert offset.arrow.tz == "-05:00" and offset.dtype["name"] == "datetime64[us, -05:00]"
    assert zones.rebuild(offset.dtype["tz"]) == ZONES["iso_offset"]
    assert category.arrow.tz == "-05:00" and category.dtype["categories_dtype"] == offset.dtype
    paris = schema.column("paris")  # a name pandas reads is left to pandas, as before
    assert paris.arrow.tz == "Europe/Paris" and paris.dtype == {"name": "datetime64[us, Europe/Paris]"}


def test_an_old_zone_name_nothing_reads_loads_in_utc(saved_by_older_code):
    df = pd.DataFrame({"at": zoned(ZONES["timezone_named"])})  # str(tz) == "BRT": no offset to read back
    store = saved_by_older_code(df, "t")
    with pytest.warns(UserWarning, match="'BRT'"):
        out = dk.load(store, "t")
    assert out["at"].dt.tz == dt.UTC
    assert (out["at"] == df["at"]).sum() == 3


@pytest.mark.parametrize(
    "text, zone",
    [
        ("UTC-05:00", dt.timezone(dt.timedelta(hours=-5))),
        ("UTC+05:30", dt.timezone(dt.timedelta(hours=5, minutes=30))),
        ("UTC+01:00:30", dt.timezone(dt.timedelta(hours=1, seconds=30))),
        ("tzfile('/usr/share/zoneinfo/Europe/Paris')", dateutil.tz.gettz("Europe/Paris")),
        ("tzfile('America/New_York')", get_zonefile_instance().get("America/New_York")),
        ("tzoffset(None, -18000)", dateutil.tz.tzoffset(None, -18000)),
        ("tzoffset('EST', -18000)", dateutil.tz.tzoffset("EST", -18000)),
        ("tzutc()", dateutil.tz.tzutc()),
        ("tzlocal()", dateutil.tz.tzlocal()),
        ("tzstr('EST5EDT')", dateutil.tz.tzstr("EST5EDT")),
        ("Europe/Paris", pd.DatetimeTZDtype("ns", "Europe/Paris").tz),
        ("UTC", pd.DatetimeTZDtype("ns", "UTC").tz),
    ],
)
def test_each_old_zone_form_is_read(text, zone):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert same_zone(zones.from_text(text), zone)


def test_old_pytz_offsets_are_read():
    pytest.importorskip("pytz")
    assert same_zone(zones.from_text("pytz.FixedOffset(-300)"), pytz.FixedOffset(-300))
    assert str(zones.from_text("pytz.FixedOffset(330)")) == "pytz.FixedOffset(330)"


# -- 2. an index keeps its freq ----------------------------------------------------------------------------


def test_a_datetime_index_keeps_its_freq(store):
    # statsmodels' co2: weekly readings on Saturdays, an unnamed DatetimeIndex of freq W-SAT
    df = pd.DataFrame({"co2": [316.1, 317.3, 317.6, 317.5, 316.4, 316.9, 317.2, 317.5]})
    df.index = pd.date_range("1958-03-29", periods=len(df), freq="W-SAT")
    df.dk.save(store, "co2")
    out = dk.load(store, "co2")
    assert_frame_equal(out, df)  # check_freq
    assert out.index.freqstr == "W-SAT"


def test_a_freq_comes_back_only_where_the_rows_read_fit_it(store):
    tz = ZONES["iso_offset"]
    idx = pd.date_range("2024-03-01", periods=12, freq="h", tz=tz, name="at")
    df = pd.DataFrame({"x": range(12)}, index=idx)
    df.dk.save(store, "t")
    assert_frame_equal(dk.load(store, "t"), df)
    first = dk.load(store, "t", order_by="at", limit=4)
    assert_frame_equal(first, df.iloc[:4])
    assert first.index.freqstr == "h"
    gap = dk.load(store, "t", where=[("x", "!=", 5)], order_by="at")  # an hour missing: no freq fits
    assert_frame_equal(gap, df[df["x"] != 5], check_freq=False)
    assert gap.index.freq is None
    backwards = dk.load(store, "t", order_by=("at", "desc"))
    assert backwards.index.freq is None and backwards.index.equals(df.index[::-1])


def test_a_timedelta_index_keeps_its_freq(store):
    df = pd.DataFrame({"x": range(6)}, index=pd.timedelta_range("1D", periods=6, freq="90min", name="after"))
    df.dk.save(store, "t")
    out = dk.load(store, "t")
    assert_frame_equal(out, df)
    assert out.index.freq == pd.Timedelta("90min")


def test_a_freq_its_name_cannot_give_back_is_not_recorded():
    holidays = ["2024-01-03"]
    idx = pd.date_range("2024-01-01", periods=5, freq=pd.offsets.CustomBusinessDay(holidays=holidays))
    schema = tm.schema(pd.DataFrame({"x": range(5)}, index=idx))
    assert "freq" not in schema.index_columns[0].dtype
    weekly = tm.schema(pd.DataFrame({"x": range(3)}, index=pd.date_range("2024-01-06", periods=3, freq="W-SAT")))
    assert weekly.index_columns[0].dtype["freq"] == "W-SAT"
