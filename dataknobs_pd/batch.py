"""The batch engine: chunks a frame into a backend, isolates failing rows, accounts for every row.

Every input row ends in exactly one place: written, or a RowFailure at stage validate
(null or repeated key), convert (the value cannot become the column's type, or the store
cannot hold it), write (the store refused it) or missing (update/delete of an absent key).
A chunk the store refuses as a whole is halved, each half in its own savepoint, until the
rows at fault stand alone: k bad rows among n cost about k*log2(n) extra writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from . import keys as keys_mod
from .backends.base import Backend, Failures
from .errors import BatchError, RowFailure, WriteError
from .progress import Progress
from .result import BatchResult
from .schema import TableSchema
from .types import TypeMapper, is_default_index


class _Abort(Exception):
    """Raised inside the transaction to roll it back (errors="raise")."""


@dataclass
class Job:
    """One write call, resolved: what to write where, and how."""

    operation: str  # save | update_batch | delete
    backend: Backend
    url: str
    table: str
    frame: pd.DataFrame
    schema: TableSchema  # the table's schema after this call
    mode: str  # insert | upsert | update | delete
    errors: str = "collect"
    chunksize: int | None = None
    progress: bool | None = None
    create: bool = False  # create the table (dropping any old one) inside the transaction
    schema_changed: bool = False  # store `schema` (e.g. new categories) inside the transaction


class BatchWriter:
    """Runs a Job and returns its BatchResult (or raises BatchError with it)."""

    def __init__(self, mapper: TypeMapper | None = None):
        self.mapper = mapper or TypeMapper()

    def run(self, job: Job) -> BatchResult:
        start = time.perf_counter()
        df, schema = job.frame, job.schema
        failures: Failures = self._validate(df, schema.key) if schema.key else {}
        per_chunk = job.chunksize or job.backend.chunk_rows(len(schema.columns))
        committed = True
        try:
            with Progress(len(df), f"{job.operation} {job.table}", job.progress) as bar:
                with job.backend.transaction():
                    if job.create:
                        job.backend.drop(job.table)
                        job.backend.create(job.table, schema)
                    elif job.schema_changed:
                        job.backend.set_schema(job.table, schema)
                    for lo in range(0, len(df), per_chunk):
                        hi = min(len(df), lo + per_chunk)
                        rows = np.arange(lo, hi)
                        if failures:
                            rows = rows[~np.isin(rows, np.fromiter(failures, dtype=np.int64))]
                        self._chunk(job, rows, failures)
                        bar.update(hi - lo, len(failures))
                    if failures and job.errors == "raise":
                        raise _Abort
        except _Abort:
            committed = False
        result = BatchResult(
            operation=job.operation, table=job.table, url=job.url, frame=df, key=schema.key,
            failures=failures, elapsed=time.perf_counter() - start, committed=committed,
        )
        if not committed:
            raise BatchError(
                f"{result.failed:,} of {result.total:,} rows failed, so nothing was written to "
                f"{job.table!r} (errors='raise'); the first: row {result.failures['row'].iloc[0]}: "
                f"{result.failures['message'].iloc[0]}. See .result.failures.",
                result,
            )
        return result

    # -- one chunk ---------------------------------------------------------------------
    def _chunk(self, job: Job, rows: np.ndarray, failures: Failures) -> None:
        if len(rows) == 0:
            return
        contiguous = rows[-1] - rows[0] + 1 == len(rows)
        part = job.frame.iloc[rows[0]:rows[-1] + 1] if contiguous else job.frame.iloc[rows]
        if job.mode == "delete":
            data, bad = self.mapper.to_arrow(keys_mod.key_frame(part, job.schema.key), _key_schema(job.schema))
        else:
            # A default range index says nothing when updating rows, but labels the rows it inserts.
            with_index = job.mode == "insert" or not is_default_index(job.frame.index)
            data, bad = self.mapper.to_arrow(part, job.schema, with_index)
        rows = _drop(rows, bad, failures)
        data, bad = job.backend.prepare(data, job.schema)
        rows = _drop(rows, bad, failures)
        self._write(job, data, rows, failures)

    def _write(self, job: Job, data: pa.Table, rows: np.ndarray, failures: Failures) -> None:
        """Write `data`, halving any part the store refuses until the rows at fault stand alone."""
        stack = [(0, data.num_rows)]
        while stack:
            lo, hi = stack.pop()
            if lo >= hi:
                continue
            part = data.slice(lo, hi - lo)
            try:
                with job.backend.savepoint():
                    if job.mode == "delete":
                        rejected = job.backend.delete(job.table, part, job.schema)
                    else:
                        rejected = job.backend.write(job.table, part, job.schema, job.mode)
            except WriteError as e:
                if hi - lo == 1:
                    failures[int(rows[lo])] = RowFailure("write", e.error, str(e), e.code)
                else:
                    mid = (lo + hi) // 2
                    stack += [(mid, hi), (lo, mid)]  # the first half is written first
                continue
            for i, f in rejected.items():
                failures[int(rows[lo + i])] = f

    @staticmethod
    def _validate(df: pd.DataFrame, key: list[str]) -> Failures:
        null, dup = keys_mod.invalid_rows(df, key)
        out: Failures = {}
        names = ", ".join(key)
        for p in null:
            out[int(p)] = RowFailure("validate", "NullKey", f"key ({names}) has a missing value")
        if len(dup):
            kf = keys_mod.key_frame(df, key)
            first = kf.reset_index().groupby(key, dropna=False, sort=False)["index"].transform("min")
            for p in dup:
                out[int(p)] = RowFailure(
                    "validate", "DuplicateKey", f"key ({names}) repeats row {int(first.iloc[p])} of this frame")
        return out


def _drop(rows: np.ndarray, bad: Failures, failures: Failures) -> np.ndarray:
    """Record failures of chunk positions and return the rows left, in order."""
    if not bad:
        return rows
    for i, f in bad.items():
        failures[int(rows[i])] = f
    keep = np.ones(len(rows), dtype=bool)
    keep[list(bad)] = False
    return rows[keep]


def _key_schema(schema: TableSchema) -> TableSchema:
    return TableSchema(columns=[schema.column(k) for k in schema.key], key=schema.key)
