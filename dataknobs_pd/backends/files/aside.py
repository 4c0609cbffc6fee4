"""A new managed table loaded by many writers at once (capabilities.ParallelLoad).

The writers put their part files in the table's folder (unlisted, so no reader sees them) and, at the end of
each partition's transaction, a record of that partition's parts (a manifest of its own,
`_dk_aside/<job>/<partition>.json`, replaced by a later try); swap_in lists them all in the table's next
manifest. The aside's name is "<job>/<table>"."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pyarrow as pa

from ...errors import ConcurrentWriteError
from ..keyed import sort_order, take_keys
from . import parts as parts_
from .commit import Transactions
from .manifest import Manifests, Part, State
from .plain import Plain
from .pool import Writers
from .reading import Reader
from .storage import Storage


class Asides:
    """The tables aside of one file store: the hooks of capabilities.ParallelLoad, FileBackend wires them."""

    def __init__(
        self,
        storage: Storage,
        manifests: Manifests,
        tx: Transactions,
        pool: Writers,
        reader: Reader,
        remove: Callable,
        suffix: str,
    ):
        self.storage, self.manifests, self.tx, self.pool, self.reader = storage, manifests, tx, pool, reader
        self._remove = remove  # remove(paths): part files, forgotten by the key cache too
        self.suffix = suffix  # of the part files

    def open(self, table, schema):
        if not schema.key:  # a keyless table keeps its rows in the order one writer inserted them
            return None
        if isinstance(self.tx.get(table), Plain):  # replaced in its own place and layout, by one writer
            return None
        with self.storage.io(f"writing table {table!r}"):
            self.storage.ensure_dir(self.storage.dir(table))
        return f"{uuid.uuid4().hex[:16]}/{table}"

    def _record(self, aside: str, part: int | None = None) -> str:
        job, table = aside.split("/", 1)
        folder = f"{self.storage.dir(table)}/_dk_aside/{job}"
        return folder if part is None else f"{folder}/{part:08d}.json"

    def _parts_of(self, aside: str, part: int) -> tuple[Part, ...]:
        """The parts recorded for partition `part` (none yet: ())."""
        raw = self.storage.cat(self._record(aside, part))
        st = self.manifests.parse(aside, raw).state if raw else None
        return st.parts if st else ()

    def _put_record(self, aside: str, part: int, schema, parts) -> None:
        path = self._record(aside, part)
        self.storage.ensure_dir(path.rsplit("/", 1)[0])
        self.storage.write_whole(path, self.manifests.encode(aside, State(aside, schema, tuple(parts)), 0))

    def clear(self, aside, part, schema):
        """The partition starts with no parts; at commit its record is replaced, and the parts an earlier
        try of it recorded are removed."""
        tx, table = self.tx.mine(), aside.split("/", 1)[1]
        written: list[Part] = []

        def then():
            with self.storage.io(f"writing table {table!r}"):
                earlier = self._parts_of(aside, part)
                self._put_record(aside, part, schema, written)
            kept = {p.file for p in written}
            self._remove(f"{self.storage.dir(table)}/{p.file}" for p in earlier if p.file not in kept)

        then.written = written  # type: ignore[attr-defined]
        tx.after[(aside, part)] = then

    def write(self, aside, part, data, schema, rows):
        data = data.take(pa.array(sort_order(data, schema.key)))
        self.tx.mine().after[(aside, part)].written.append(self._write_part(aside, data, schema))

    def _write_part(self, aside: str, data: pa.Table, schema) -> Part:
        """Write rows sorted by key as a part file of the aside's table, now (not in the background)."""
        job, table = aside.split("/", 1)
        data = parts_.complete(data, schema).replace_schema_metadata(None)
        file = f"part-{job}-{uuid.uuid4().hex[:16]}{self.suffix}"
        with self.storage.io(f"writing table {table!r}"):
            size = self.pool.write(f"{self.storage.dir(table)}/{file}", data, schema)
        keys = data.select(schema.key)
        return Part(file, data.num_rows, size, parts_.row(keys, 0), parts_.row(keys, data.num_rows - 1))

    def take(self, aside, schema, part, rows, keys):
        table = aside.split("/", 1)[1]
        st = State(table, schema, self._parts_of(aside, part))
        out: list[pa.Table | None] = [None] * keys.num_rows
        kept = []
        for p in st.parts:
            whole = self.reader.whole(st, p)
            rest = take_keys(whole, keys, schema.key, out)
            if rest is whole:
                kept.append(p)
            elif rest is not None:
                kept.append(self._write_part(aside, rest, schema))
        with self.storage.io(f"writing table {table!r}"):
            self._put_record(aside, part, schema, kept)
        self._remove(f"{self.storage.dir(table)}/{p.file}" for p in st.parts if p not in kept)
        found = [t for t in out if t is not None]
        return pa.concat_tables(found) if found else schema.arrow_schema.empty_table()

    def swap_in(self, aside, table, schema):
        folder, records = self.storage.dir(table), self._record(aside)
        with self.storage.io(f"writing table {table!r}"):
            names = sorted(n for n in self.storage.ls(records) if n.endswith(".json"))
            parts = [p for n in names for p in self._parts_of(aside, int(n.rsplit("/", 1)[-1][:-5]))]
            there = set(self.storage.entries(folder, stat=False))
        gone = [p.file for p in parts if p.file not in there]
        if gone:  # another writer of the table swept them as leftovers meanwhile
            raise ConcurrentWriteError(
                f"table {table!r} in {self.storage.display} was changed by another writer during this call "
                f"({len(gone)} new part(s) are gone); nothing was written"
            )
        self.tx.get(table)
        self.tx.put(table, State(table, schema, tuple(parts)))

    def drop(self, aside):
        job, table = aside.split("/", 1)
        folder = self.storage.dir(table)
        st = self.manifests.load(table)[0].state
        listed = {p.file for p in st.parts} if st else set()
        with self.storage.io(f"writing table {table!r}"):
            mine = [n for n in self.storage.entries(folder, stat=False) if n.startswith(f"part-{job}-")]
            records = self._record(aside)
            self.storage.remove(f"{records}/{n.rsplit('/', 1)[-1]}" for n in self.storage.ls(records))
            self.storage.rmdir(records)
            self.storage.rmdir(records.rsplit("/", 1)[0])
        self._remove(f"{folder}/{n}" for n in mine if n not in listed)
        self.storage.rmdir(folder)  # only when empty: the call created no table
