"""Reading one version of a Delta table through pyarrow.dataset: files skipped by their Delta
statistics, row groups by their Parquet statistics, then the exact filter, order and limit."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from ...filters import to_expression
from ...schema import TableSchema
from ..base import rebatch
from . import order
from . import physical as ph


class Snapshot:
    """One version of a Delta table: its files, their statistics, and a dataset over them."""

    def __init__(self, dt: DeltaTable, loc):
        self.dt = dt
        self.loc = loc
        self._dataset = None
        self._actions = None

    @property
    def dataset(self) -> ds.FileSystemDataset:
        if self._dataset is None:
            with self.loc.io("reading a table"):
                self._dataset = self.dt.to_pyarrow_dataset()
        return self._dataset

    @property
    def dataset_schema(self) -> pa.Schema:
        return self.dataset.schema

    def fragments(self) -> list[tuple[str, ds.Fragment]]:
        """(path, fragment) of each data file, as Delta lists them. Made anew: the fragments of delta-rs's
        dataset carry guarantees built from the Delta statistics, which are wrong for floats with infinities
        (null bounds) and timestamps (kept in milliseconds), so that a filter could skip matching rows. Only
        the values of a partitioned table's partition columns (which its files do not hold) are kept."""
        d = self.dataset
        parts = self.partitions()
        return [
            (f.path, d.format.make_fragment(f.path, filesystem=d.filesystem, partition_expression=parts.get(f.path)))
            for f in d.get_fragments()
        ]

    def partitions(self) -> dict[str, ds.Expression]:
        """{path: the values of the partition columns of that file}; empty for a table without partitions."""
        a = self.actions()
        names = [n for n in a.column_names if n.startswith("partition.")]
        if not names or not a.num_rows:
            return {}
        types = {f.name: f.type for f in self.dataset_schema}
        out = {}
        for i, path in enumerate(a.column("path").to_pylist()):
            terms = []
            for n in names:
                col, value = n[len("partition.") :], a.column(n)[i]
                field = ds.field(col)
                terms.append(field.is_null() if not value.is_valid else field == value.cast(types.get(col, value.type)))
            expr = terms[0]
            for t in terms[1:]:
                expr = expr & t
            out[path] = expr
        return out

    def actions(self) -> pa.Table:
        """One row per data file: path, size_bytes, num_records, min.<col>, max.<col>, null_count.<col>."""
        if self._actions is None:
            with self.loc.io("reading a table"):
                self._actions = pa.table(self.dt.get_add_actions(flatten=True))
        return self._actions

    def sizes(self) -> dict[str, int]:
        a = self.actions()
        return dict(zip(a.column("path").to_pylist(), a.column("size_bytes").to_pylist()))

    def read_file(self, path: str) -> pa.Table:
        d = self.dataset
        fragment = d.format.make_fragment(
            path, filesystem=d.filesystem, partition_expression=self.partitions().get(path)
        )
        return fragment.to_table(schema=self.dataset_schema)

    def paths(self) -> list[str]:
        """The table's data files in its order (order.py): insertion order for a keyless table."""
        return [p for p, _ in order_files(self.fragments())]

    def max_of(self, column: str) -> int | None:
        """The largest value of an integer column, from the statistics (or the column itself)."""
        a = self.actions()
        if not a.num_rows:
            return None
        name = f"max.{column}"
        if name in a.column_names and a.column(name).null_count == 0:
            return pc.max(a.column(name)).as_py()
        if column not in self.dataset_schema.names:
            return None
        return pc.max(self.dataset.to_table(columns=[column]).column(0)).as_py()


def read_rows(
    snap: Snapshot,
    schema: TableSchema,
    columns: list[str],
    where: list,
    order: list,
    limit: int | None,
    batch_rows: int,
    table: str,
) -> Iterator[pa.Table]:
    """The selected rows of the version, in the dk schema's logical types, ordered, in batches."""
    key = schema.key or []
    sort = list(order) or [(k, True) for k in key]
    logical = list(dict.fromkeys(list(columns) + [c for c, _ in sort] + [c for g in where for c, _, _ in g]))
    stored = [n for n in ph.stored_names(schema, logical) if n in snap.dataset_schema.names]
    in_order = not sort and ph.SEQ in snap.dataset_schema.names  # no key: insertion order
    if in_order:
        stored.append(ph.SEQ)
        sort = [(ph.SEQ, True)]
    pushed = _pushdown(where, schema)
    fragments = _files(snap, pushed, sort, schema)
    if not sort:  # no key: the files in the table's order, then each file's rows in theirs (order.py)
        fragments = order_files(fragments)
    dataset = ds.FileSystemDataset(
        [f for _, f in fragments], snap.dataset_schema, snap.dataset.format, snap.dataset.filesystem
    )
    expr = to_expression(pushed, snap.dataset_schema) if pushed else None
    with snap.loc.io(f"reading table {table!r}"):
        data = dataset.to_table(columns=stored, filter=expr)
    out = ph.to_logical(data, schema, logical)
    if in_order:
        out = out.append_column(ph.SEQ, data.column(ph.SEQ))
    if where:  # exact, on the logical values (the pushed-down filter may have been weaker)
        out = out.filter(to_expression(where, out.schema))
    if sort and not _is_sorted(out, sort):
        out = out.sort_by([(c, "ascending" if asc else "descending") for c, asc in sort])
    if limit is not None:
        out = out.slice(0, limit)
    target = pa.schema([schema.column(c).field for c in columns])
    yield from rebatch(iter([out.select(columns)]), target, None, batch_rows)


