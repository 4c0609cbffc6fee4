"""The batch engine: chunks a frame into a backend, isolates failing rows, accounts for every row.

Every input row ends in exactly one place: written, or a RowFailure (failures.py says why).
A chunk the store refuses as a whole is halved, each half in its own savepoint, until the
rows at fault stand alone: k bad rows among n cost about k*log2(n) extra writes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from . import batchlog, changes, checks, companions, images, keys, quarantine
from .backends.base import Backend, without_rows
from .backends.capabilities import History, Images, StoreImages
from .budget import describe as _budget
from .budget import within_budget
from .errors import BatchError, ConcurrentWriteError, InternalError, KeyRequiredError, WriteError
from .failures import (
    Failures,
    RowError,
    RowFailure,
    Stage,
    ambiguous,
    bisect,
    classify,
    failures_frame,
    repeated,
    unholdable,
    validate,
)
from .progress import Progress
from .result import BatchResult
from .schema import Column, TableSchema
from .types import TypeMapper, is_default_index

#: writes a converted part (its rows' positions in the frame beside it) somewhere else than into the
#: table; returns which rows' keys were there, as Backend.write does
Put = Callable[[pa.Table, np.ndarray], "np.ndarray | None"]

ATTEMPTS = 5  # a call that lost a race with another writer (ConcurrentWriteError) runs again, this often


class _Abort(Exception):
    """Raised inside the transaction to roll it back (errors="raise")."""


@dataclass(frozen=True)
class Plan:
    """What a call does to the table as it stands: decided inside the write transaction."""

    schema: TableSchema  # the table's schema after this call
    mode: str  # insert | upsert | update | delete
    create: bool = False  # create the table (dropping any old one)
    schema_changed: bool = False  # store `schema` (e.g. new categories)
    added: tuple[Column, ...] = ()  # columns to add to the table first (new_columns="add")


@dataclass
class Job:
    """One write call: what to write where; `plan` decides how from the table's current schema (or None)."""

    operation: str  # save | update_batch | delete
    backend: Backend
    url: str
    table: str
    frames: Iterable[pd.DataFrame]  # one frame, or a stream of them
    plan: Callable[[TableSchema | None], Plan]
    errors: str = "collect"
    chunksize: int | None = None
    progress: bool | None = None
    again: Iterable[pd.DataFrame] | None = None  # the frames read again for a retry (None: they cannot be)
    new_columns: str = "fail"  # columns a later frame of a stream brings: "fail" or "add"
    dry_run: bool = False  # do everything, then roll back
    track: bool = False  # record what each written row changes (BatchResult.changes)
    batch_id: str = ""  # the call's id in the batch log
    quarantine: bool = False  # keep the failed rows in the table's quarantine
    undoable: bool = False  # keep the before-images of the rows the call changes (images.py)
    max_errors: int | None = None  # more failures than this: nothing is written
    max_error_rate: float | None = None  # failures above this fraction of the rows: nothing is written
    undo: TableSchema | None = None  # the undo table's schema, once made in the call's transaction
    checks: Any = None  # validate=: a pandera DataFrameSchema each frame is checked against (checks.py)
    kept: Any = None  # the pandera schema the table keeps (store.set_validation), read with its dk schema

    @property
    def single(self) -> pd.DataFrame | None:
        """The input frame, when the input is one frame."""
        f = self.frames
        return f[0] if isinstance(f, list) and len(f) == 1 else None

    def retry(self) -> bool:
        """Make the frames ready to be read again; False when they cannot be (a one-shot stream)."""
        if isinstance(self.frames, list):
            return True
        if self.again is None:
            return False
        self.frames = self.again
        return True


