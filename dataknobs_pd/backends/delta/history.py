"""The history of a Delta table: its versions as dataknobs-pd reports them, the version asked for by number
or time, and a dk schema for tables that other tools wrote."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable

from ...errors import InvalidArgumentError
from ...schema import TableSchema

SCHEMA_KEY = "dataknobs_pd.schema"  # commit info: the dk schema of the table as of this commit
OP_KEY = "dataknobs_pd.operation"
ROWS_KEY = "dataknobs_pd.rows"  # commit info: {"inserted": n, "updated": n, "deleted": n}
TOKEN_KEY = "dataknobs_pd.commit"  # commit info: unique to the commit, to find the version it became
ORDER_KEY = "dataknobs_pd.order"  # commit info: ORDERED for a keyless table kept in order by its files (order.py)
ORDERED = "files"
OWNER_KEY = "dataknobs_pd.owner"  # commit info of a companion committed with its table: that table's name
# commit info of a table: the version of each of its companions that goes with it (-1: none), see backend.py
COMPANIONS_KEY = "dataknobs_pd.companions"


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
    plain = (
        pa.types.is_integer,
        pa.types.is_floating,
        pa.types.is_boolean,
        pa.types.is_string,
        pa.types.is_large_string,
        pa.types.is_timestamp,
    )
    empty = arrow.empty_table().to_pandas(types_mapper=lambda t: None if any(f(t) for f in plain) else pd.ArrowDtype(t))
    for f in arrow:  # a nullable integer or boolean column may hold missing values: pandas' nullable dtypes
        if f.nullable and (pa.types.is_integer(f.type) or pa.types.is_boolean(f.type)):
            nullable = "boolean" if pa.types.is_boolean(f.type) else str(pd.ArrowDtype(f.type).numpy_dtype).capitalize()
            empty[f.name] = empty[f.name].astype(nullable.replace("Uint", "UInt"))
    return TypeMapper().schema(empty.drop(columns=[n for n in empty.columns if str(n).startswith("_dk_")]))


def check_version(version: int | None, as_of) -> None:
    """Refuse a version= that is no version number, and version= with as_of=."""
    if version is not None and as_of is not None:
        raise InvalidArgumentError("pass version= or as_of=, not both")
    if version is not None and (isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0):
        raise InvalidArgumentError(f"version= takes a version number (an int >= 0), got {version!r}")


def version_at(latest: DeltaTable, loc, table: str, version: int | None, as_of) -> DeltaTable:
    """The version asked for (by number, or the one current at `as_of`) of a table whose latest is `latest`."""
    if version is not None and version > latest.version():
        raise InvalidArgumentError(
            f"table {table!r} has versions up to {latest.version()}; version={version} does not exist"
        )
    if version is None and as_of is None:
        return latest
    with loc.io(f"reading table {table!r}"):
        if as_of is None and version is not None:
            return loc.delta_table(table, int(version))
        try:
            when = pd.Timestamp(as_of)
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"as_of= takes a timestamp, got {as_of!r}") from e
        when = when.tz_localize("UTC") if when.tz is None else when.tz_convert("UTC")
        return _as_of(loc, table, when)


def _as_of(loc, table: str, when: pd.Timestamp) -> DeltaTable:
    """The version current at `when` (naive means UTC): the last one committed at or before it."""
    dt = loc.delta_table(table)
    stamps = {h["version"]: h["timestamp"] for h in dt.history()}
    ms = when.value // 1_000_000
    before = [v for v, t in stamps.items() if t <= ms]
    if not before:
        first = pd.Timestamp(min(stamps.values()), unit="ms", tz="UTC")
        raise InvalidArgumentError(f"table {table!r} did not exist yet at {when} (its first version is of {first})")
    dt.load_as_version(max(before))
    return dt
