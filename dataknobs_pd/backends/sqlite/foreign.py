"""The schema of a SQLite table this package did not create, from its declared column types and the
values it already holds.

SQLite has no date, time or boolean storage of its own, so other tools keep them in their own forms:
pandas `to_sql` writes timestamps as text (`2013-01-01 05:00:00`, `...+00:00` when they carry a zone,
`.123456` only when there are microseconds), SQLAlchemy as `2013-01-01 05:00:00.000000`, others in ISO
form with a `T` or a `Z`; dates as `2013-01-01`; booleans as 0 and 1. A column declared TIMESTAMP or
DATETIME whose first values are all timestamp text loads as datetime64 (with their zone when the text
carries an offset: that offset when all carry the same one, else UTC), and values are written into it in
the form it already holds (types.py, the `sqlite_text` record of its dtype spec); DATE loads as dates,
BOOLEAN as `boolean`, NUMERIC and DECIMAL as float64, as pandas reads them. A column whose values do not
fit its declaration stays typed by SQLite's affinity rules, as before.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3

import pandas as pd
import pyarrow as pa

from ...schema import Column, TableSchema
from ..sql import q
from .names import main
from .types import TEXT

SAMPLE = 200  # rows read to learn the forms of a table's date, time and boolean columns

_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}([ T])\d{2}:\d{2}(:\d{2})?(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_OBJECT = {"name": "object", "na": "none"}


def foreign_schema(c: sqlite3.Connection, table: str) -> TableSchema | None:
    """Columns typed by their declared types (and the forms of their values); the primary key as the key."""
    info = c.execute(f"PRAGMA main.table_info({q(table)})").fetchall()
    if not info:
        return None
    key = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
    decls = {name: (decl or "").upper() for _, name, decl, *_ in info}
    sampled = [name for name, d in decls.items() if _sampled(d)]
    values: dict[str, list] = {name: [] for name in sampled}
    if sampled:
        rows = c.execute(f"SELECT {', '.join(q(n) for n in sampled)} FROM {main(table)} LIMIT {SAMPLE}").fetchall()
        for row in rows:
            for name, v in zip(sampled, row):
                if v is not None:
                    values[name].append(v)
    cols = []
    for _, name, _, notnull, _, pk in info:
        nullable = not (notnull or pk)
        held = values.get(name, [])
        col = _declared(name, decls[name], held, nullable) or _numbers(name, held, nullable)
        cols.append(col or _by_affinity(name, decls[name], nullable))
    return TableSchema(columns=cols, key=key or None)


def _sampled(d: str) -> bool:
    return "DATE" in d or "TIME" in d or "BOOL" in d


def _by_affinity(name: str, d: str, nullable: bool) -> Column:
    """SQLite's affinity rules for a declared type."""
    if "INT" in d:
        return Column(name, "int64", pa.int64(), nullable, {"name": "Int64"})
    if any(x in d for x in ("REAL", "FLOA", "DOUB")):
        return Column(name, "float64", pa.float64(), True, {"name": "float64"})
    if "BLOB" in d:
        return Column(name, "bytes", pa.binary(), True, dict(_OBJECT))
    if any(x in d for x in ("NUMERIC", "DECIMAL", "NUMBER", "MONEY")):  # numbers, as pandas reads them
        return Column(name, "float64", pa.float64(), True, {"name": "float64"})
    return Column(name, "string", pa.large_string(), True, dict(_OBJECT))


def _numbers(name: str, values: list, nullable: bool) -> Column | None:
    """A date, time or boolean column holding numbers (epochs, say): numbers, as SQLite's NUMERIC affinity."""
    if not values or not all(isinstance(v, (int, float)) for v in values):
        return None
    if all(isinstance(v, int) for v in values):
        return Column(name, "int64", pa.int64(), nullable, {"name": "Int64"})
    return Column(name, "float64", pa.float64(), True, {"name": "float64"})


def _declared(name: str, d: str, values: list, nullable: bool) -> Column | None:
    """The column a date, time or boolean declaration makes, when the values held fit it (else None)."""
    if "INT" in d:
        return None  # INTEGER, BIGINT: integers, whatever else the name says
    if "BOOL" in d:
        if all(isinstance(v, int) and v in (0, 1) for v in values):
            return Column(name, "bool", pa.bool_(), True, {"name": "boolean"})
        return None
    if "TIME" in d:
        form = text_form(values, d)
        if form is None:
            return None
        unit = "ns" if any(len(m.group(3) or "") > 6 for m in map(_STAMP.match, values) if m) else "us"
        tz = _zone(values)
        dtype = pd.DatetimeTZDtype(unit, tz) if tz is not None else f"datetime64[{unit}]"
        from ...types import TypeMapper

        col = TypeMapper().describe(pd.Series([], dtype=dtype), name)
        return Column(name, col.kind, col.arrow, True, {**col.dtype, TEXT: form})
    if "DATE" in d:
        if all(isinstance(v, str) and _DATE.match(v) for v in values):
            return Column(name, "date", pa.date32(), True, dict(_OBJECT))
        return None
    return None


def text_form(values: list, decl: str = "") -> dict | None:
    """The form timestamps are written in, learnt from text a column holds (None: not all are timestamps).

    {"sep": " " or "T", "seconds": whether seconds are written when they are 0, "digits": the digits of
    the fraction of a second, "trim": whether a whole second is written without them (then a value needing
    more digits gets 6, or 9 for nanoseconds, as Python and pandas write them; without trim it cannot be
    written), "zone": "" (none), "Z", "+HH:MM" or "+HHMM"}. A column with no values yet takes the form of
    the tool its declaration points to: DATETIME is SQLAlchemy's (6 digits always), TIMESTAMP pandas'."""
    if not values:
        return {"sep": " ", "seconds": True, "digits": 6, "trim": "DATETIME" not in decl, "zone": ""}
    matches = [_STAMP.match(v) if isinstance(v, str) else None for v in values]
    if not all(matches):
        return None
    found = [m for m in matches if m is not None]
    seps = {m.group(1) for m in found}
    digits = {len(m.group(3) or "") for m in found}
    zones = {_zone_style(m.group(4)) for m in found}
    if len(seps) > 1 or len(zones) > 1:
        return None  # one column, several forms: nothing to follow
    return {
        "sep": seps.pop(),
        "seconds": any(m.group(2) for m in found),
        "digits": max(digits) or 6,
        "trim": len(digits) > 1 or digits == {0},
        "zone": zones.pop(),
    }


def _zone_style(suffix: str | None) -> str:
    if not suffix:
        return ""
    if suffix == "Z":
        return "Z"
    return "+HH:MM" if ":" in suffix else "+HHMM"


def _zone(values: list) -> dt.tzinfo | str | None:
    """The zone of a column whose text carries offsets: the one offset they all carry, else UTC."""
    if not values:
        return None
    offsets = set()
    for v in values:
        m = _STAMP.match(v)
        suffix = m.group(4) if m else None
        if not suffix:
            return None
        if suffix == "Z":
            offsets.add(0)
        else:
            sign = -1 if suffix[0] == "-" else 1
            digits = suffix[1:].replace(":", "")
            offsets.add(sign * (int(digits[:2]) * 60 + int(digits[2:])))
    if len(offsets) == 1 and (minutes := offsets.pop()) != 0:
        return dt.timezone(dt.timedelta(minutes=minutes))
    return "UTC"
