"""The quarantine: a call's failed rows kept in the store, in the call's transaction, until a later call
writes their keys.

`table__quarantine` holds one row per failed input row: `batch_id`, `time` (UTC), `row` (its position in
the call's input), `index` and `key` (JSON), `stage`, `error`, `message`, `code` as in the report, `values`
(the row's values as sent, JSON: see encoding.py) and `dtypes` (the dtypes of the frame it came in).
`dk.quarantined` reads it back as a report whose `failed_rows()` has the frame's own dtypes and index.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import companions, encoding
from .backends.base import Backend
from .keys import as_index, key_frame

KEY = ["batch_id", "row"]


def put(backend: Backend, table: str, batch_id: str, report: pd.DataFrame, failed: pd.DataFrame) -> int:
    """Keep the call's failures (`report`, the failures frame) and their rows (`failed`, in the same order)."""
    n = len(report)
    if not n:
        return 0
    at = np.arange(n)
    text = "string"
    frame = pd.DataFrame(
        {
            "batch_id": pd.Series([batch_id] * n, dtype=text),
            "time": pd.Series([pd.Timestamp.now(tz="UTC")] * n, dtype="datetime64[us, UTC]"),
            "row": report["row"].to_numpy(dtype=np.int64),
            "index": pd.Series(encoding.index_values(failed, at), dtype=text),
            "key": pd.Series([encoding.dumps(k) for k in report["key"]], dtype=text),
            "stage": pd.Series(report["stage"].astype(str).tolist(), dtype=text),
            "error": pd.Series(report["error"].astype(str).tolist(), dtype=text),
            "message": pd.Series(report["message"].astype(str).tolist(), dtype=text),
            "code": pd.Series([None if c is None else str(c) for c in report["code"]], dtype=text),
            "values": pd.Series(encoding.row_values(failed, at), dtype=text),
            "dtypes": pd.Series([encoding.frame_dtypes(failed)] * n, dtype=text),
        }
    )
    companions.append(backend, companions.name(table, companions.QUARANTINE), frame, KEY)
    return n


class Resolver:
    """The quarantined keys a call writes: read once when the call starts, matched against each frame's
    written keys, removed from the quarantine when the call ends (in its transaction)."""

    def __init__(self, backend: Backend, table: str, key: list[str] | None):
        self.backend, self.name, self.key = backend, companions.name(table, companions.QUARANTINE), key
        q = companions.read(backend, self.name, columns=["batch_id", "row", "key"]) if key else None
        self.owed = q if q is not None and len(q) else None
        if self.owed is not None:
            self.keys = _index([encoding.loads(k) for k in self.owed["key"]], len(key or []))
            self.hit = np.zeros(len(self.owed), dtype=bool)

    def see(self, df: pd.DataFrame, failed) -> None:
        """Frame `df` was written, but for the rows at positions `failed`."""
        if self.owed is None or not self.key:
            return
        kf = key_frame(df, self.key)
        if len(failed):
            keep = np.ones(len(kf), dtype=bool)
            keep[np.fromiter(failed, dtype=np.int64)] = False
            kf = kf[keep]
        self.hit |= np.asarray(self.keys.isin(as_index(kf)))

    def finish(self, batch_id: str) -> int:
        """Remove the quarantined rows of earlier calls whose keys this call wrote; how many."""
        if self.owed is None:
            return 0
        gone = self.owed[self.hit & (self.owed["batch_id"] != batch_id).to_numpy()]
        companions.remove(self.backend, self.name, gone[KEY])
        return len(gone)


def _index(keys: list, width: int) -> pd.Index:
    if width == 1:
        return pd.Index(keys, dtype=object)
    return (
        pd.MultiIndex.from_tuples([tuple(k) for k in keys])
        if keys
        else pd.MultiIndex.from_tuples([], names=[None] * width)
    )


def owed(backend: Backend, table: str, batch_id: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The failures still in the quarantine (of one call, or all), oldest first, and their rows as sent."""
    where = [("batch_id", "==", batch_id)] if batch_id is not None else None
    q = companions.read(backend, companions.name(table, companions.QUARANTINE), where)
    if q is None or not len(q):
        return _empty_report(), pd.DataFrame()
    q = q.sort_values(["time", "batch_id", "row"], ignore_index=True)
    report = pd.DataFrame(
        {
            "batch_id": q["batch_id"].astype(object),
            "row": q["row"].to_numpy(dtype=np.int64),
            "index": pd.Series([encoding.loads(x) for x in q["index"]], dtype=object),
            "key": pd.Series([encoding.loads(x) for x in q["key"]], dtype=object),
            "stage": q["stage"].astype(object),
            "error": q["error"].astype(object),
            "message": q["message"].astype(object),
            "code": pd.Series([None if pd.isna(c) else c for c in q["code"]], dtype=object),
        }
    )
    report["index"] = [tuple(x) if isinstance(x, list) else x for x in report["index"]]
    parts, shapes, values, index = [], q["dtypes"].tolist(), q["values"].tolist(), q["index"].tolist()
    edges = [i for i in range(len(shapes) + 1) if i in (0, len(shapes)) or shapes[i] != shapes[i - 1]]
    for lo, hi in zip(edges, edges[1:]):  # a run of rows from frames of the same dtypes: one frame
        parts.append(encoding.rebuild(values[lo:hi], index[lo:hi], shapes[lo]))
    rows = pd.concat(parts) if len(parts) > 1 else parts[0]
    return report, rows


def _empty_report() -> pd.DataFrame:
    from .failures import FAILURE_COLUMNS

    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else object) for c in ["batch_id", *FAILURE_COLUMNS]})


def quarantined(store, table: str, batch_id: str | None = None):
    """The rows still in a table's quarantine, as the report of a call: what is still owed.

    Args:
        store: A Store, a store's URL, or a connection you hold.
        table: The table whose quarantine to read (`{table}__quarantine` in the store).
        batch_id: Only the rows of that call (`res.batch_id`); default: every call's.

    Returns:
        A BatchResult: `failures` (with a `batch_id` column beside `row`, the row's position in its call's
            input), and `failed_rows()`, the rows as they were sent, in their frame's dtypes and index, ready
            to fix and write again; the keys written leave the quarantine.
    """
    import time

    from .names import check_table_name
    from .result import BatchResult
    from .store import as_store

    check_table_name(table)
    start = time.perf_counter()
    store = as_store(store)
    schema = store.backend.schema(table)
    report, rows = owed(store.backend, table, batch_id)
    return BatchResult(
        operation="quarantined",
        table=table,
        url=store.url,
        key=schema.key if schema is not None else None,
        failures={},
        elapsed=time.perf_counter() - start,
        total=len(report),
        failed_rows=rows,
        report=report,
        batch_id=batch_id,
    )
