"""The rules a Delta table sets on its rows (CHECK constraints, NOT NULL columns), checked on the rows a
call stages, before its commit, so that each failing row is named and the commit holds the rest.

delta-rs refuses a whole write when one row breaks a rule; here the rows are checked first, the way
delta-rs checks them (a row passes a CHECK when its expression is true: false and NULL fail), with
DataFusion, the SQL engine delta-rs itself evaluates the expressions with.
"""

from __future__ import annotations

import threading
import uuid
from contextlib import suppress
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ...errors import BackendUnavailableError, InternalError, StorageError, WriteError
from ...failures import RowError
from .staging import Staged, complete, key_index

_CONSTRAINT = "delta.constraints."
CHECK_CODE = "DELTA_VIOLATE_CONSTRAINT_WITH_VALUES"  # Delta's own names for these errors
NOT_NULL_CODE = "DELTA_NOT_NULL_CONSTRAINT_VIOLATED"
ROW = "_dk_row"


@dataclass(frozen=True)
class Rules:
    checks: dict  # name -> SQL expression
    not_null: tuple  # stored columns Delta requires a value in, beyond those the dk schema requires

    def __bool__(self):
        return bool(self.checks or self.not_null)

    def columns(self, names) -> list[str]:
        """Of `names`, those the CHECK expressions may refer to (a name appearing in the text)."""
        return [n for n in names if any(n in expr for expr in self.checks.values())]


def rules_of(configuration: dict, fields: list[pa.Field], dk_required: set[str]) -> Rules:
    checks = {k[len(_CONSTRAINT) :]: v for k, v in sorted(configuration.items()) if k.startswith(_CONSTRAINT)}
    not_null = tuple(f.name for f in fields if not f.nullable and f.name not in dk_required)
    return Rules(checks, not_null)


@dataclass(frozen=True)
class Violation:
    error: RowError
    code: str
    why: str


def rules_for(st: Staged) -> Rules:
    """The rules of the version a transaction read (none for a table it creates)."""
    rules = st.cache.get("rules")
    if rules is None:
        if not st.has_rows:
            rules = Rules({}, ())
        else:
            if st.base is None or st.base_schema is None:
                raise InternalError("has_rows: the table exists")
            with st.loc.io(f"reading table {st.name!r}"):
                config = st.base.metadata().configuration
                fields = list(pa.schema(st.base.schema().to_arrow()))
            dk_required = {c.name for c in st.base_schema.columns if not c.nullable}
            rules = rules_of(config, fields, dk_required)
        st.cache["rules"] = rules
    return rules


