"""BatchResult: what a write did, row by row, and the failed rows handed back."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import RowFailure
from .keys import key_labels

FAILURE_COLUMNS = ["row", "index", "key", "stage", "error", "message", "code"]


class BatchResult:
    """The report of one save / update_batch / delete call.

    `succeeded + failed == total` always. With errors="raise" and failures, `committed` is
    False: nothing was written, and `failures` lists the rows at fault.
    """

    def __init__(
        self, *, operation: str, table: str, url: str, frame: pd.DataFrame, key: list[str] | None,
        failures: dict[int, RowFailure], elapsed: float, committed: bool = True,
    ):
        self.operation = operation
        self.table = table
        self.url = url
        self.key = key
        self.total = len(frame)
        self.failed = len(failures)
        self.succeeded = self.total - self.failed
        self.elapsed = elapsed
        self.committed = committed
        self._frame = frame  # a reference, for failed_rows(); never copied
        self.failures = _failures_frame(frame, key, failures)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    @property
    def rows_per_second(self) -> float:
        return self.total / self.elapsed if self.elapsed > 0 else float("inf")

    def failed_rows(self) -> pd.DataFrame:
        """The failed input rows themselves (same index and dtypes), ready to fix and resubmit."""
        return self._frame.iloc[np.unique(self.failures["row"].to_numpy(dtype=np.int64))]

    def summary(self) -> pd.DataFrame:
        """Failures counted by stage and error."""
        f = self.failures
        if f.empty:
            return pd.DataFrame({"stage": [], "error": [], "rows": []}).astype({"rows": "int64"})
        return f.groupby(["stage", "error"], sort=True).size().rename("rows").reset_index()

    def __str__(self) -> str:
        verb = {"save": "saved", "update_batch": "updated", "delete": "deleted"}.get(self.operation, "written")
        tail = "" if self.committed else " (errors='raise': nothing written)"
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


def _failures_frame(frame: pd.DataFrame, key, failures: dict[int, RowFailure]) -> pd.DataFrame:
    rows = np.array(sorted(failures), dtype=np.int64)
    fs = [failures[r] for r in rows]
    labels = frame.index[rows].tolist() if len(rows) else []
    return pd.DataFrame(
        {
            "row": rows,
            "index": pd.Series(labels, dtype=object),
            "key": pd.Series(key_labels(frame, key, rows), dtype=object),
            "stage": pd.Series([f.stage for f in fs], dtype=object),
            "error": pd.Series([f.error for f in fs], dtype=object),
            "message": pd.Series([f.message for f in fs], dtype=object),
            "code": pd.Series([f.code for f in fs], dtype=object),
        },
        columns=FAILURE_COLUMNS,
    )