class BatchWriter:
    """Runs a Job and returns its BatchResult (or raises BatchError with it)."""

    def __init__(self, mapper: TypeMapper | None = None):
        self.mapper = mapper or TypeMapper()

    def plan(self, job: Job) -> tuple[TableSchema | None, Plan]:
        """The table's schema as it stands (None: there is none) and the call's plan for it. Decided once
        outside the transaction, so that bad input fails before any lock is taken, and again inside it
        (`claim`): another writer may have created or changed the table meanwhile."""
        existing = job.backend.schema(job.table)
        job.kept = checks.kept(existing)
        return existing, job.plan(existing)

    def run(self, job: Job) -> BatchResult:
        """Write the whole call as the one writer: one transaction, run again (when the frames can be read
        again) when another writer won a race."""
        start = time.perf_counter()
        existing, plan = self.plan(job)
        for attempt in range(ATTEMPTS):
            try:
                tally, committed, plan = self._attempt(job, plan, existing)
                break
            except ConcurrentWriteError:
                if attempt == ATTEMPTS - 1 or not job.retry():
                    raise
                time.sleep(random.uniform(0.02, 0.1 * 2**attempt))
                existing, plan = self.plan(job)
        return self.result(job, plan, tally, committed, start)

    @staticmethod
    def result(job: Job, plan: Plan, tally: Tally, committed: bool, start: float) -> BatchResult:
        """The call's report; BatchError carrying it when errors="raise" met a failure."""
        single = job.single
        result = BatchResult(
            operation=job.operation,
            table=job.table,
            url=job.url,
            key=plan.schema.key,
            failures=tally.failures,
            elapsed=time.perf_counter() - start,
            committed=committed,
            frame=single,
            total=tally.total,
            failed_rows=None if single is not None else tally.failed_rows(),
            partition=None if single is not None else tally.partition,
            changes=tally.changes() if job.track or job.dry_run else None,
            dry_run=job.dry_run,
            added={c.pandas_label: c.dtype["name"] for c in tally.added},
            version=job.backend.last_version(job.table) if committed and isinstance(job.backend, History) else None,
            batch_id=job.batch_id,
            quarantined=tally.quarantined,
            within_budget=tally.within_budget,
        )
        if not committed and not job.dry_run and tally.within_budget is False:
            raise BatchError(
                f"{result.failed:,} of {result.total:,} rows failed, over the error budget "
                f"({_budget(job)}), so nothing was written to {job.table!r} and nothing quarantined; the first: "
                f"row {result.failures['row'].iloc[0]}: {result.failures['message'].iloc[0]}. See .result.failures.",
                result,
            )
        if not committed and not job.dry_run:
            raise BatchError(
                f"{result.failed:,} of {result.total:,} rows failed, so nothing was written to "
                f"{job.table!r} (errors='raise'); the first: row {result.failures['row'].iloc[0]}: "
                f"{result.failures['message'].iloc[0]}. See .result.failures.",
                result,
            )
        return result

    def _attempt(self, job: Job, plan: Plan, existing: TableSchema | None) -> tuple[Tally, bool, Plan]:
        """One try of the whole call in one transaction; returns (the tally, committed, the plan used)."""
        backend = job.backend
        tally = Tally()
        single = job.single
        try:
            with Progress(None if single is None else len(single), f"{job.operation} {job.table}", job.progress) as bar:
                with backend.transaction():
                    plan = self.claim(job, plan, existing)
                    if plan.create:
                        backend.drop(job.table)
                        backend.create(job.table, plan.schema)
                    elif plan.schema_changed:
                        self._alter(job, plan)
                    added = list(plan.added)
                    resolver = self.journal(job, plan)
                    seen = None if single is not None or not plan.schema.key else keys.KeySet()
                    for n, df in enumerate(job.frames):
                        if n and plan.mode != "delete":  # a later frame of a stream must fit the table too
                            plan = self._refit(job, plan, df)
                            added += plan.added
                        failures = self.validate(df, plan.schema.key, seen, tally.total)
                        if job.checks is not None or job.kept is not None:
                            failures = self.check(job, df) | failures

                        def done(rows: int, failures: Failures = failures) -> None:
                            bar.update(rows, tally.failed + len(failures))

                        changed = self.write_frame(job, plan, df, failures, done=done)
                        tally.add(n, df, failures, changed, plan.schema.key)
                        if resolver is not None:
                            resolver.see(df, failures)
                    tally.within_budget = within_budget(job, tally)
                    if job.dry_run or (tally.failed and job.errors == "raise") or tally.within_budget is False:
                        raise _Abort
                    self.keep(job, plan, tally, resolver)
        except _Abort:
            tally.added = added
            return tally, False, plan
        tally.added = added
        return tally, True, plan

    @staticmethod
    def check(job: Job, df: pd.DataFrame) -> Failures:
        """The rows of `df` that fail the table's checks or the call's (validate=); the frame failing as a
        whole raises."""
        out: Failures = {}
        for schema in (job.kept, job.checks):
            if schema is not None:
                out = checks.failures(schema, df, job.table, job.operation != "save") | out
        return out

    @staticmethod
    def journal(job: Job, plan: Plan) -> quarantine.Resolver | None:
        """In the call's transaction, before its rows: the undo table made ready (undoable=True), and the
        quarantined keys of the table read, to remove those this call writes (None on a dry run)."""
        if job.dry_run:
            return None
        if plan.create:  # a table made anew: the images of the rows it held before are of no use
            job.backend.drop(companions.name(job.table, companions.UNDO))
        if job.undoable:
            if not plan.schema.key:
                raise KeyRequiredError(
                    f"undoable=True puts rows back by key, and this call on {job.table!r} has none; "
                    f"pass key= (the columns that identify a row)"
                )
            job.undo = images.ensure(job.backend, job.table, plan.schema)
        return quarantine.Resolver(job.backend, job.table, plan.schema.key)

    def keep(self, job: Job, plan: Plan, tally: Tally, resolver: quarantine.Resolver | None) -> None:
        """Last in the call's transaction: its failed rows into the quarantine (quarantine=True), the keys it
        wrote out of it, and its row in the batch log."""
        backend, table, key = job.backend, job.table, plan.schema.key
        if job.quarantine and tally.failed:
            failed = tally.failed_rows() if job.single is None else job.single.iloc[sorted(tally.failures)]
            report = failures_frame(failed, key, tally.failures, None)
            tally.quarantined = quarantine.put(backend, table, job.batch_id, report, failed)
        if resolver is not None:
            resolver.finish(job.batch_id)
        counts = (tally.total, tally.total - tally.failed, tally.failed)
        batchlog.record(backend, table, job.batch_id, job.operation, counts, tally.quarantined, job.undoable, key)

    @staticmethod
    def claim(job: Job, plan: Plan, existing: TableSchema | None) -> Plan:
        """First in the call's transaction: hold the table against other writers, and plan again if another
        writer changed it since `existing` was read."""
        job.backend.claim(job.table)
        now = job.backend.schema(job.table)
        if now != existing:
            plan, job.kept = job.plan(now), checks.kept(now)
        if now is not None and plan.schema.checks != now.checks:  # the table keeps its checks, even replaced
            plan = replace(plan, schema=replace(plan.schema, checks=now.checks))
        return plan

    def _refit(self, job: Job, plan: Plan, df: pd.DataFrame) -> Plan:
        schema, changed, added = self.mapper.fit(df, plan.schema, job.table, job.new_columns)
        if not changed:
            return replace(plan, added=())
        plan = replace(plan, schema=schema, added=tuple(added))
        self._alter(job, plan)
        return plan

    @staticmethod
    def _alter(job: Job, plan: Plan) -> None:
        """Add the plan's new columns and store its schema, inside the call's transaction."""
        if plan.added:
            job.backend.add_columns(job.table, list(plan.added))
        job.backend.set_schema(
            job.table, replace(plan.schema, key=None, loose=False) if plan.schema.loose else plan.schema
        )

    # -- one frame, a chunk at a time ----------------------------------------------------
    def write_frame(
        self,
        job: Job,
        plan: Plan,
        df: pd.DataFrame,
        failures: Failures,
        put: Put | None = None,
        done: Callable[[int], None] | None = None,
    ) -> list[pd.DataFrame]:
        """Convert and write `df` chunk by chunk (through `put` when given), leaving out the rows that have
        failed already; with change tracking, what each chunk changed. `done(rows)` after each chunk."""
        per_chunk = job.chunksize or job.backend.chunk_rows(len(plan.schema.columns))
        changed = []
        for lo in range(0, len(df), per_chunk):
            hi = min(len(df), lo + per_chunk)
            rows = np.arange(lo, hi)
            if failures:
                rows = rows[~np.isin(rows, np.fromiter(failures, dtype=np.int64))]
            tracked = self._chunk(job, plan, df, rows, failures, put)
            if tracked is not None:
                changed.append(tracked)
            if done is not None:
                done(hi - lo)
        return changed

    def _chunk(
        self, job: Job, plan: Plan, df: pd.DataFrame, rows: np.ndarray, failures: Failures, put: Put | None = None
    ) -> pd.DataFrame | None:
        """Convert and write the rows `rows` of `df` (through `put` when given, else into the table); with
        change tracking, what each written row changed."""
        if len(rows) == 0:
            return None
        contiguous = rows[-1] - rows[0] + 1 == len(rows)
        part = df.iloc[rows[0] : rows[-1] + 1] if contiguous else df.iloc[rows]
        if plan.mode == "delete":
            if plan.schema.key is None:
                raise InternalError("rows are deleted by key")
            data, bad = self.mapper.to_arrow(keys.key_frame(part, plan.schema.key), key_schema(plan.schema))
        else:
            # A default range index says nothing when updating rows, but labels the rows it inserts.
            with_index = plan.mode == "insert" or not is_default_index(df.index)
            data, bad = self.mapper.to_arrow(part, plan.schema, with_index, job.backend.accepts_dictionary)
        rows = _drop(rows, bad, failures)
        data, facts = job.backend.prepare(data, plan.schema)
        rows = _drop(rows, unholdable(facts), failures)
        if plan.schema.loose:  # key= on a table without a key of its own: it must pick out one row
            several = ambiguous(
                data, plan.schema.key or [], changes.repeated_keys(job.backend, job.table, plan.schema, data)
            )
            data, rows = without_rows(data, list(several)), _drop(rows, several, failures)
        tracked = stored = in_store = None
        key, mode = plan.schema.key, plan.mode
        undo = job.undo is not None and put is None
        tracking = job.track or job.dry_run
        if undo and not tracking and mode != "insert" and isinstance(job.backend, StoreImages) and key:
            in_store = self._images(job, plan, data)  # the store copies them: nothing read here
            undo = False
        elif (tracking or undo) and key and mode in ("upsert", "update") and not plan.create:
            stored = changes.stored_rows(job.backend, job.table, plan.schema, data)  # one read serves both
        elif undo and mode == "delete":
            stored = changes.stored_rows(job.backend, job.table, plan.schema, data, plan.schema.names)
        if tracking:
            tracked = changes.diff(data, stored, key, mode)
            tracked.insert(0, "row", rows)
        self._write(job, plan, data, rows, failures, put, in_store)
        ok = ~np.isin(rows, np.fromiter(failures, dtype=np.int64)) if failures else None
        if tracked is not None and ok is not None:
            tracked = tracked[ok]
        if undo and job.undo is not None and key:
            written = data if ok is None else data.filter(pa.array(ok))
            kept = images.images(job.batch_id, plan.schema, key, mode, written, stored)
            images.keep(job.backend, job.table, job.undo, kept)
        return tracked

    @staticmethod
    def _images(job: Job, plan: Plan, data: pa.Table) -> Images:
        """What a store that copies before-images itself needs to know of a chunk (capabilities.StoreImages)."""
        if job.undo is None:
            raise InternalError("before-images go into an undo table")
        return images.for_store(job.table, job.undo, job.batch_id, plan.mode, data, plan.schema.names)

    def _write(
        self,
        job: Job,
        plan: Plan,
        data: pa.Table,
        rows: np.ndarray,
        failures: Failures,
        put: Put | None = None,
        kept: Images | None = None,
    ) -> None:
        """Write `data`, each part in a savepoint, halving any part the store refuses until the rows at
        fault stand alone; the rows a write leaves out (by key) are classified from what it found. With
        `kept`, the store copies each part's before-images as it writes it."""
        backend, table, schema, mode = job.backend, job.table, plan.schema, plan.mode

        def attempt(lo: int, hi: int) -> None:
            part = data.slice(lo, hi - lo)
            existed: np.ndarray | None
            with backend.savepoint():
                if kept is not None and isinstance(backend, StoreImages):
                    existed = backend.write_imaged(table, part, schema, mode, kept.slice(lo, hi - lo))
                elif put is not None:
                    existed = put(part, rows[lo:hi])
                elif mode == "delete":
                    existed = backend.delete(table, part, schema)
                else:
                    existed = backend.write(table, part, schema, mode)
            for i, f in classify(part, schema, mode, existed).items():
                failures[int(rows[lo + i])] = f

        def failed(i: int, e: WriteError) -> None:
            failures[int(rows[i])] = RowFailure(Stage.WRITE, RowError(e.error), str(e), e.code)

        bisect(data.num_rows, attempt, failed, (WriteError,))

    @staticmethod
    def validate(df: pd.DataFrame, key: list[str] | None, seen: keys.KeySet | None, offset: int) -> Failures:
        """Null and repeated keys; with `seen` (a stream), also keys of earlier frames (rows from `offset` on)."""
        if not key:
            return {}
        kf = keys.key_frame(df, key)
        null, dup = keys.invalid_rows(kf)
        out = validate(kf, null, dup, None if seen is None else offset)
        if seen is not None:
            valid = np.ones(len(kf), dtype=bool)  # a mask, not setdiff1d: that hashes every position
            valid[null], valid[dup] = False, False
            fresh = np.flatnonzero(valid)
            earlier = seen.add(kf if len(fresh) == len(kf) else kf.iloc[fresh], offset + fresh)
            out.update(repeated(kf, fresh[earlier >= 0], earlier[earlier >= 0]))
        return out


