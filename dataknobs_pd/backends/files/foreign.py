"""How the files other tools made are typed and written: Parquet as pandas' `read_parquet` reads it
(pyarrow's types, the pandas metadata's index and dtypes, an integer column holding a missing value as
float64, hive partition columns as categories) and CSV as `read_csv` reads it (int64, float64, bool or
text, its missing values and its column names); rows written back in the forms those tools write.
plain.py finds the tables themselves, plain_reading.py reads and plain_writing.py writes them."""

from __future__ import annotations

import csv
import io
import posixpath
from contextlib import suppress
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ...errors import StorageError, WriteError
from ...failures import RowError
from ...schema import Column, TableSchema
from .storage import Storage

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # the folder name of a missing partition value
# pandas' read_csv: the texts that are a missing value, and those of a bool
NA_VALUES = [
    "",
    *"#N/A|#N/A N/A|#NA|-1.#IND|-1.#QNAN|-NaN|-nan|1.#IND|1.#QNAN|<NA>|N/A|NA|NULL|NaN|None|n/a|nan|null".split("|"),
]
TRUE_VALUES, FALSE_VALUES = ["True", "TRUE", "true"], ["False", "FALSE", "false"]


@dataclass(frozen=True)
class Layout:
    """Where a plain table lives and the form of its files."""

    path: str  # the file, or the folder
    single: bool
    physical: pa.Schema  # the columns the files hold (the first file's), with its key-value metadata
    partitions: pa.Schema = field(default_factory=lambda: pa.schema([]))  # hive partition columns (value types)
    header: tuple[str, ...] = ()  # CSV: the header as written (pandas names an empty one "Unnamed: 0")
    newline: str = "\n"  # CSV: the line ending the file uses

    @property
    def read_schema(self) -> pa.Schema:
        """The files' columns then the partition columns, the types pyarrow reads them as."""
        names = set(self.partitions.names)
        return pa.schema([f for f in self.physical if f.name not in names] + list(self.partitions))

    def file_schema(self) -> pa.Schema:
        """The columns a new file holds (the partition columns are in its folder's name), with the metadata."""
        names = set(self.partitions.names)
        return pa.schema([f for f in self.physical if f.name not in names], metadata=self.physical.metadata)


# -- formats -------------------------------------------------------------------------------------
class PlainFormat:
    """How plain files of one format are found, typed as pandas reads them, scanned and written."""

    suffix = ""
    na = "none"  # the missing value of an object column as pandas reads the format: None or NaN

    def file_format(self, layout: Layout) -> ds.FileFormat:
        raise NotImplementedError

    def inspect(self, storage: Storage, paths: list[str], folder: str | None) -> tuple[Layout, pd.DataFrame]:
        """The layout of the files `paths` (of `folder`, or one file), and an empty frame of the dtypes pandas
        reads them as."""
        raise NotImplementedError

    def write(self, out, table: pa.Table, layout: Layout) -> None:
        """Write a whole file: `table` in the file's columns, with the key-value metadata the file keeps."""
        raise NotImplementedError

    def append(self, out, storage: Storage, old: str, table: pa.Table, layout: Layout) -> None:
        """Write the file `old` followed by the rows of `table`."""
        raise NotImplementedError

    def read_file(self, storage: Storage, path: str, layout: Layout) -> pa.Table:
        """A whole file in its own columns and types (its metadata kept)."""
        raise NotImplementedError


