"""How each file format writes and scans one part: Parquet, CSV and JSON lines as strategy objects
that FileBackend is given (it does everything else: manifests, commits, keys, reads in order).

A format says which values it cannot hold exactly (`prepare`, facts for the engine), writes a
table to an open pyarrow file (`write`) and yields the rows of an open part that match a filter
(`scan`), with a column the part lacks (added to the table after it was written) as nulls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ...failures import Unholdable
from ...schema import TableSchema
from ..base import without_rows
from . import text

SCHEMA_META = b"dataknobs_pd.schema"  # the dk schema in the key-value metadata of every Parquet part


class Format:
    """One file format of parts."""

    name = ""
    suffix = ""

    def prepare(self, data: pa.Table, schema: TableSchema) -> tuple[pa.Table, dict[int, Unholdable]]:
        """Leave out the rows holding values this format cannot keep exactly, and say which and why."""
        return data, {}

    def write(self, out, data: pa.Table, schema: TableSchema) -> None:
        """Write one part to the open pyarrow file `out`."""
        raise NotImplementedError

    def coded(self, schema: TableSchema, columns: list[str], where_columns: list[str]) -> list[str]:
        """The category columns among `columns` that `scan` yields dictionary-encoded (see base.conform)."""
        return []

    def scan(
        self,
        f,
        schema: TableSchema,
        columns: list[str],
        expr,
        where_columns: list[str],
        batch_rows: int,
        coded: Sequence[str] = (),
    ) -> Iterator[pa.Table]:
        """Yield the rows of the open part `f` matching `expr` (on `where_columns`), only `columns`;
        the columns in `coded` (from `coded()`) as dictionary<int32, their type>."""
        raise NotImplementedError


class Parquet(Format):
    """Parquet parts carrying the dk schema; `where` prunes row groups by their statistics."""

    name, suffix = "parquet", ".parquet"

    def __init__(self, row_group_rows: int | None = None):
        self.row_group_rows = row_group_rows

    def prepare(self, data, schema):
        # Parquet has no seconds unit: timestamp[s] is written as milliseconds, which may overflow
        facts: dict[int, Unholdable] = {}
        limit = (2**63 - 1) // 1000
        for name in data.column_names:
            col = data.column(name)
            if pa.types.is_dictionary(col.type):  # categories of timestamps: checked as their values
                col = col.cast(col.type.value_type)
            t = col.type
            if pa.types.is_timestamp(t) and t.unit == "s":
                ints = pc.abs(col.cast(pa.int64()))
                bad = pc.fill_null(pc.greater(ints, limit), False).to_numpy(zero_copy_only=False)
                for i in np.flatnonzero(bad):
                    facts.setdefault(
                        int(i),
                        Unholdable(
                            name,
                            f"{text.show(col, int(i))} is beyond what Parquet can hold in a "
                            f"seconds column (it stores milliseconds)",
                        ),
                    )
        return without_rows(data, facts), facts

    def write(self, out, data, schema):
        meta = {SCHEMA_META: schema.to_json().encode()}
        pq.write_table(
            data.replace_schema_metadata(meta),
            out,
            row_group_size=self.row_group_rows,
            use_dictionary=dictionary_columns(data),
        )

    def coded(self, schema, columns, where_columns):
        # Text categories are read as Parquet's dictionaries and stay so (TypeMapper computes the codes from
        # each chunk's dictionary), unless `where` filters on them: row groups are pruned by the statistics of
        # plain columns only.
        return [c for c in columns if _coded(schema, c) and c not in where_columns]

    def scan(self, f, schema, columns, expr, where_columns, batch_rows, coded=()):
        # Given the table's schema, the scan reads a column the part lacks as nulls.
        whole = batch_rows >= 1_000_000  # a whole load (no chunksize)
        coded = [c for c in coded if c in columns]
        arrow = schema.arrow_schema
        if coded:
            fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=coded))
            arrow = pa.schema([a.with_type(pa.dictionary(pa.int32(), a.type)) if a.name in coded else a for a in arrow])
        else:
            fmt = ds.ParquetFileFormat()
        fragment = fmt.make_fragment(f)
        if whole:  # let pyarrow read the file at once, in parallel
            pieces = [ds.FileSystemDataset([fragment], schema=arrow, format=fmt)]
        else:  # streaming (chunksize): one row group at a time, those the statistics do not rule out
            pieces = fragment.split_by_row_group(expr, schema=arrow)
        for piece in pieces:
            kw = {} if isinstance(piece, ds.Dataset) else {"schema": arrow}
            for batch in piece.to_batches(columns=columns, filter=expr, batch_size=min(batch_rows, 1 << 20), **kw):
                if batch.num_rows:
                    yield pa.Table.from_batches([batch])


def _coded(schema: TableSchema, name: str) -> bool:
    """A category column of text: Parquet parts hold it dictionary-encoded, which a whole load reads as is."""
    col = schema.column(name)
    return col.kind == "category" and (pa.types.is_string(col.arrow) or pa.types.is_large_string(col.arrow))


class _Text(Format):
    """What CSV and JSON lines share: values go as text forms; what has none fails at `convert`."""

    def prepare(self, data, schema):
        data = decoded(data, schema)
        facts: dict[int, Unholdable] = {}
        for name in data.column_names:
            for i, why in text.unholdable(data.column(name), schema.column(name), self.name).items():
                facts.setdefault(i, Unholdable(name, why))
        return without_rows(data, facts), facts

    def scan(self, f, schema, columns, expr, where_columns, batch_rows, coded=()):
        wanted = list(columns) + [n for n in where_columns if n not in columns]  # decoded to filter, then dropped
        for t in self.read(f, schema, wanted, batch_rows):
            if expr is not None:
                t = t.filter(expr)
            if t.num_rows:
                yield t.select(columns)

    def read(self, f, schema: TableSchema, columns: list[str], batch_rows: int) -> Iterator[pa.Table]:
        raise NotImplementedError


class CSV(_Text):
    """CSV parts with a header; the dk schema in the manifest beside them."""

    name, suffix = "csv", ".csv"

    def write(self, out, data, schema):
        text.write_csv(out, decoded(data, schema), schema)

    def read(self, f, schema, columns, batch_rows):
        return text.read_csv(f, schema, columns)


class JSONL(_Text):
    """JSON-lines parts, one object per row; the dk schema in the manifest beside them."""

    name, suffix = "jsonl", ".jsonl"

    def write(self, out, data, schema):
        text.write_jsonl(out, decoded(data, schema), schema)

    def read(self, f, schema, columns, batch_rows):
        return text.read_jsonl(f, schema, columns, batch_rows)


def decoded(data: pa.Table, schema: TableSchema) -> pa.Table:
    """`data` with its dictionary-encoded (category) columns as their values, for the text formats."""
    names = [f.name for f in data.schema if pa.types.is_dictionary(f.type)]
    if not names:
        return data
    for name in names:
        i = data.schema.get_field_index(name)
        data = data.set_column(i, schema.column(name).field, data.column(i).cast(schema.column(name).arrow))
    return data


def dictionary_columns(data: pa.Table, sample: int = 8192) -> list[str]:
    """Columns worth dictionary-encoding: at most half of a spread sample of their values distinct, and
    those already dictionary-encoded (categories, written with their own dictionary as a pyarrow user would).

    Parquet writers try a dictionary on every column and fall back to plain values only after
    it grows large; on floats, timestamps and unique ids that costs time and space in every part.
    """
    n = data.num_rows
    at = pa.array(np.linspace(0, n - 1, min(n, sample)).astype(np.int64)) if n else None
    out = []
    for name in data.column_names:
        col = data.column(name)
        if pa.types.is_dictionary(col.type):
            out.append(name)
            continue
        if n == 0 or pa.types.is_nested(col.type) or pa.types.is_boolean(col.type):
            continue
        try:
            values = col.take(at)
            distinct = pc.count_distinct(values).as_py()
        except pa.ArrowException:
            continue
        if distinct <= 0.5 * max(1, len(values) - values.null_count):
            out.append(name)
    return out
