"""The backend contract, property-based: random frames of random dtypes written into tables of random
column types, by `save`, append, upsert, replace and `update_batch`.

Each example saves a base frame (an `id` key, int64, and one to four columns of the dtypes of API.md's
Types list), then writes a second frame into that table whose columns may be of the column's own dtype,
of another dtype, or dirty object columns mixing values of every kind (fractions and NaN into integers,
strings into numbers, numbers into strings and categories, 2 and -1 into bools, timestamps with a time
into dates, naive timestamps into tz-aware columns, ...). The examples are drawn in strategies.py (the
column kinds in kinds.py, one example and the code that remakes it in case.py); the oracle, in oracle.py, is
written on its own (it does not call the package's conversion rules):

- the base save is a round trip: every row comes back exactly (values and dtypes), or failed at
  `convert` (a value the store cannot hold);
- every row of the second call is either reported failed, at a stage that fits (a key the table has on
  append: `write`/KeyConflict; a key it lacks on update_batch: `missing`), or reads back equal to what
  was sent, as a pandas user means equal (NaN equals NaN, a midnight timestamp equals its date, 0/1 and
  "true"/"false"/"0"/"1" are booleans, a number equals the same number in another numeric type, a
  string spelling a number exactly equals that number); columns it did not send keep their values
  (updates) or are missing (inserts);
- a row refused although every value it sent is one the rules promise to write (a number into a numeric
  column that holds it exactly, a string into a string column, 0/1 into a bool, a date into a date
  column, ...) is a bug too, unless the store cannot hold the value at all (a fresh table of the
  column's dtype refuses it as well);
- rows the call did not write are unchanged, the table keeps its columns and dtypes (unordered
  categories may grow), and the counts add up;
- nothing raises but an `UnsupportedDtypeError` or `SchemaMismatchError` for a whole column, after
  which the table is as it was.

The number of examples comes from the hypothesis profile loaded (tests/conftest.py registers "ci",
small and deterministic, and "long"; HYPOTHESIS_PROFILE picks one). Needs hypothesis.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pandas as pd
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk

try:
    from hypothesis import HealthCheck, event, given, note, settings

    from .strategies import cases
except ImportError:  # pragma: no cover - the contract runs without this part
    cases = None  # type: ignore[assignment]

from .case import Case, id_frame
from .kinds import REQUIRED
from .oracle import listed, missing, promised, same, typed_column, user_equal

ALLOWED_STAGES = {"convert", "validate", "missing", "write"}
WHOLE_CALL_ERRORS = (dk.UnsupportedDtypeError, dk.SchemaMismatchError)  # a dtype the column cannot take


def _call(case: Case, store, table: str):
    if case.mode == "update":
        return case.frame.dk.update_batch(store, table)
    if case.mode == "update_insert":
        return case.frame.dk.update_batch(store, table, insert_missing=True)
    return case.frame.dk.save(store, table, if_exists=case.mode)


def _rows(df: pd.DataFrame) -> dict[int, dict[str, Any]]:
    """{key: {column: value}} of a frame with an `id` column."""
    cols = {c: listed(df[c]) for c in df.columns}
    return {int(k): {c: cols[c][i] for c in df.columns} for i, k in enumerate(cols["id"])}


def _failures(res) -> dict[int, dict[str, Any]]:
    return {int(r["row"]): r for r in res.failures.to_dict("records")}


def _dtypes_kept(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    out = []
    if list(after.columns) != list(before.columns):
        return [f"the table's columns changed: {list(before.columns)} -> {list(after.columns)}"]
    for c in before.columns:
        b, a = before[c].dtype, after[c].dtype
        if isinstance(b, pd.CategoricalDtype) and isinstance(a, pd.CategoricalDtype):
            grown = not b.ordered and list(a.categories[: len(b.categories)]) == list(b.categories)
            if a.ordered != b.ordered or (a != b and not grown) or a.categories.dtype != b.categories.dtype:
                out.append(
                    f"column {c!r}: dtype {b} (categories {list(b.categories)}) became {a} ({list(a.categories)})"
                )
        elif a != b:
            out.append(f"column {c!r}: dtype {b} became {a}")
    return out


def run_case(store, case: Case) -> list[str]:
    """Run one example on `store`; the rules it breaks, each said in a sentence (empty: none)."""
    table = f"prop_{uuid.uuid4().hex[:12]}"
    problems: list[str] = []
    try:
        res0 = case.base.dk.save(store, table)
    except WHOLE_CALL_ERRORS as e:  # the store takes no column of this dtype (the round-trip contract's concern)
        event(f"base refused: {type(e).__name__}")
        return []
    base_failed = _failures(res0)
    for r, f in base_failed.items():
        if f["stage"] != "convert":
            problems.append(f"base save: row {r} failed at {f['stage']} ({f['error']}: {f['message']})")
    before = dk.load(store, table)
    kept = case.base.drop(index=list(base_failed)).sort_values("id").reset_index(drop=True)
    try:
        assert_frame_equal(before, kept, check_dtype=True)
    except AssertionError as e:
        return problems + [f"base save does not round trip: {e}"]
    if problems:
        return problems

    frame = case.frame
    try:
        res = _call(case, store, table)
    except WHOLE_CALL_ERRORS as e:
        event(f"whole call refused: {type(e).__name__}")
        note(f"refused: {type(e).__name__}: {e}")
        after = dk.load(store, table)
        try:
            assert_frame_equal(after, before, check_dtype=True)
        except AssertionError as err:
            problems.append(f"{type(e).__name__} was raised, but the table changed: {err}")
        return problems
    except dk.DataKnobsError as e:
        return [f"the call raised {type(e).__name__}: {e}"]

    fails = _failures(res)
    note(f"failures:\n{res.failures.to_string()}")
    event(f"{case.mode}: {'some rows failed' if fails else 'all written'}")
    if res.total != len(frame) or res.succeeded + res.failed != res.total or res.failed != len(fails):
        problems.append(f"counts: total {res.total}, succeeded {res.succeeded}, failed {res.failed}, {len(fails)} rows")
    if len(res.failures) != len(fails):
        problems.append("a row is reported failed twice")
    for r, f in fails.items():
        if f["stage"] not in ALLOWED_STAGES:
            problems.append(f"row {r}: stage {f['stage']!r}")
    after = dk.load(store, table)
    sent = {c: listed(frame[c]) for c in frame.columns}
    ids = [int(k) for k in sent["id"]]

    if case.mode == "replace":
        ok_rows = [r for r in range(len(frame)) if r not in fails]
        if [str(d) for d in after.dtypes] != [str(d) for d in frame.dtypes] or list(after.columns) != list(
            frame.columns
        ):
            problems.append(f"replace: the table's dtypes are {dict(after.dtypes)}, the frame's {dict(frame.dtypes)}")
        got = _rows(after)
        if sorted(got) != sorted(ids[r] for r in ok_rows):
            problems.append(
                f"replace: the table holds keys {sorted(got)}, the rows written {sorted(ids[r] for r in ok_rows)}"
            )
        for r in ok_rows:
            for c in frame.columns:
                v = got.get(ids[r], {}).get(c, "<absent>")
                if ids[r] in got and not user_equal(sent[c][r], v):
                    problems.append(f"row {r}, column {c!r}: sent {sent[c][r]!r}, reads back {v!r}")
        return problems

    problems += _dtypes_kept(before, after)
    old, new = _rows(before), _rows(after)
    present = set(old)
    if not after["id"].is_unique:
        problems.append(f"a key is in the table twice: {after['id'].tolist()}")
    base_cols = [c for c in before.columns if c != "id"]
    sent_cols = [c for c in frame.columns if c != "id"]
    written: set[int] = set()
    for r, k in enumerate(ids):
        if r in fails:
            f = fails[r]
            if f["error"] == "KeyConflict" and not (case.mode == "append" and k in present):
                problems.append(
                    f"row {r} (key {k}): KeyConflict, but the call is {case.mode} of a key the table {'has' if k in present else 'lacks'}"
                )
            if f["stage"] == "missing" and not (case.mode == "update" and k not in present):
                problems.append(
                    f"row {r} (key {k}): stage missing, but the call is {case.mode} of a key the table {'has' if k in present else 'lacks'}"
                )
            if f["stage"] == "validate":
                problems.append(
                    f"row {r} (key {k}): stage validate, but its key is unique and present ({f['message']})"
                )
            if k not in present and k in new:
                problems.append(f"row {r} (key {k}) is reported failed, but the table now holds its key")
            problems += _refused(store, case, before, r, k, f, k in present)
            continue
        if case.mode == "append" and k in present:
            problems.append(
                f"row {r}: append of key {k}, which the table has, is not reported (a KeyConflict at write)"
            )
        if case.mode == "update" and k not in present:
            problems.append(f"row {r}: update_batch of key {k}, which the table lacks, is not reported (stage missing)")
        if k not in new:
            if case.mode != "update" or k in present:
                problems.append(f"row {r}: reported written, but key {k} is not in the table")
            continue
        written.add(k)
        for c in sent_cols:
            if not user_equal(sent[c][r], new[k][c]):
                problems.append(
                    f"row {r}, column {c!r} ({case.kinds[c]}, sent {case.hows[c]}): sent {sent[c][r]!r}, "
                    f"reads back {new[k][c]!r}"
                )
        for c in base_cols:
            if c in sent_cols:
                continue
            if k in present and not same(old[k][c], new[k][c]):
                problems.append(f"row {r}, column {c!r} (not sent): was {old[k][c]!r}, now {new[k][c]!r}")
            if k not in present and not missing(new[k][c]):
                problems.append(f"row {r}, column {c!r} (not sent) of a new row: {new[k][c]!r}, not missing")
    if set(new) != present | {k for k in written if k not in present}:
        problems.append(f"the table holds keys {sorted(new)}, expected {sorted(present | written)}")
    for k in present - written:  # rows the call did not write
        for c in before.columns:
            if k in new and not same(old[k][c], new[k][c]):
                problems.append(f"key {k}, column {c!r}, not written by the call: was {old[k][c]!r}, now {new[k][c]!r}")
    return problems


def _refused(store, case: Case, before: pd.DataFrame, r: int, k: int, f: dict, present: bool) -> list[str]:
    """A row that failed at convert or write though the rules promise to write every value it sent: a bug,
    unless a fresh table of the columns' dtypes refuses those values too (the store cannot hold them)."""
    if f["stage"] not in ("convert", "write") or f["error"] == "KeyConflict":
        return []
    if case.mode == "append" and present or case.mode == "update" and not present:
        return []  # the row fails anyway (KeyConflict, missing)
    insert = case.mode == "append" or not present
    sent_cols = [c for c in case.frame.columns if c != "id"]
    if insert and any(case.kinds[c] in REQUIRED for c in before.columns if c != "id" and c not in sent_cols):
        return []  # a new row lacking a required column: NotNull
    typed = {}
    for c in sent_cols:
        ok, value = promised(listed(case.frame[c])[r], case.kinds[c], before[c])
        if not ok:
            return []
        typed[c] = typed_column(case.kinds[c], before[c], value)
    fresh = f"prop_{uuid.uuid4().hex[:12]}"
    try:
        res = id_frame([k], typed).dk.save(store, fresh)
    except dk.DataKnobsError:
        return []
    if not res.ok:
        return []  # the store cannot hold these values at all
    values = {c: listed(case.frame[c])[r] for c in sent_cols}
    return [
        f"row {r} (key {k}) was refused at {f['stage']} ({f['error']}: {f['message']}), but the rules promise "
        f"to write its values {values} into columns { ({c: case.kinds[c] for c in sent_cols}) }, and the store "
        f"holds them"
    ]


# -- the contract part ----------------------------------------------------------------------------------
class PropertyContract:
    """Random frames of random dtypes into tables of random column types: every row written reads back
    equal to what was sent, or is reported failed; nothing else changes.

    `property_seconds`: under the hypothesis profiles "ci" and "default", once a store has spent this long
    the remaining examples are drawn but not run (a slow store runs fewer of the same examples); other
    profiles ("long") run every example. None: no limit."""

    property_seconds: float | None = 15.0

    def test_property_writes_read_back_equal_or_fail(self, store):
        if cases is None:  # pragma: no cover
            import pytest

            pytest.skip("hypothesis is not installed")
        profile = getattr(settings, "get_current_profile_name", lambda: "default")()
        budget = self.property_seconds if profile in ("ci", "default") else None
        start = time.monotonic()

        # settings made here, when the test runs: they follow the hypothesis profile loaded by then
        @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(case=cases())
        def writes_read_back_equal_or_fail(case):
            if budget is not None and time.monotonic() - start > budget:
                event("not run: the store's time is up")
                return
            note(repr(case))
            problems = run_case(store, case)
            assert not problems, "\n".join(problems)

        writes_read_back_equal_or_fail()
