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

    Attributes:
        operation: `"save"`, `"update_batch"` or `"delete"`.
        table: The table written.
        url: The store's URL (password masked).
        key: The key columns the rows were matched by (None: no key).
        total: Rows in the input (across every frame of a stream).
        succeeded: Rows written (`total - failed`).
        failed: Rows that failed.
        failures: A DataFrame, one row per failed input row: `row` (its position in the input), `index`
            (its index label), `key`, `stage` (`validate`, `convert`, `write`, `missing`), `error` (the error
            class), `message`, `code` (the store's own code, e.g. a SQLSTATE, or None); streams and Dask add
            `partition`.
        elapsed: Seconds the call took.
        committed: Whether the call's writes were committed (False for a dry run, and for errors="raise"
            with failures).
        dry_run: Whether this was a dry run (nothing written; `commit()` runs it for real).
        changes: With a dry run or track_changes=True: a DataFrame, one row per written row (`row`,
            `index`, `key`, `action`, and for updates `changed`, `before`, `after`); else None.
        added: The columns this call added to the table (new_columns="add"): {label: dtype}.
        version: The table version the call created, on stores that keep history (delta://); else None.
        batch_id: The call's id in the table's batch log (`store.batches(table)`), for `dk.undo` and
            `dk.quarantined`; a dry run has one too, though nothing was logged.
        quarantined: Rows this call kept in the table's quarantine (quarantine=True).
        within_budget: With max_errors= or max_error_rate=: whether the failures stayed within them (a dry
            run says whether they would); else None.
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
        changes: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
        dry_run: bool = False,
        added: dict | None = None,
        version: int | None = None,
        batch_id: str | None = None,
        report: pd.DataFrame | None = None,
        quarantined: int = 0,
        within_budget: bool | None = None,
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
        self.failed = len(failures) if report is None else len(report)
        self.succeeded = self.total - self.failed
        self.elapsed = elapsed
        self.committed = committed
        self._frame = frame  # the input when it was one frame (a reference, never copied), for the report
        self._failed_rows = failed_rows  # the failed input rows, in the order of their positions
        self.failures = failures_frame(failed_rows, key, failures, partition) if report is None else report
        self.dry_run = dry_run
        self.added = added or {}  # columns this call added to the table: {label: dtype}
        self._commit: Callable[[], BatchResult] | None = None  # a dry run's call, for commit()
        self.version = version  # the table version this call created, on stores that keep history
        self.batch_id = batch_id
        self.quarantined = quarantined
        self.within_budget = within_budget
        # One row per written row: action, changed columns, before/after (None: not tracked). A callable makes
        # it when first read (dk.undo's: a diff of every row it put back, which a pipeline seldom reads).
        self._changes = changes

    @property
    def changes(self) -> pd.DataFrame | None:
        """What each written row changed (see the class's attributes)."""
        if callable(self._changes):
            self._changes = self._changes()
        return self._changes

    def commit(self) -> BatchResult:
        """Run a dry run's call for real: the same frame, store, table and options.

        The table may have changed since the dry run: the real call decides again and reports what it did.

        Returns:
            The real call's report.

        Raises:
            InvalidArgumentError: This was not a dry run, or its input was a one-shot stream of frames
                (read once already).
        """
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
        """True when no row failed (`failed == 0`)."""
        return self.failed == 0

    @property
    def rows_per_second(self) -> float:
        """Input rows per second of the call (`total / elapsed`)."""
        return self.total / self.elapsed if self.elapsed > 0 else float("inf")

    def failed_rows(self) -> pd.DataFrame:
        """The failed input rows themselves, ready to fix and resubmit.

        Returns:
            A DataFrame with the input's columns, index and dtypes, one row per failure in input order
                (empty when nothing failed).
        """
        if self._failed_rows is None:
            return pd.DataFrame()
        return self._failed_rows

    def summary(self, changes: bool = True) -> pd.DataFrame:
        """Failures counted by stage and error, and the written rows counted by action.

        Args:
            changes: With tracked changes (a dry run, or track_changes=True), also count the written rows
                by action (`insert`, `update`, `unchanged`, `delete`) under stage "written" ("dry run":
                nothing was written). False: the failures alone.

        Returns:
            A DataFrame: `stage`, `error`, `rows` (and `action` when changes are counted).
        """
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
        if self.operation == "quarantined":
            return f"quarantine of {self.table!r}: {self.failed:,} rows still owed"
        verb = {"save": "saved", "update_batch": "updated", "delete": "deleted", "undo": "put back"}.get(
            self.operation, "written"
        )
        held = "over the error budget" if self.within_budget is False else "errors='raise'"
        tail = (
            " (dry run: nothing written)" if self.dry_run else ("" if self.committed else f" ({held}: nothing written)")
        )
        if self.quarantined:
            tail += f"; {self.quarantined:,} quarantined"
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
