"""The history of a Delta table: its versions as dataknobs-pd reports them, and a dk schema for
tables that other tools wrote."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable

from ...schema import TableSchema

SCHEMA_KEY = "dataknobs_pd.schema"  # commit info: the dk schema of the table as of this commit
OP_KEY = "dataknobs_pd.operation"
ROWS_KEY = "dataknobs_pd.rows"  # commit info: {"inserted": n, "updated": n, "deleted": n}
TOKEN_KEY = "dataknobs_pd.commit"  # commit info: unique to the commit, to find the version it became


def history_row(h: dict) -> dict:
    """One version: number, time (UTC), operation, and the rows it inserted, updated and deleted."""
    rows = h.get(ROWS_KEY)
    if not isinstance(rows, dict):  # a commit of another tool: what its metrics say
        m = h.get("operationMetrics") or {}
        rows = {
            "inserted": int(m.get("num_target_rows_inserted", m.get("num_added_rows", 0)) or 0),
            "updated": int(m.get("num_target_rows_updated", m.get("num_updated_rows", 0)) or 0),
            "deleted": int(m.get("num_target_rows_deleted", m.get("num_deleted_rows", 0)) or 0),
        }
    return {
        "version": int(h["version"]),
        "timestamp": pd.Timestamp(h["timestamp"], unit="ms", tz="UTC"),
        "operation": h.get(OP_KEY) or str(h.get("operation", "")).lower(),
        "rows": sum(int(rows.get(k, 0)) for k in ("inserted", "updated", "deleted")),
        "inserted": int(rows.get("inserted", 0)),
        "updated": int(rows.get("updated", 0)),
        "deleted": int(rows.get("deleted", 0)),
    }


def natural_schema(dt: DeltaTable) -> TableSchema:
    """A dk schema for a Delta table that dataknobs-pd did not write: its natural types, no key."""
    from ...types import TypeMapper

    arrow = pa.schema(dt.schema().to_arrow())
    plain = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string,
             pa.types.is_large_string, pa.types.is_timestamp)
    empty = arrow.empty_table().to_pandas(
        types_mapper=lambda t: None if any(f(t) for f in plain) else pd.ArrowDtype(t))
    return TypeMapper().schema(empty.drop(columns=[n for n in empty.columns if str(n).startswith("_dk_")]))
