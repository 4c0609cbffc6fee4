"""Error budgets: max_errors= and max_error_rate=, over which a call writes nothing (nor quarantines)."""

from __future__ import annotations


def within_budget(job, tally) -> bool | None:
    """Whether the call's failures stay within max_errors= and max_error_rate= (None: it set neither)."""
    if job.max_errors is None and job.max_error_rate is None:
        return None
    if job.max_errors is not None and tally.failed > job.max_errors:
        return False
    return not (job.max_error_rate is not None and tally.total and tally.failed / tally.total > job.max_error_rate)


def describe(job) -> str:
    parts = [f"max_errors={job.max_errors}"] if job.max_errors is not None else []
    return ", ".join(parts + ([f"max_error_rate={job.max_error_rate}"] if job.max_error_rate is not None else []))