class PlainParquet(PlainFormat):
    suffix = ".parquet"

    def file_format(self, layout):
        return ds.ParquetFileFormat()

    def inspect(self, storage, paths, folder):
        # pd.read_parquet reads hive partition columns as categories (pyarrow discovers them as dictionaries)
        found = discovered(storage, paths, folder, ds.ParquetFileFormat(), dictionaries=True)
        schema = found.schema
        parts = _partition_fields(found, folder)
        empty = schema.empty_table().to_pandas()
        for name, t in zip(schema.names, schema.types):
            if pa.types.is_dictionary(t):  # the categories read: the partitions found, or the values stored
                if name in parts.names:
                    values = found.partitioning.dictionaries[found.partitioning.schema.names.index(name)]
                    dtype = pd.CategoricalDtype(pd.Index(values.to_pandas()), ordered=False)
                else:
                    dtype = found.to_table(columns=[name]).column(name).to_pandas().dtype
                _set_dtype(empty, name, dtype)
        for name in _with_nulls(found, [n for n in empty.columns if _numpy_kind(empty[n].dtype) in ("i", "u", "b")]):
            _set_dtype(empty, name, np.dtype("float64") if empty[name].dtype.kind in "iu" else np.dtype(object))
        layout = Layout(folder or paths[0], folder is None, schema, value_types(parts))
        return layout, empty

    def write(self, out, table, layout):
        pq.write_table(table, out)

    def append(self, out, storage, old, table, layout):
        with storage.open_read(old, None) as f:
            src = pq.ParquetFile(f)
            schema = src.schema_arrow
            wider = layout.file_schema()
            if wider.names != schema.names:  # columns added by this call: the old rows have none in them
                schema = pa.schema(list(wider), metadata=schema.metadata)
            with pq.ParquetWriter(out, schema) as w:
                for i in range(src.num_row_groups):  # row group by row group: memory holds one
                    w.write_table(conform_to(src.read_row_group(i), schema))
                if table.num_rows:
                    w.write_table(conform_to(table, schema))

    def read_file(self, storage, path, layout):
        with storage.open_read(path, None) as f:
            return pq.read_table(f)


class PlainCSV(PlainFormat):
    suffix = ".csv"
    na = "nan"  # pd.read_csv: a missing text is NaN

    def file_format(self, layout):
        columns = layout.file_schema()
        return ds.CsvFileFormat(
            read_options=pcsv.ReadOptions(column_names=columns.names, skip_rows=1),
            convert_options=_convert({f.name: f.type for f in columns}),
        )

    def inspect(self, storage, paths, folder):
        with storage.open_read(paths[0], None) as f:
            first = f.read(1 << 16)
        header, newline = _header(first)
        names = _pandas_names(header)
        text = ds.CsvFileFormat(
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1),
            convert_options=_convert(dict.fromkeys(names, pa.string())),
        )
        found = discovered(storage, paths, folder, text, dictionaries=False)
        parts = _partition_fields(found, folder)
        values = found.to_table(columns=names)  # every value as text: typed below as pandas types them
        physical = pa.schema([(n, _csv_type(values.column(n))) for n in names])
        layout = Layout(folder or paths[0], folder is None, physical, value_types(parts), tuple(header), newline)
        empty = layout.read_schema.empty_table().to_pandas()
        for n in names:
            if physical.field(n).type == pa.bool_() and values.column(n).null_count:
                _set_dtype(empty, n, np.dtype(object))  # pandas: True, False and NaN in an object column
        return layout, empty

    def write(self, out, table, layout):
        out.write(self._text(table, layout, header=True).encode())

    def append(self, out, storage, old, table, layout):
        last = b"\n"
        with storage.open_read(old, None) as f:
            while chunk := f.read(1 << 22):
                out.write(chunk)
                last = chunk[-1:]
        if last not in (b"\n", b"\r"):
            out.write(layout.newline.encode())
        out.write(self._text(table, layout, header=False).encode())

    def read_file(self, storage, path, layout):
        fmt = self.file_format(layout)
        frag = fmt.make_fragment(path, filesystem=storage.pafs)
        return frag.to_table(schema=pa.schema(list(layout.file_schema())))

    @staticmethod
    def _text(table: pa.Table, layout: Layout, header: bool) -> str:
        """Rows as pandas' to_csv writes them (floats as repr, True/False, missing as empty)."""
        frame = table.to_pandas()
        return frame.to_csv(index=False, header=list(layout.header) if header else False, lineterminator=layout.newline)


FORMATS = {"parquet": PlainParquet, "csv": PlainCSV}


