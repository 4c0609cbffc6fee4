"""The schema of a SQLite table this package did not create, from its declared column types."""

from __future__ import annotations

import sqlite3

import pyarrow as pa

from ...schema import Column, TableSchema
from ..sql import q


def foreign_schema(c: sqlite3.Connection, table: str) -> TableSchema | None:
    """Columns typed by SQLite's affinity rules for their declared types; the primary key as the key."""
    info = c.execute(f"PRAGMA main.table_info({q(table)})").fetchall()
    if not info:
        return None
    cols, key = [], [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
    for _, name, decl, notnull, _, pk in info:
        d = (decl or "").upper()
        if "INT" in d:
            col = Column(name, "int64", pa.int64(), not (notnull or pk), {"name": "Int64"})
        elif any(x in d for x in ("REAL", "FLOA", "DOUB")):
            col = Column(name, "float64", pa.float64(), True, {"name": "float64"})
        elif "BLOB" in d:
            col = Column(name, "bytes", pa.binary(), True, {"name": "object", "na": "none"})
        else:
            col = Column(name, "string", pa.large_string(), True, {"name": "object", "na": "none"})
        cols.append(col)
    return TableSchema(columns=cols, key=key or None)
