"""Reading a file store's table: one committed version whole, its parts pruned by key range and
scanned by the format, in key order by merging sorted parts a batch at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import replace
from itertools import pairwise

import pyarrow as pa

from ...errors import InternalError, StorageError, TableNotFoundError
from ...filters import to_expression
from ..base import conform, rebatch
from . import parts as parts_
from .commit import Holds, Transactions
from .formats import Format
from .manifest import Manifests, Part, State
from .pool import Writers
from .storage import Storage

_TRIES = 5  # a read that finds its parts replaced by a commit reads the new manifest, at most this often


class Reader:
    """Reads the managed tables of one file store: whole committed versions, or a transaction's own view."""

    def __init__(
        self, storage: Storage, manifests: Manifests, holds: Holds, tx: Transactions, pool: Writers, fmt: Format
    ):
        self.storage, self.manifests, self.holds, self.tx, self.pool, self.fmt = (
            storage,
            manifests,
            holds,
            tx,
            pool,
            fmt,
        )

    def read(self, table, schema, columns, where, order, limit, batch_rows) -> Iterator[pa.Table]:
        """Backend.read of a managed table."""
        st, held, files = self.snapshot(table)
        try:
            yield from self._read(replace(st, schema=schema), files, columns, where, order, limit, batch_rows)
        finally:
            for f in files.values():
                f.close()
            if held:
                self.holds.release(held)

    def snapshot(self, table: str) -> tuple[State, list[str], dict]:
        """The table to read, its parts held for the read and, locally, opened at once (file name -> file).

        A commit of this store removes the parts a read holds only once the read ends. Locally
        the parts are also opened at once, and an open file outlives its name, so commits in
        other processes cannot break the read either: it reads one committed version whole.
        Elsewhere a commit in another process may remove a part under it (StorageError: read again).
        """
        if self.tx.current() is not None:
            st = self.tx.get(table)  # this transaction's own view; no commit of this store runs meanwhile
            if st is None:
                raise TableNotFoundError(f"no table {table!r} in {self.storage.display}")
            if not isinstance(st, State):
                raise InternalError("a plain table is read by plain_reading.py")
            return st, [], {}
        s, folder, seen = self.storage, self.storage.dir(table), None
        for attempt in range(_TRIES):
            head, generation = self.manifests.load(table, reuse=attempt == 0)
            st = head.state
            if st is None:
                raise TableNotFoundError(f"no table {table!r} in {self.storage.display}")
            held = [f"{folder}/{p.file}" for p in st.parts]
            if not self.holds.hold(folder, held, generation):  # a commit of this store removed files since
                continue
            if not s.local:
                return st, held, {}
            files: dict = {}
            missing = None
            with s.io(f"reading table {table!r}"):
                try:
                    for p in st.parts:
                        files[p.file] = s.pafs.open_input_file(f"{folder}/{p.file}")
                except BaseException as e:
                    for f in files.values():
                        f.close()
                    self.holds.release(held)
                    if not isinstance(e, FileNotFoundError):
                        raise
                    missing = e
            if missing is None:
                return st, held, files
            # a part gone: a commit in another process replaced it since the manifest was read
            if (st.version, st.stamp) == seen:  # the same version twice: the part is really missing
                raise StorageError(
                    f"table {table!r} in {self.storage.display}: a part its manifest lists is missing ({missing})"
                )
            seen = (st.version, st.stamp)
        raise StorageError(
            f"table {table!r} in {self.storage.display} was changed by other writers {_TRIES} times while being read; read it again"
        )

    def _read(self, st: State, files: dict, columns, where, order, limit, batch_rows) -> Iterator[pa.Table]:
        schema = st.schema
        key = schema.key
        parts = [p for p in st.parts if parts_.may_match(p.lo, p.hi, where, schema)]
        if key and not order and any(p.lo is None for p in parts):  # a call's key= on a table without a key
            order = [(k, True) for k in key]
        need = list(columns)
        for c in [c for c, _ in order] if order else (key or []):
            if c not in need:
                need.append(c)
        target = pa.schema([schema.column(c).field for c in columns])
        # category columns the format reads dictionary-encoded, and returns so; never those rows are sorted by
        where_columns = filtered_columns(where)
        sorted_by = {c for c, _ in order} | set(key or [])
        coded = [c for c in self.fmt.coded(schema, columns, where_columns) if c not in sorted_by]

        def scans(p: Part) -> Iterator[pa.Table]:
            return self.scan(st, p, need, where, batch_rows, files.get(p.file), coded)

        if order:
            fields = pa.schema([schema.column(c).field for c in need])
            tables = [conform(t, fields, coded) for p in parts for t in scans(p)]
            data = pa.concat_tables(tables) if tables else fields.empty_table()
            data = data.sort_by([(c, "ascending" if asc else "descending") for c, asc in order])
            if limit is not None:
                data = data.slice(0, limit)
            stream = iter([data])
        elif key:
            parts.sort(key=lambda p: p.bounds[0])
            streams = [scans(p) for p in parts]
            if all(a.bounds[1] < c.bounds[0] for a, c in pairwise(parts)):
                stream = (t for s in streams for t in s)
            else:
                stream = parts_.merge(streams, key)
        else:
            stream = (t for p in parts for t in scans(p))
        yield from rebatch(stream, target, limit, batch_rows, coded)

    def scan(
        self,
        st: State,
        part: Part,
        columns: list[str],
        where: list | None,
        batch_rows: int,
        opened=None,
        coded: Sequence[str] = (),
    ) -> Iterator[pa.Table]:
        """Yield the rows of one part matching `where`, only `columns`, in file order (from `opened`, if given);
        the category columns in `coded` (Format.coded) dictionary-encoded."""
        path = f"{self.storage.dir(st.name)}/{part.file}"
        expr = to_expression(where, st.schema.arrow_schema) if where else None
        tx = self.tx.current()
        size = part.size
        if tx is not None and size is None:  # a part of this transaction: its write must have ended
            self.pool.settle(tx, path)
            size = tx.sizes.get(path)
        source = nullcontext(opened) if opened is not None else self.storage.open_read(path, size)
        where_columns = filtered_columns(where)
        with self.storage.io(f"reading table {st.name!r}"), source as f:
            yield from self.fmt.scan(f, st.schema, columns, expr, where_columns, batch_rows, coded)

    def whole(self, st: State, part: Part, columns: list[str] | None = None) -> pa.Table:
        """All rows of one part (only `columns`, else all of the table's), in file order."""
        columns = columns or st.schema.names
        target = pa.schema([st.schema.column(c).field for c in columns])
        tables = list(self.scan(st, part, columns, None, 1 << 30))
        return pa.concat_tables([conform(t, target) for t in tables]) if tables else target.empty_table()


def filtered_columns(where: list | None) -> list[str]:
    """The columns a normalized `where` filters on, sorted."""
    return sorted({c for group in where for c, _, _ in group}) if where else []