# -- how pandas reads them ----------------------------------------------------------------------------
def discovered(storage: Storage, paths: list[str], folder: str | None, fmt: ds.FileFormat, dictionaries: bool):
    """The files as pyarrow.dataset discovers them: the schema of the first, hive partitions from the folders."""
    if folder is None:
        return ds.dataset(paths, format=fmt, filesystem=storage.pafs)
    hive = ds.HivePartitioning.discover(infer_dictionary=dictionaries, null_fallback=HIVE_NULL)
    return ds.dataset(paths, format=fmt, filesystem=storage.pafs, partitioning=hive, partition_base_dir=folder)


def _partition_fields(found, folder: str | None) -> pa.Schema:
    """The hive partition columns pyarrow found, as the folders' names give them (`year=2021/`)."""
    if folder is None or found.partitioning is None:
        return pa.schema([])
    names: dict[str, None] = {}
    for path in found.files:
        for segment in posixpath.dirname(path[len(folder) + 1 :]).split("/"):
            if "=" in segment:
                names.setdefault(segment.split("=", 1)[0])
    # (pyarrow's partitioning of a folder without any names the whole schema as its fields)
    return pa.schema([found.schema.field(n) for n in names if n in found.schema.names])


def value_types(schema: pa.Schema) -> pa.Schema:
    """Dictionary types as their values' (a partition column's value in a folder's name)."""
    return pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema])


def _numpy_kind(dtype) -> str:
    return dtype.kind if isinstance(dtype, np.dtype) else ""


def _set_dtype(frame: pd.DataFrame, name, dtype) -> None:
    if name in frame.columns:
        frame[name] = frame[name].astype(dtype)


def _with_nulls(found, names: list) -> list:
    """Those of the columns `names` (numpy ints and bools as pandas reads them) that hold a missing value: pandas
    then reads them as float64 and object. From the Parquet statistics; a column without them is scanned."""
    out = []
    for name in names:
        for frag in found.get_fragments():
            counts = _null_counts(frag, str(name))
            if counts is None:
                counts = frag.to_table(schema=found.schema, columns=[str(name)]).column(str(name)).null_count
            if counts:
                out.append(name)
                break
    return out


def _null_counts(frag, name: str) -> int | None:
    """Missing values of a column of a Parquet file from its row groups' statistics (None: not recorded)."""
    md = frag.metadata
    total = 0
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        col = next((rg.column(j) for j in range(rg.num_columns) if rg.column(j).path_in_schema == name), None)
        if col is None:  # not in this file (a partition column, or added later): read as missing
            return md.num_rows
        stats = col.statistics
        if stats is None or not stats.has_null_count:
            return None
        total += stats.null_count
    return total


def dk_schema(empty: pd.DataFrame, arrow: pa.Schema, na: str) -> TableSchema:
    """The dk schema of an empty frame of the dtypes pandas reads a plain table as; its object columns typed by
    what the files hold (Arrow's type), as pandas gives their values (None or NaN when missing)."""
    from ...types import TypeMapper

    schema = TypeMapper().schema(empty)
    cols = []
    for c in schema.columns:
        if c.dtype.get("name") == "object" and c.name in arrow.names:
            t = arrow.field(c.name).type
            t = t.value_type if pa.types.is_dictionary(t) else t
            c = _object_column(c, t, na)
        cols.append(c)
    return replace(schema, columns=cols)


def _object_column(c: Column, t: pa.DataType, na: str) -> Column:
    spec = {"name": "object", "na": na}
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return replace(c, kind="string", arrow=pa.large_string(), nullable=True, dtype=spec)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return replace(c, kind="bytes", arrow=pa.binary(), nullable=True, dtype=spec)
    if pa.types.is_date(t):
        return replace(c, kind="date", arrow=pa.date32(), nullable=True, dtype=spec)
    if pa.types.is_decimal(t):
        return replace(c, kind="decimal", arrow=t, nullable=True, dtype=spec)
    if pa.types.is_boolean(t):
        return replace(c, kind="bool", arrow=t, nullable=True, dtype=spec)
    # the rest (lists, structs, times): pyarrow-backed values
    kind = "json" if pa.types.is_nested(t) else str(t)
    return replace(c, kind=kind, arrow=t, nullable=True, dtype={"name": str(pd.ArrowDtype(t)), "arrow": True})


