"""What a DuckDB write must know before it writes anything: a failed statement ends the transaction.

Which rows' keys are in the table comes from one semi-join (backend.py). Which rows a CHECK
constraint refuses (tables made elsewhere; this package makes none) comes from evaluating the
constraints' own expressions over the rows as they would be stored, in a second connection, so
that no error can reach the writing transaction; each constraint's message is DuckDB's own,
taken once from a temporary table with that constraint.

The engine narrows a refused chunk down by halving it (k*log2(n) attempts for k bad rows).
Every attempt is a slice of that chunk, so `Refused` answers it from the facts gathered for the
whole chunk instead of asking DuckDB again, and keeps the slices found fine to be written
together in one statement (a statement per slice would cost more than the whole chunk).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ...errors import WriteError
from ...failures import RowError
from ..sql import ROW, STAGE, key_match, q

OLD = "_dk_old"  # staged: whether the row's key is in the table
CODE = "ConstraintException"  # the DuckDB error class of a refused CHECK


@dataclass
class Table:
    """A table's columns and CHECK constraints as DuckDB declares them."""

    name: str
    qualified: str  # database.schema.table, quoted: never a temporary table of the same name
    columns: list[tuple[str, str]]  # (name, SQL type)
    checks: list[str]  # CHECK expressions


def constraints(query, name: str, qualified: str, where: tuple[str, str]) -> Table:
    """The table's declared columns and CHECK expressions; `query(sql, params)` runs on any connection."""
    db, nsp = where
    cols = query(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND schema_name = ?"
        " AND table_name = ? ORDER BY column_index",
        [db, nsp, name],
    )
    checks = query(
        "SELECT expression FROM duckdb_constraints() WHERE database_name = ? AND schema_name = ?"
        " AND table_name = ? AND constraint_type = 'CHECK' ORDER BY constraint_index",
        [db, nsp, name],
    )
    return Table(name, qualified, [(c, t) for c, t in cols], [c for (c,) in checks])


def rows_sql(table: Table, key: list[str], given: list[str], new: bool, old: bool) -> str:
    """The rows a write would leave in the table, from the staged chunk: new rows as inserted (the
    columns not given are NULL), existing rows with the given columns changed; plus their position."""
    parts = []
    if new:
        cols = ", ".join(f"s.{q(c)}" if c in given else f"CAST(NULL AS {t}) AS {q(c)}" for c, t in table.columns)
        parts.append(f"SELECT {cols}, s.{q(ROW)} FROM {q(STAGE)} s WHERE NOT s.{q(OLD)}")
    if old:
        cols = ", ".join(f"{'s' if c in given else 't'}.{q(c)} AS {q(c)}" for c, _ in table.columns)
        parts.append(
            f"SELECT {cols}, s.{q(ROW)} FROM {q(STAGE)} s JOIN {table.qualified} t"
            f" ON {key_match(key, 't', 's')} WHERE s.{q(OLD)}"
        )
    return " UNION ALL ".join(parts)


def refused_rows(cur, table: Table, rows: str) -> dict[int, int]:
    """{position: index of the first CHECK it fails} (a CHECK passes when its expression is NULL)."""
    fails = [f"NOT coalesce(({e}), true)" for e in table.checks]
    which = "CASE " + " ".join(f"WHEN {f} THEN {i}" for i, f in enumerate(fails)) + " END"
    got = cur.execute(f"SELECT {q(ROW)}, {which} FROM ({rows}) WHERE {' OR '.join(fails)}").fetchall()
    return {int(r): int(i) for r, i in got}


def message(cur, table: Table, check: int, rows: str, position: int) -> str:
    """DuckDB's own message for a row the CHECK refuses: that row inserted into a temporary table
    of the same name, columns and constraint, in the probing connection."""
    defs = ", ".join(f"{q(c)} {t}" for c, t in table.columns)
    temp = f"temp.main.{q(table.name)}"
    cur.execute(f"CREATE OR REPLACE TEMP TABLE {q(table.name)} ({defs}, CHECK ({table.checks[check]}))")
    try:
        names = ", ".join(q(c) for c, _ in table.columns)
        cur.execute(f"INSERT INTO {temp} SELECT {names} FROM ({rows}) WHERE {q(ROW)} = ?", [position])
    except Exception as e:  # noqa: BLE001 - the refusal is what we came for
        return str(e)
    finally:
        cur.execute(f"DROP TABLE IF EXISTS {temp}")
    return f"CHECK constraint failed on table {table.name!r} with expression CHECK({table.checks[check]})"


class Refused:
    """A chunk refused whole, while the engine narrows it down: the facts gathered for it, and the
    slices found fine, waiting to be written together."""

    def __init__(
        self, table: str, mode: str, data: pa.Table, existed: np.ndarray | None, bad: dict[int, tuple[str, str]]
    ):
        self.table, self.mode, self.existed, self.bad = table, mode, existed, bad
        self.data = data  # held: its buffers identify the slices, and must not be reused meanwhile
        self.positions = sorted(bad)
        self.fine: list[tuple[int, int]] = []  # (start, rows) of the slices to write
        # A slice shares the chunk's buffers and only moves its offset, so one column's buffers tell
        # where a slice comes from (the engine only hands over slices of the chunk it narrows down;
        # checking every column would cost more than DuckDB's write of the slice).
        self.anchor = next(
            (
                i
                for i, c in enumerate(data.columns)
                if c.num_chunks == 1 and any(b is not None for b in c.chunk(0).buffers())
            ),
            None,
        )
        if self.anchor is not None:
            first = data.column(self.anchor).chunk(0)
            self.buffers = [b and b.address for b in first.buffers()]
            self.offset = first.offset

    def locate(self, table: str, mode: str, part: pa.Table) -> int | None:
        """Where `part` starts in the refused chunk, when it is a slice of it (None otherwise)."""
        if self.anchor is None or table != self.table or mode != self.mode or part.num_columns != self.data.num_columns:
            return None
        piece = part.column(self.anchor)
        if piece.num_chunks != 1:
            return None
        p = piece.chunk(0)
        if [b and b.address for b in p.buffers()] != self.buffers:
            return None
        start = p.offset - self.offset
        return start if 0 <= start and start + part.num_rows <= self.data.num_rows else None

    def refusal(self, start: int, rows: int) -> WriteError | None:
        """The WriteError for the slice, when it holds a refused row."""
        lo = bisect_left(self.positions, start)
        hi = bisect_left(self.positions, start + rows, lo)
        if lo == hi:
            return None
        text, code = self.bad[self.positions[lo]]
        if rows > 1:
            text = f"{hi - lo} of these {rows} rows are refused by a CHECK constraint; the first: {text}"
        return WriteError(text, RowError.CheckConstraint, code)

    def pending(self) -> tuple[pa.Table, np.ndarray | None]:
        """The fine slices as one table, in order, with whether each row's key existed."""
        spans: list[list[int]] = []
        for s, n in sorted(self.fine):  # one contiguous copy: DuckDB scans many small Arrow chunks slowly
            if spans and spans[-1][0] + spans[-1][1] == s:
                spans[-1][1] += n
            else:
                spans.append([s, n])
        data = pa.concat_tables([self.data.slice(s, n) for s, n in spans]).combine_chunks()
        existed = None
        if self.existed is not None:
            existed = np.concatenate([self.existed[s : s + n] for s, n in spans])
        return data, existed
