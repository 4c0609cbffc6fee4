"""Reading a table: Arrow record batches (COPY ... TO STDOUT, or the binary extended protocol when filter
values are bound), with columns, filters, order and limit in the SQL, decoded to the logical Arrow types."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import adbc_driver_manager
import pyarrow as pa

from ...errors import ConnectionLostError, StorageError
from ...schema import TableSchema
from ..base import rebatch
from ..capabilities import IMAGE_COLUMNS
from ..sql import key_match, q, where_sql
from .catalogue import relation
from .connection import Conn, text
from .session import Session
from .staging import STAGED, by_index, stage
from .types import SEQ, filter_values, from_wire, physical_key, plans, zoned


def read(
    session: Session, nsp: str, table: str, schema: TableSchema, columns, where, order, limit, batch_rows
) -> Iterator[pa.Table]:
    """The table's `columns`, filtered, ordered (by the key, or insertion order, when not asked) and limited."""
    p = plans(schema)
    numbers = itertools.count(1)

    def ref(col, op):  # nanosecond columns compare as exact numbers: epoch nanoseconds
        if p[col].ns:
            return f"(EXTRACT(EPOCH FROM {q(col)}) * 1000000000 + {q(p[col].companion)})"
        return p[col].compared

    def enc(col, values):
        return filter_values(col, values, schema.column(col).arrow, p[col])

    def par(col, mark):  # a zoned value is bound as naive UTC: binding timestamptz makes the driver commit
        if p[col].family in ("json", "nested"):
            return f"({mark}::jsonb)"
        return f"({mark}::timestamp AT TIME ZONE 'UTC')" if zoned(p[col]) else mark

    clause, params = where_sql(where, enc, param=lambda: f"${next(numbers)}", column_sql=ref, param_sql=par)
    terms = [(x, asc) for c, asc in order for x in [p[c].compared] + [q(n) for n in p[c].stored[1:]]] or [
        (q(k), True) for k in physical_key(schema)
    ]
    selected = [n for c in columns for n in p[c].selected]
    sql = f"SELECT {', '.join(selected) or 'NULL'} FROM {relation(nsp, table)}{clause}"
    # a missing value compared with < = ... (NaN, NaT, NA) matches no row, as SQL NULL does
    params = [pa.nulls(1, pa.null()) if v is None else v for v in params]
    bound = pa.record_batch(params, names=[f"p{i}" for i in range(len(params))]) if params else None
    out = pa.schema([pa.field(n, schema.column(n).arrow) for n in columns])
    return fetch(
        session, nsp, table, sql, terms, limit, bound, out, [(schema.column(n), p[n]) for n in columns], batch_rows
    )


def read_keys(
    c: Conn, session: Session, nsp: str, table: str, schema: TableSchema, keys: pa.Table, columns: list[str], url: str
) -> pa.Table:
    """The rows whose key is a row of `keys` (capabilities.KeyedRead): the keys staged, then one semi-join."""
    stage(c, nsp, table, keys, schema, url)
    p = plans(schema)
    pk = physical_key(schema)
    selected = ", ".join(n for col in columns for n in p[col].selected)
    sql = (
        f"SELECT {selected or 'NULL'} FROM {relation(nsp, table)} d"
        f" WHERE EXISTS (SELECT 1 FROM {STAGED} s WHERE {key_match(pk, 'd', 's')})"
    )
    out = pa.schema([pa.field(n, schema.column(n).arrow) for n in columns])
    with by_index(c, nsp, table, keys.num_rows):
        got = list(
            fetch(session, nsp, table, sql, [], None, None, out, [(schema.column(n), p[n]) for n in columns], 1 << 30)
        )
    return pa.concat_tables(got) if got else out.empty_table()