def _convert(types: dict[str, pa.DataType]) -> pcsv.ConvertOptions:
    return pcsv.ConvertOptions(
        column_types=types,
        null_values=NA_VALUES,
        true_values=TRUE_VALUES,
        false_values=FALSE_VALUES,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )


def _header(first: bytes) -> tuple[list[str], str]:
    """The names in a CSV file's header, and its line ending."""
    line, sep, _ = first.partition(b"\n")
    newline = "\r\n" if line.endswith(b"\r") else "\n"
    if not sep and len(first) >= 1 << 16:
        raise StorageError("a CSV header longer than 64 KiB")
    text = line.rstrip(b"\r").decode("utf-8-sig")
    return next(csv.reader(io.StringIO(text)), []), newline


def _pandas_names(header: list[str]) -> list[str]:
    """Column names as pd.read_csv gives them: an empty one is "Unnamed: i", a repeated one "name.1"."""
    out: list[str] = []
    for i, name in enumerate(header):
        name = name or f"Unnamed: {i}"
        base, k = name, 0
        while name in out:
            k += 1
            name = f"{base}.{k}"
        out.append(name)
    return out


def _csv_type(values: pa.ChunkedArray) -> pa.DataType:
    """The type pd.read_csv gives a column of texts: int64 (no missing value), float64, bool, else text."""
    present = values.drop_null()
    if len(present) == 0:
        return pa.float64()
    for t in (pa.int64(), pa.float64()):
        with suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pc.cast(present, t)
            return pa.float64() if t == pa.int64() and values.null_count else t
    if pc.all(pc.is_in(present, value_set=pa.array(TRUE_VALUES + FALSE_VALUES))).as_py():
        return pa.bool_()
    return pa.string()


# -- rows in the files' types ----------------------------------------------------------------------------
def stored_type(t: pa.DataType) -> pa.DataType:
    """The type a new file stores a dk column's values in, as pandas' to_parquet does (large_string: string)."""
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_dictionary(t):
        return pa.dictionary(t.index_type, stored_type(t.value_type), t.ordered)
    return t


def physical(data: pa.Table, target: pa.Schema) -> pa.Table:
    """Rows in a file's columns and types: the values of `data`'s columns (dk types) cast, the others missing."""
    n = data.num_rows
    cols = [
        as_stored(data.column(f.name), f.type, f.name) if f.name in data.column_names else pa.nulls(n, f.type)
        for f in target
    ]
    return pa.table(cols, schema=pa.schema([f.with_nullable(True) for f in target]))


def conform_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` in exactly `schema`'s columns and types (and its metadata)."""
    table = physical(table, pa.schema(list(schema)))
    return pa.table(table.columns, schema=schema)


def columns_of(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """The columns of `data` that a file holds, in its types."""
    names = [f.name for f in schema if f.name in data.column_names]
    return pa.table([as_stored(data.column(n), schema.field(n).type, n) for n in names], names=names)


def as_stored(col, t: pa.DataType, name: str):
    """A column in the type a file holds it in; a value that type cannot hold exactly fails the chunk."""
    try:
        if col.type == t:
            return col
        if pa.types.is_dictionary(col.type) and not pa.types.is_dictionary(t):
            col = col.cast(col.type.value_type)
        if pa.types.is_dictionary(t):
            values = as_stored(col, t.value_type, name)
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks()
            return values.dictionary_encode().cast(t)
        return pc.cast(col, t, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise WriteError(
            f"column {name!r}: a value does not fit the files' type {t} ({str(e)[:200]})", RowError.TypeConversion
        ) from e
