"""A new table loaded by many writers at once: the partitions of a Dask DataFrame written in parallel
into a table aside, which one commit at the driver swaps in.

A save that creates (or replaces) a keyed table, from a source of partitions that runs work where
they are computed (dask.Partitions), on a store that can take rows from many writers
(capabilities.ParallelLoad: PostgreSQL, a COPY stream per worker into a table aside; the file stores, part
files put by the workers; Delta, files written by delta-rs on the workers, one commit listing them):

- each partition's writer (a Dask task, retried by Dask when its worker dies) converts, checks (keys, and
  the pandera schemas of validate= and of the table) and writes its rows with the engine's own chunk writer (row isolation, exact dtypes), in one
  transaction of its own that first removes what an earlier try of the partition wrote: a retry
  never writes a row twice. It leaves out rows with a missing or repeated key, and sends back only
  the keys of its rows, its failures and the rows that failed;
- the driver checks the keys across partitions in partition order (a key an earlier partition holds
  fails at `validate`, as in one frame: the keys of the partitions so far, about 20 bytes a row),
  takes those rows out of the table aside, and in the call's transaction drops the old table and
  swaps the new one in (its primary key is built there, once). `errors="raise"` with a failure
  swaps nothing in, and the table aside is always dropped.

Anything else (a later partition that does not fit the first's schema, a dry run, change tracking,
a write into an existing table, a keyless table) goes through the one writer (batch.BatchWriter).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from . import keys
from .backends.capabilities import ParallelLoad
from .errors import DataKnobsError, InternalError
from .failures import Failures
from .progress import Progress

if TYPE_CHECKING:
    from .batch import BatchWriter, Job
    from .result import BatchResult


@runtime_checkable
class Source(Protocol):
    """Partitions that run work where they are computed."""

    def on_workers(self, fn: Callable, *args) -> Iterator:
        """fn(partition, its number, *args) for every partition, computed by workers; results in order."""


@dataclass
class Part:
    """What a partition's writer sends back: no rows but those that failed."""

    rows: int = 0
    keys: pd.DataFrame | None = None  # the key of every row, for the checks across partitions
    failures: Failures = field(default_factory=dict)  # by position in the partition (the driver rewords the keys')
    failed: pd.DataFrame | None = None  # the rows it left out (failures, missing or repeated keys), in order
    left_out: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # their positions
    index: pd.RangeIndex | None = None  # the partition's default index (not stored, so not read back)
    misfit: bool = False  # it does not fit the first partition's schema: the one writer must write it


def save(writer: BatchWriter, job: Job, source: Source, address: tuple[str, dict]) -> BatchResult | None:
    """Run a save that creates `job.table` through writers in parallel, the partitions of `source` each
    written by the process that computes it (opening the store at `address`): the call's report, or None
    when this call cannot be run so (the caller then writes it with the one writer)."""
    from .batch import Tally, key_schema

    start = time.perf_counter()
    existing, plan = writer.plan(job)
    schema, backend = plan.schema, job.backend
    if (
        not isinstance(backend, ParallelLoad)
        or job.operation != "save"
        or not plan.create
        or not schema.key
        or job.dry_run
        or job.track
        or job.undoable
    ):
        return None
    aside = backend.open_aside(job.table, schema)
    if aside is None:
        return None
    from . import quarantine
    from .budget import within_budget

    resolver = quarantine.Resolver(backend, job.table, schema.key)  # what the quarantine holds, read once
    try:
        tally, seen = Tally(), keys.KeySet()
        with Progress(None, f"{job.operation} {job.table}", job.progress) as bar:
            checks = (job.kept, job.checks)  # the table's pandera schema and the call's, checked on the workers
            parts = source.on_workers(write_part, address, aside, job.table, schema, job.chunksize, checks)
            for n, part in enumerate(parts):
                if part.misfit:
                    return None
                failures = writer.validate(part.keys, schema.key, seen, tally.total)
                failed = part.failed
                taken = np.setdiff1d(np.fromiter(failures, dtype=np.int64), part.left_out)
                if len(taken):  # keys an earlier partition holds: out of the table, into the report
                    kf, _ = writer.mapper.to_arrow(part.keys.iloc[taken], key_schema(schema), False)
                    rows = writer.mapper.to_pandas(backend.take_aside(aside, schema, n, taken, kf), schema)
                    if part.index is not None:  # a default index is not stored: the rows' labels in the frame
                        rows.index = part.index[taken]
                    at = np.concatenate([part.left_out, taken])
                    failed = pd.concat([failed, rows]).iloc[np.argsort(at, kind="stable")]
                for i, f in part.failures.items():  # a key failing `validate`: as the one writer words it
                    failures.setdefault(i, f)
                tally.add_failed(n, part.rows, failures, failed)
                resolver.see(part.keys, failures)
                bar.update(part.rows, tally.failed)
        tally.within_budget = within_budget(job, tally)
        committed = not (tally.failed and job.errors == "raise") and tally.within_budget is not False
        if committed:
            with backend.transaction():
                claimed = writer.claim(job, plan, existing)
                if not claimed.create:
                    return None  # another writer made the table meanwhile, and this call appends to it: one writer does
                backend.drop(job.table)
                backend.swap_in(aside, job.table, replace(schema, checks=claimed.schema.checks))  # the table's own
                writer.journal(job, plan)  # the undo images of the table replaced go
                writer.keep(job, plan, tally, resolver)  # its quarantine, the keys it wrote, its row in the log
    finally:
        backend.drop_aside(aside)
    return writer.result(job, plan, tally, committed, start)


def write_part(
    df: pd.DataFrame, n: int, address: tuple, aside: str, table: str, schema, chunksize, checks: tuple = (None, None)
) -> Part:
    """On a worker: convert, check and write partition `n` into the table aside, in one transaction
    that first removes what an earlier try of it wrote. `checks`: the pandera schemas its rows must pass
    (the table's and the call's validate=; checks.py)."""
    from .batch import BatchWriter, Job, Plan
    from .store import pooled
    from .types import TypeMapper

    mapper = TypeMapper()
    try:
        _, changed, _ = mapper.fit(df, schema, table, "fail")
    except DataKnobsError:
        changed = True
    if changed:  # new columns or categories: the table's schema changes, which only the one writer does
        return Part(misfit=True)
    backend = pooled(address[0], **address[1]).backend
    if not isinstance(backend, ParallelLoad):
        raise InternalError(f"{backend.url} cannot load a table in parallel")
    plan = Plan(schema, "insert", create=True)
    job = Job("save", backend, backend.url, table, [df], lambda _: plan, chunksize=chunksize)
    job.kept, job.checks = checks
    writer = BatchWriter(mapper)
    # Rows with a missing or repeated key are left out here; the driver words their failures (their rows
    # in the whole frame), and its words win over these. So are rows that fail a check.
    failures = writer.validate(df, schema.key, None, 0)
    if job.kept is not None or job.checks is not None:
        failures = writer.check(job, df) | failures

    def put(data, rows):
        backend.write_aside(aside, n, data, schema, rows)

    with backend.transaction():
        backend.clear_aside(aside, n, schema)
        writer.write_frame(job, plan, df, failures, put)
    left_out = np.array(sorted(failures), dtype=np.int64)
    index = df.index if not schema.index_columns and isinstance(df.index, pd.RangeIndex) else None
    return Part(len(df), keys.key_frame(df, schema.key), failures, df.iloc[left_out], left_out, index)