def read_images(
    session: Session,
    nsp: str,
    table: str,
    schema: TableSchema,
    undo: str,
    undo_schema: TableSchema,
    batch_id: str,
    kept: list[str],
    columns: list[str],
) -> tuple[pa.Table, pa.Table]:
    """The images of a call beside the rows of their keys now (capabilities.ImagesRead): one LEFT JOIN."""
    up, p = plans(undo_schema), plans(schema)
    picked = [n for c in kept for n in up[c].selected_from("u")] + [n for c in columns for n in p[c].selected_from("d")]
    pk = physical_key(schema)
    sql = (
        f"SELECT {', '.join(picked)} FROM {relation(nsp, undo)} u LEFT JOIN {relation(nsp, table)} d"
        f" ON {key_match(pk, 'd', 'u')} WHERE u.{q(IMAGE_COLUMNS[0])} = $1"
    )
    decoding = [(undo_schema.column(c), up[c]) for c in kept] + [(schema.column(c), p[c]) for c in columns]
    out = pa.schema([col.field.with_name(f"{i}") for i, (col, _) in enumerate(decoding)])  # unique in the join
    bound = pa.record_batch([pa.array([batch_id])], names=["p0"])
    got = pa.concat_tables(fetch(session, nsp, undo, sql, [(f"u.{q(SEQ)}", True)], None, bound, out, decoding, 1 << 30))
    n = len(kept)
    return got.select(range(n)).rename_columns(kept), got.select(range(n, len(decoding))).rename_columns(columns)


def fetch(session: Session, nsp: str, table, sql, terms, limit, bound, out: pa.Schema, columns, batch_rows):
    """The rows of `sql` (a SELECT of `table`), ordered by `terms` (else a keyless table's insertion order),
    in batches of `batch_rows`; `columns` are the (Column, plan) pairs decoding what it selects."""
    with session.borrow() as c:
        if not terms and c.query(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2",
            (relation(nsp, table), SEQ),
        ):
            terms = [(q(SEQ), True)]  # keyless: insertion order
        if terms:  # SQL expressions: a name is an output column first (intervals are read as microseconds)
            sql += " ORDER BY " + ", ".join(f"{n} {'ASC' if asc else 'DESC'}" for n, asc in terms)
        if limit is not None:
            sql += f" LIMIT {int(limit)}"  # an int checked by the caller: COPY cannot take bound values
        cur = c.raw.cursor()
        try:
            try:
                cur.execute(sql, bound)
                reader = cur.fetch_record_batch()
            except adbc_driver_manager.Error as e:
                raise c.error(e, f"reading {table!r}") from e
            decoded = (_decode(batch, columns, out) for batch in _batches(reader, c, table))
            yield from rebatch(decoded, out, None, batch_rows)
        finally:
            cur.close()


def _batches(reader, c: Conn, table: str):
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (adbc_driver_manager.Error, pa.ArrowException, OSError) as e:
            if isinstance(e, adbc_driver_manager.Error):
                raise c.error(e, f"reading {table!r}") from e
            c.broken = True  # the result was left half read: the connection is not reused
            if _data_error(e):
                raise StorageError(f"reading {table!r}: a stored value cannot be read: {c.scrub(text(e))}") from e
            raise ConnectionLostError(f"reading {table!r} from {c.where} failed: {e}") from e
        yield batch


def _data_error(e: Exception) -> bool:
    """Whether a failure while streaming a result is the data's (a value the driver cannot decode, or the
    server's ERROR evaluating a row) rather than the connection's."""
    message = str(e)
    if isinstance(e, (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)):
        return "ReadRecord" in message or "overflow" in message
    return "ERROR:" in message and "FATAL:" not in message and "connection" not in message.lower()


def _decode(batch: pa.RecordBatch, columns, out: pa.Schema) -> pa.Table:
    """A fetched batch in the logical Arrow types (a nanosecond column joined with its companion)."""
    parts, i = [], 0
    for col, p in columns:
        k = len(p.stored)
        parts.append(from_wire([batch.column(i + j) for j in range(k)], col, p))
        i += k
    return pa.Table.from_arrays(parts, schema=out)