def order_files(fragments: list) -> list:
    """(path, ...) pairs in the order of the table's files (order.py)."""
    return [fragments[i] for i in order.in_order([p for p, *_ in fragments])]


def _pushdown(where: list, schema: TableSchema) -> list | None:
    """The filters on stored values, for the columns whose stored values compare like the logical ones.

    Leaving a term out of an AND group only widens it; a group left empty matches everything, so
    nothing is pushed down then. The exact filter runs on the rows read."""
    if not where:
        return None
    groups = []
    for group in where:
        terms = []
        for col, op, value in group:
            t = schema.column(col).arrow
            if not ph.exact_order(t):
                continue
            values = value if op in ("in", "not in") else [value]
            stored = pa.array(values, type=t, from_pandas=True)
            stored = stored.cast(pa.int64()) if pa.types.is_duration(t) else stored.cast(ph.stored_type(t))
            got = stored.to_pylist()
            terms.append((col, op, got if op in ("in", "not in") else got[0]))
        if not terms:
            return None
        groups.append(terms)
    return groups


def _files(snap: Snapshot, pushed: list | None, sort: list, schema: TableSchema) -> list:
    """The data files that may hold matching rows (by their Delta statistics), ordered by the smallest
    value of the first sort column, so that sorted, disjoint files need no sort after reading."""
    fragments = snap.fragments()
    actions = snap.actions()
    if not fragments or not actions.num_rows:
        return fragments
    paths = actions.column("path").to_pylist()
    may = np.ones(len(paths), dtype=bool)
    if pushed:
        may = np.zeros(len(paths), dtype=bool)
        for group in pushed:
            g = np.ones(len(paths), dtype=bool)
            for col, op, value in group:
                g &= _may_hold(actions, col, op, value)
            may |= g
    keep = {p for p, m in zip(paths, may) if m}
    fragments = [(p, f) for p, f in fragments if p in keep or p not in paths]
    if len(sort) == 1 and sort[0][1] and f"min.{sort[0][0]}" in actions.column_names:
        lows = dict(zip(paths, actions.column(f"min.{sort[0][0]}").to_pylist()))
        try:
            fragments.sort(key=lambda pf: (lows.get(pf[0]) is None, lows.get(pf[0])))
        except TypeError:  # values that do not compare: leave the order, the sort after reading does it
            pass
    return fragments


def _may_hold(actions: pa.Table, col: str, op: str, value) -> np.ndarray:
    """Per file: False only when its min/max statistics prove no row can match (col op value)."""
    n = actions.num_rows
    everywhere = np.ones(n, dtype=bool)
    lo_name, hi_name = f"min.{col}", f"max.{col}"
    if lo_name not in actions.column_names or op in ("!=", "not in") or value is None:
        return everywhere
    lo, hi = actions.column(lo_name), actions.column(hi_name)
    t = lo.type
    if not (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_date(t)
        or pa.types.is_decimal(t)
        or pa.types.is_timestamp(t)
    ):
        return everywhere  # strings may be cut short in statistics: never prune on them
    if pa.types.is_timestamp(t):
        # Delta keeps timestamp statistics in milliseconds: the max may be up to 1 ms short
        lo = lo.cast(pa.int64())
        hi = pc.add(hi.cast(pa.int64()), 1000 if t.unit == "us" else 1)

        def conv(v):
            return pa.scalar(v, type=t).cast(pa.int64())
    else:

        def conv(v):
            return pa.scalar(v, type=t)

    try:
        if op == "in":
            vals = [v for v in value if v is not None]
            if not vals:
                return everywhere
            low, high = conv(min(vals)), conv(max(vals))
            m = pc.and_(pc.less_equal(lo, high), pc.greater_equal(hi, low))
        else:
            v = conv(value)
            m = {
                "==": lambda: pc.and_(pc.less_equal(lo, v), pc.greater_equal(hi, v)),
                "<": lambda: pc.less(lo, v),
                "<=": lambda: pc.less_equal(lo, v),
                ">": lambda: pc.greater(hi, v),
                ">=": lambda: pc.greater_equal(hi, v),
            }[op]()
    except (pa.ArrowException, TypeError, ValueError, KeyError):
        return everywhere
    return pc.fill_null(m, True).to_numpy(zero_copy_only=False)


def _is_sorted(t: pa.Table, sort: list) -> bool:
    """Whether one ascending sort column is already in order (rows read from sorted, disjoint files)."""
    if len(sort) != 1 or not sort[0][1] or t.num_rows < 2:
        return t.num_rows < 2
    col = t.column(sort[0][0])
    if col.null_count:
        return False
    try:
        a, b = col.slice(0, t.num_rows - 1), col.slice(1)
        return bool(pc.all(pc.less_equal(a, b)).as_py())
    except pa.ArrowNotImplementedError:
        return False
