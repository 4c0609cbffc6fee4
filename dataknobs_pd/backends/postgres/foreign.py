"""A dk schema for a PostgreSQL table this package did not create, from its declared column types."""

from __future__ import annotations

import pyarrow as pa

from ...schema import Column, TableSchema

_OBJECT = {"name": "object", "na": "none"}
_SIMPLE = {  # typname -> (kind, Arrow type, pandas dtype spec)
    "int2": ("int16", pa.int16(), {"name": "Int16"}),
    "int4": ("int32", pa.int32(), {"name": "Int32"}),
    "int8": ("int64", pa.int64(), {"name": "Int64"}),
    "float4": ("float32", pa.float32(), {"name": "float32"}),
    "float8": ("float64", pa.float64(), {"name": "float64"}),
    "bool": ("bool", pa.bool_(), {"name": "boolean"}),
    "bytea": ("bytes", pa.binary(), _OBJECT),
    "date": ("date", pa.date32(), _OBJECT),
    "timestamp": ("datetime", pa.timestamp("us"), {"name": "datetime64[us]"}),
    "timestamptz": ("datetime", pa.timestamp("us", tz="UTC"), {"name": "datetime64[us, UTC]"}),
    "interval": ("timedelta", pa.duration("us"), {"name": "timedelta64[us]"}),
    "json": ("json", pa.large_string(), _OBJECT),
    "jsonb": ("json", pa.large_string(), _OBJECT),
}


def foreign_schema(query, relation: str) -> TableSchema | None:
    """`query(sql, params)` runs a statement; `relation` is the schema-qualified, quoted name.

    None when no table or view has that name (an index or a sequence is not a table). Every
    column is shown: the hidden columns of this package exist only in tables it made, which
    have a stored dk schema and never come here.
    """
    rel = "(SELECT oid FROM pg_class WHERE oid = to_regclass($1) AND relkind IN ('r', 'p', 'v', 'm', 'f'))"
    cols = query(
        "SELECT a.attname, t.typname, a.attnotnull, a.atttypmod FROM pg_attribute a"
        f" JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = {rel} AND a.attnum > 0"
        " AND NOT a.attisdropped ORDER BY a.attnum",
        (relation,),
    )
    if not cols:
        return None
    key = [
        r[0]
        for r in query(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            f" AND a.attnum = ANY(i.indkey) WHERE i.indrelid = {rel} AND i.indisprimary"
            " ORDER BY array_position(i.indkey::int2[], a.attnum)",
            (relation,),
        )
    ]
    out = []
    for name, typ, notnull, typmod in cols:
        if typ in _SIMPLE:
            kind, arrow, spec = _SIMPLE[typ]
        elif typ == "numeric" and typmod >= 4 and ((typmod - 4) >> 16) <= 76:
            precision, scale = (typmod - 4) >> 16, (typmod - 4) & 0xFFFF
            arrow = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
            kind, spec = "decimal", _OBJECT
        else:  # text, varchar, unconstrained numeric, uuid, ...: their text
            kind, arrow, spec = "string", pa.large_string(), _OBJECT
        out.append(Column(name, kind, arrow, not (notnull or name in key), dict(spec)))
    return TableSchema(columns=out, key=key or None)
