"""BatchResult: what a write did, row by row, and the failed rows handed back."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from .changes import ACTIONS
from .errors import InvalidArgumentError
from .failures import Failures, failures_frame


class BatchResult:
    """The report of one save / update_batch / delete call.

    `succeeded + failed == total` always. With errors="raise" and failures, `committed` is
    False: nothing was written, and `failures` lists the rows at fault.
    """

    def __init__(
        self,
        *,
        operation: str,
        table: str,
        url: str,
        key: list[str] | None,
        failures: Failures,
        elapsed: float,
        committed: bool = True,
        frame: pd.DataFrame | None = None,
        total: int | None = None,
        failed_rows: pd.DataFrame | None = None,
        partition: dict[int, int] | None = None,
        changes: pd.DataFrame | None = None,
        dry_run: bool = False,
        added: dict | None = None,
        version: int | None = None,
    ):
        """`frame` is the input when it was one frame; a stream gives `total` and `failed_rows` instead
        (the failed input rows, in the order of their positions), and `partition`, the number of the
        frame (or Dask partition) of each failed row, shown as the failures' `partition` column."""
        if frame is not None:
            total = len(frame)
            failed_rows = frame.iloc[np.array(sorted(failures), dtype=np.int64)]
        elif total is None:
            raise TypeError("BatchResult needs frame= or total=")
        self.operation = operation
        self.table = table
        self.url = url
        self.key = key
        self.total = total
        self.failed = len(failures)
        self.succeeded = self.total - self.failed
        self.elapsed = elapsed
        self.committed = committed
        self._frame = frame  # the input when it was one frame (a reference, never copied), for the report
        self._failed_rows = failed_rows  # the failed input rows, in the order of their positions
        self.failures = failures_frame(failed_rows, key, failures, partition)
        self.dry_run = dry_run
        self.added = added or {}  # columns this call added to the table: {label: dtype}
        self._commit: Callable[[], BatchResult] | None = None  # a dry run's call, for commit()
        self.version = version  # the table version this call created, on stores that keep history
        self.changes = changes  # one row per written row: action, changed columns, before/after (None: not tracked)

    def commit(self) -> BatchResult:
        """Run a dry run's call for real (the same frame, store, table and options); returns its report.

        The table may have changed since the dry run: the real call decides again and reports what it did."""
        if not self.dry_run:
            raise InvalidArgumentError("commit() runs a dry run for real; this call was not a dry run")
        if self._commit is None:
            raise InvalidArgumentError(
                "this dry run read a one-shot stream of frames, which cannot be read again; "
                "run the call again without dry_run=True"
            )
        return self._commit()

    @property
    def ok(self) -> bool:
        return self.failed == 0

    @property
    def rows_per_second(self) -> float:
        return self.total / self.elapsed if self.elapsed > 0 else float("inf")

    def failed_rows(self) -> pd.DataFrame:
        """The failed input rows themselves (same index and dtypes), ready to fix and resubmit."""
        if self._failed_rows is None:
            return pd.DataFrame()
        return self._failed_rows

    def summary(self, changes: bool = True) -> pd.DataFrame:
        """Failures counted by stage and error; with tracked changes (a dry run, track_changes=True) also
        the written rows counted by action (stage "written", or "dry run": nothing was written)."""
        f = self.failures
        if f.empty:
            out = pd.DataFrame({"stage": [], "error": [], "rows": []}).astype({"rows": "int64"})
        else:
            out = f.groupby(["stage", "error"], sort=True).size().rename("rows").reset_index()
        if not changes or self.changes is None:
            return out
        counts = self.changes["action"].value_counts()
        stage = "dry run" if self.dry_run else "written"
        acts = pd.DataFrame(
            {
                "stage": stage,
                "error": None,
                "action": [a for a in ACTIONS if a in counts],
                "rows": [int(counts[a]) for a in ACTIONS if a in counts],
            }
        )
        out["action"] = None
        return pd.concat([out, acts], ignore_index=True)[["stage", "error", "action", "rows"]]

    def __str__(self) -> str:
        verb = {"save": "saved", "update_batch": "updated", "delete": "deleted"}.get(self.operation, "written")
        tail = (
            " (dry run: nothing written)"
            if self.dry_run
            else ("" if self.committed else " (errors='raise': nothing written)")
        )
        if self.version is not None:
            tail += f" (version {self.version})"
        if self.added:
            tail += "; added column(s) " + ", ".join(f"{k!r} ({v})" for k, v in self.added.items())
        return (
            f"{self.operation} {self.table!r}: {self.total:,} rows, {self.succeeded:,} {verb}, "
            f"{self.failed:,} failed in {self.elapsed:.2f}s{tail}"
        )

    def __repr__(self) -> str:
        return f"<BatchResult {self}>"

    def _repr_html_(self) -> str:
        from .widgets import render_html

        return render_html(self)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """In Jupyter: the live report widget, with static HTML and text for viewers without a kernel."""
        from .widgets import mimebundle

        return mimebundle(self)
