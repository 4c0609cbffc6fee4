"""Reading a plain table (plain.py) through pyarrow.dataset, as pandas reads it: its files (a transaction's
view) as one dataset with their hive partitions, filtered, pruned and projected by pyarrow."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.dataset as ds

from ...filters import to_expression
from ...schema import TableSchema
from ..base import rebatch
from .foreign import HIVE_NULL, value_types
from .plain import Plain, PlainTables


def dataset(tables: PlainTables, st: Plain) -> ds.FileSystemDataset:
    """The table's files (this transaction's view) as a pyarrow dataset, each with its partition."""
    fmt = tables.fmt()
    layout = st.layout
    file_format = fmt.file_format(layout)
    hive = ds.HivePartitioning(layout.partitions, null_fallback=HIVE_NULL) if layout.partitions.names else None
    fragments = [
        file_format.make_fragment(
            f.at,
            filesystem=tables.storage.pafs,
            partition_expression=hive.parse(f.part + "/") if hive is not None and f.part else None,
        )
        for f in st.files
    ]
    return ds.FileSystemDataset(fragments, layout.read_schema, file_format, tables.storage.pafs)


def read(
    tables: PlainTables, st: Plain, schema: TableSchema, columns, where, order, limit, batch_rows
) -> Iterator[pa.Table]:
    """Backend.read of a plain table: filters, partition pruning and projection by pyarrow.dataset; rows in
    the files' order (with a key given by the call, in key order)."""
    with tables.storage.io(f"reading table {st.name!r}"):
        found = dataset(tables, st)
        expr = to_expression(where, value_types(found.schema)) if where else None
        if not order and schema.key:
            order = [(k, True) for k in schema.key]
        target = pa.schema([schema.column(c).field for c in columns])
        if order:
            need = list(dict.fromkeys([*columns, *(c for c, _ in order)]))
            data = found.to_table(columns=need, filter=expr)
            data = data.sort_by([(c, "ascending" if asc else "descending") for c, asc in order])
            stream: Iterator[pa.Table] = iter([data if limit is None else data.slice(0, limit)])
        elif limit is not None:
            stream = iter([found.head(limit, columns=columns, filter=expr)])
        elif batch_rows >= 1_000_000:  # a whole load: pyarrow reads the files at once, in parallel
            stream = iter([found.to_table(columns=columns, filter=expr)])
        else:  # chunksize: a batch at a time, in the files' order, only the partitions the filter leaves
            stream = (
                pa.Table.from_batches([b])
                for frag in found.get_fragments(filter=expr if expr is not None else ds.scalar(True))
                for b in frag.to_batches(
                    schema=found.schema, columns=columns, filter=expr, batch_size=min(batch_rows, 1 << 20)
                )
                if b.num_rows
            )
        yield from rebatch(stream, target, limit, batch_rows)