class Tally:
    """The rows of a call so far: how many, which failed (by position in the whole input) and those rows."""

    def __init__(self):
        self.total = 0
        self.failures: Failures = {}
        self.partition: dict[int, int] = {}  # failed row -> the number of its frame in the stream
        self._failed: list[pd.DataFrame] = []
        self._changes: list[pd.DataFrame] = []
        self.added: list[Column] = []
        self.quarantined = 0  # rows kept in the quarantine
        self.within_budget: bool | None = None  # None: the call set no error budget

    @property
    def failed(self) -> int:
        return len(self.failures)

    def add(self, n: int, df: pd.DataFrame, failures: Failures, changed: list[pd.DataFrame], key) -> None:
        if changed:
            c = pd.concat(changed, ignore_index=True) if len(changed) > 1 else changed[0].reset_index(drop=True)
            at = c["row"].to_numpy(dtype=np.int64)
            c.insert(1, "index", pd.Series(df.index[at].tolist(), dtype=object))
            c.insert(2, "key", pd.Series(keys.key_labels(df, key, at), dtype=object))
            c["row"] = at + self.total
            self._changes.append(c)
        positions = np.array(sorted(failures), dtype=np.int64)
        self.add_failed(n, len(df), failures, df.iloc[positions])

    def add_failed(self, n: int, rows: int, failures: Failures, failed: pd.DataFrame) -> None:
        """Frame `n` of the stream, of `rows` rows: its failures by position in it, and those rows, in order."""
        if failures:
            self.failures.update({self.total + int(p): failures[int(p)] for p in sorted(failures)})
            self.partition.update({self.total + int(p): n for p in failures})
            self._failed.append(failed)
        elif not self._failed:
            self._failed.append(failed.iloc[:0])  # keeps the columns and dtypes of an empty report
        self.total += rows

    def changes(self) -> pd.DataFrame:
        if not self._changes:
            return changes.empty()
        out = pd.concat(self._changes, ignore_index=True) if len(self._changes) > 1 else self._changes[0]
        return out.sort_values("row", kind="stable", ignore_index=True)

    def failed_rows(self) -> pd.DataFrame | None:
        parts = [p for p in self._failed if len(p)] or self._failed[:1]
        return pd.concat(parts) if len(parts) > 1 else (parts[0] if parts else None)


def _drop(rows: np.ndarray, bad: Failures, failures: Failures) -> np.ndarray:
    """Record failures of chunk positions and return the rows left, in order."""
    if not bad:
        return rows
    for i, f in bad.items():
        failures[int(rows[i])] = f
    keep = np.ones(len(rows), dtype=bool)
    keep[list(bad)] = False
    return rows[keep]


def key_schema(schema: TableSchema) -> TableSchema:
    if schema.key is None:
        raise InternalError("rows are deleted by key")
    return TableSchema(columns=[schema.column(k) for k in schema.key], key=schema.key)