class Checker:
    """Evaluates rules on Arrow rows; one DataFusion context, used by one thread at a time."""

    def __init__(self):
        self._ctx = None
        self._lock = threading.Lock()

    def violations(self, rows: pa.Table, rules: Rules, table: str) -> dict[int, Violation]:
        """{row position: the first rule it breaks} for the rows of `rows` (stored form, complete for
        the columns the rules name)."""
        out: dict[int, Violation] = {}
        for name in rules.not_null:
            if name in rows.column_names:
                for null in np.flatnonzero(rows.column(name).is_null().to_numpy(zero_copy_only=False)):
                    out.setdefault(
                        int(null),
                        Violation(
                            RowError.NotNull,
                            NOT_NULL_CODE,
                            f"column {name!r} is NOT NULL in Delta table {table!r} and this row has no value",
                        ),
                    )
        if rules.checks and rows.num_rows:
            for name, expr in rules.checks.items():
                for i in self._failing(rows, expr, name, table):
                    out.setdefault(
                        i,
                        Violation(
                            RowError.CheckConstraint,
                            CHECK_CODE,
                            f"CHECK constraint {name} ({expr}) of Delta table {table!r} is violated by this row",
                        ),
                    )
        return out

    def _failing(self, rows: pa.Table, expr: str, name: str, table: str) -> list[int]:
        try:
            import datafusion
        except ImportError as e:
            raise BackendUnavailableError(
                f"Delta table {table!r} has CHECK constraints; checking each row against them before the commit "
                f"needs the datafusion package: pip install 'dataknobs-pd[delta]'"
            ) from e
        numbered = rows.append_column(ROW, pa.array(np.arange(rows.num_rows, dtype=np.int64)))
        alias = f"dk_rows_{uuid.uuid4().hex}"
        with self._lock:
            if self._ctx is None:
                self._ctx = datafusion.SessionContext()
            try:
                self._ctx.from_arrow(numbered, name=alias)
                found = self._ctx.sql(f'SELECT "{ROW}" FROM "{alias}" WHERE ({expr}) IS NOT TRUE').to_arrow_table()
            except Exception as e:
                raise StorageError(
                    f"CHECK constraint {name} ({expr}) of Delta table {table!r} cannot be evaluated "
                    f"on the rows to write: {str(e).splitlines()[0][:300]}"
                ) from e
            finally:
                with suppress(Exception):  # nothing registered when from_arrow failed
                    self._ctx.deregister_table(alias)
        return sorted(int(v) for v in found.column(0).to_pylist())

    # -- the rows a call stages -------------------------------------------------------------------
    def check(
        self, st: Staged, data: pa.Table, stored: pa.Table, new: np.ndarray, changed: np.ndarray, pos: np.ndarray | None
    ) -> None:
        """Raise WriteError when a row to insert (`new`) or to update (`changed`) breaks a rule of the table.

        The engine then halves the chunk until the rows at fault stand alone. The verdicts are kept by
        key, so that the halves are answered without evaluating again (see known)."""
        rules = rules_for(st)
        if not rules:
            return
        if st.schema is None:
            raise InternalError("rows are written to a table that exists")
        full = st.full()
        parts = []
        if len(new):
            parts.append(complete(stored.take(new), full))
        if len(changed):
            if pos is None:
                raise InternalError("rows to update come with their positions among the keys")
            parts.append(complete(_with_stored(st, stored.take(changed), pos[changed], rules), full))
        candidates = pa.concat_tables(parts) if parts else full.empty_table()
        found = self.violations(candidates, rules, st.name)
        verdicts = np.full(data.num_rows, None, dtype=object)
        for i, row in enumerate(np.concatenate([new, changed]).astype(np.int64)):
            verdicts[row] = found.get(i)
        if st.schema.key:
            st.cache["checked"] = (key_index(data.select(st.schema.key)), verdicts)
        _refuse(verdicts)

    @staticmethod
    def known(st: Staged, data: pa.Table) -> bool:
        """Whether these rows were all checked before (raising WriteError if one breaks a rule)."""
        checked = st.cache.get("checked")  # (key index, verdicts) of the last rows checked against the rules
        if st.schema is None:
            raise InternalError("rows are written to a table that exists")
        if not st.schema.key or checked is None:
            return False
        at = checked[0].get_indexer(key_index(data.select(st.schema.key)))
        if (at < 0).any():
            return False
        _refuse(checked[1][at])
        return True


def _with_stored(st: Staged, changes: pa.Table, pos: np.ndarray, rules: Rules) -> pa.Table:
    """Rows being updated, with the stored values of the columns a rule names that the call leaves alone."""
    if st.schema is None:
        raise InternalError("rows are written to a table that exists")
    names = st.full().names
    missing = [c for c in dict.fromkeys(rules.columns(names) + list(rules.not_null)) if c not in changes.column_names]
    if not missing:
        return changes
    old = st.rows_at(pos, missing)
    for c in missing:
        changes = changes.append_column(c, old.column(c))
    return changes


def _refuse(verdicts: np.ndarray) -> None:
    """WriteError for the first row that breaks a rule (the engine narrows a chunk down to single rows)."""
    bad = np.flatnonzero(verdicts != None)  # noqa: E711 - elementwise on an object array
    if len(bad):
        v = verdicts[bad[0]]
        n = len(verdicts)
        raise WriteError(f"{v.why} ({len(bad)} of {n} rows)" if n > 1 else v.why, v.error, v.code)
