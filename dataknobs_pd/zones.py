"""Time zones in the dk schema: a form every store and Arrow read back, and the exact pandas zone.

A tz-aware column records two things. Its Arrow type carries a zone Arrow and other readers
understand: an IANA name ("Europe/Paris", "UTC") or a fixed offset ("+05:30", "-05:00"). Its dtype
spec carries a zone record, {"library", "class", then "key" or "offset" and "name"}, from which
`rebuild` makes the very zone object pandas held: a zoneinfo, pytz or dateutil zone of that name,
a datetime.timezone, pytz.FixedOffset or dateutil tzoffset of that offset, dateutil's tzutc.

Tables saved before zone records existed hold `str(tz)` in both places ("UTC-05:00",
"pytz.FixedOffset(-300)", "tzfile('/usr/share/zoneinfo/Europe/Paris')", ...): `legacy` reads
those back too.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import warnings
import zoneinfo

import dateutil.tz
import pandas as pd
import pyarrow as pa

from .errors import UnsupportedDtypeError

UTC = "UTC"

# the folders a tz database file is read from: a dateutil tzfile names its file by its full path
_TZ_FOLDERS = ("/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo", "/etc/zoneinfo")


def timestamp_spec(tz, unit: str, column: str) -> tuple[str, dict]:
    """The Arrow zone and the dtype spec of a tz-aware column of `unit` in zone `tz`."""
    zone = record(tz, column)
    name = arrow_tz(zone)
    return name, {"name": f"datetime64[{unit}, {name}]", "tz": zone}


def record(tz, column: str) -> dict:
    """The zone record of a pandas zone; UnsupportedDtypeError for a zone no other reader could rebuild
    (dateutil's tzlocal, a POSIX TZ string, a zone read from a file of no tz database, a tzinfo of its own)."""
    library = type(tz).__module__.split(".")[0]
    cls = type(tz).__name__
    if isinstance(tz, dt.timezone):
        offset = tz.utcoffset(None)
        own = tz.tzname(None)
        name = None if own == dt.timezone(offset).tzname(None) else own  # no name of its own: "UTC-05:00"
        return {"library": "datetime", "class": "timezone", "offset": _seconds(offset), "name": name}
    if library == "zoneinfo" and isinstance(getattr(tz, "key", None), str):
        return {"library": "zoneinfo", "class": "ZoneInfo", "key": tz.key}
    if library == "pytz":
        if isinstance(getattr(tz, "zone", None), str):  # named zones and pytz.utc
            return {"library": "pytz", "class": "timezone", "key": tz.zone}
        if hasattr(tz, "_minutes"):
            return {"library": "pytz", "class": "FixedOffset", "offset": _seconds(tz.utcoffset(None))}
    if library == "dateutil":
        if cls == "tzutc":
            return {"library": "dateutil", "class": "tzutc"}
        if cls == "tzoffset":
            offset = tz.utcoffset(None)
            return {"library": "dateutil", "class": "tzoffset", "offset": _seconds(offset), "name": tz.tzname(None)}
        if cls == "tzfile":
            found = _tzfile_record(getattr(tz, "_filename", None))
            if found is not None:
                return found
    raise UnsupportedDtypeError(
        f"column {column!r} is in time zone {tz!r} ({type(tz).__module__}.{cls}), which cannot be stored: "
        f"only named zones (zoneinfo, pytz, dateutil), fixed offsets and UTC can; convert it first "
        f"(for example with .dt.tz_convert('Europe/Paris') or .dt.tz_convert('UTC'))"
    )


def arrow_tz(zone: dict) -> str:
    """The zone as Arrow and other readers name it: the IANA name, else the offset as "+HH:MM" ("UTC" for
    a zero offset, and for an offset in seconds Arrow cannot name: the record keeps it exactly)."""
    if "key" in zone:
        return zone["key"]
    if zone.get("class") in ("tzlocal", "tzstr"):  # only in a table saved before zone records: no name Arrow reads
        return UTC
    seconds = zone.get("offset", 0)
    if seconds == 0 or seconds % 60 or abs(seconds) >= 86400:
        return UTC
    sign, minutes = ("-" if seconds < 0 else "+"), abs(int(seconds)) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def rebuild(zone: dict) -> dt.tzinfo:
    """The pandas zone of a record: the same library and class where it is installed, else the same zone
    from the standard library (zoneinfo, datetime.timezone)."""
    library, cls = zone.get("library"), zone.get("class")
    key, offset, name = zone.get("key"), dt.timedelta(seconds=zone.get("offset", 0)), zone.get("name")
    if library == "pytz":
        try:
            import pytz
        except ImportError:
            pass
        else:
            return pytz.timezone(key) if key is not None else pytz.FixedOffset(offset // dt.timedelta(minutes=1))
    if library == "dateutil":
        if cls == "tzutc":
            return dateutil.tz.tzutc()
        if cls == "tzoffset":
            return dateutil.tz.tzoffset(name, offset)
        if cls == "tzfile":
            found = None
            if zone.get("bundled"):  # a zone of the database dateutil ships, not of the machine's
                from dateutil.zoneinfo import get_zonefile_instance

                found = get_zonefile_instance().get(key)
            found = found or dateutil.tz.gettz(key)
            if found is not None:
                return found
        if cls == "tzlocal":  # only in a table saved before zone records
            return dateutil.tz.tzlocal()
        if cls == "tzstr":
            return dateutil.tz.tzstr(zone["string"])
    if key is not None:
        return zoneinfo.ZoneInfo(key)
    return dt.timezone(offset, name) if name else dt.timezone(offset)


def upgrade(arrow: pa.DataType, spec: dict) -> tuple[pa.DataType, dict]:
    """A column of a table saved before zone records, in today's form when its str(tz) is one neither pandas nor
    Arrow reads ("UTC-05:00", "pytz.FixedOffset(-300)", "tzfile('...')"): every reader of the dk schema then
    reads its zone (TypeMapper, filters, a backend matching keys). Any other column as it is (a zone name
    pandas reads keeps being read by pandas, in its library)."""
    if not (pa.types.is_timestamp(arrow) and arrow.tz is not None):
        return arrow, spec
    inner = spec.get("categories_dtype") if spec.get("name") == "category" else spec
    if not isinstance(inner, dict) or "tz" in inner or not str(inner.get("name")).startswith("datetime64["):
        return arrow, spec
    zone = legacy(arrow.tz)
    if zone is None:
        return arrow, spec
    unit, tz = inner["name"][len("datetime64[") :].split(",", 1)[0], arrow_tz(zone)
    new = {**inner, "name": f"datetime64[{unit}, {tz}]", "tz": zone}
    return pa.timestamp(arrow.unit, tz), new if inner is spec else {**spec, "categories_dtype": new}


def of_spec(spec: dict):
    """The pandas zone of a datetime column's spec: from its record, else from a name saved before
    zone records existed (`datetime64[ns, <str(tz)>]`)."""
    zone = spec.get("tz")
    if zone is not None:
        return rebuild(zone)
    unit, text = spec["name"][len("datetime64[") : -1].split(", ", 1)
    return from_text(text, unit)


def from_text(text: str, unit: str = "ns"):
    """The pandas zone `str(tz)` gave: what pandas reads of it, else a zone of `legacy`, else UTC, with
    a warning (the instants are right; only the zone they are shown in is lost)."""
    zone = legacy(text)
    if zone is not None:
        return rebuild(zone)
    try:
        return pd.DatetimeTZDtype(unit, text).tz
    except Exception:  # noqa: BLE001 - pandas raises several kinds for a name it does not know
        warnings.warn(
            f"time zone {text!r} of a stored column is not known here: its timestamps are read in UTC",
            stacklevel=2,
        )
        return dt.UTC


_LEGACY = [
    (re.compile(r"UTC([+-])(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{6}))?)?"), "timezone"),
    (re.compile(r"pytz\.FixedOffset\((-?\d+)\)"), "pytz"),
    (re.compile(r"tzfile\((['\"])(.+)\1\)"), "tzfile"),
    (re.compile(r"tzoffset\((None|'.*'|\".*\"), (-?\d+)\)"), "tzoffset"),
    (re.compile(r"tzstr\((['\"])(.+)\1\)"), "tzstr"),
]


def legacy(text: str) -> dict | None:
    """The record of a zone as `str(tz)` spelled it, for the forms pandas cannot read (None for the others)."""
    if text == "tzutc()":
        return {"library": "dateutil", "class": "tzutc"}
    if text == "tzlocal()":
        return {"library": "dateutil", "class": "tzlocal"}
    for pattern, what in _LEGACY:
        m = pattern.fullmatch(text)
        if m is None:
            continue
        if what == "timezone":
            sign, hours, minutes, seconds, micros = m.groups()
            offset = dt.timedelta(
                hours=int(hours), minutes=int(minutes), seconds=int(seconds or 0), microseconds=int(micros or 0)
            )
            return {"library": "datetime", "class": "timezone", "offset": _seconds(-offset if sign == "-" else offset)}
        if what == "pytz":
            return {"library": "pytz", "class": "FixedOffset", "offset": int(m.group(1)) * 60}
        if what == "tzfile":
            return _tzfile_record(m.group(2))
        if what == "tzoffset":
            name = None if m.group(1) == "None" else m.group(1)[1:-1]
            return {"library": "dateutil", "class": "tzoffset", "offset": int(m.group(2)), "name": name}
        return {"library": "dateutil", "class": "tzstr", "string": m.group(2)}
    return None


def _seconds(offset: dt.timedelta) -> int | float:
    s = offset.total_seconds()
    return int(s) if s == int(s) else s


def _tzfile_record(filename) -> dict | None:
    """The record of a dateutil tzfile read from `filename`: a file of a tz database folder (its path there is
    the IANA name), or a zone of the database dateutil ships (named by its name alone); None for another file."""
    if not isinstance(filename, str) or not filename:
        return None
    key = filename
    if os.path.isabs(filename):
        folders = [*dateutil.tz.TZPATHS, *zoneinfo.TZPATH, *_TZ_FOLDERS]
        inside = [filename[len(f) :].lstrip("/") for f in folders if filename.startswith(f.rstrip("/") + "/")]
        if not inside:
            return None
        key = inside[0]
    try:
        if os.path.isabs(key) or dateutil.tz.gettz(key) is None:
            return None
    except (ValueError, OSError):
        return None
    zone = {"library": "dateutil", "class": "tzfile", "key": key}
    return zone if os.path.isabs(filename) else {**zone, "bundled": True}
