"""FileBackend: the tables of a folder in one file format (formats.py). It wires the transactions (commit.py),
the catalogue (catalogue.py), the writes into managed tables (writing.py) on the pool that writes their parts
(pool.py), the reads (reading.py), the tables loaded by many writers at once (aside.py), and the tables other
tools made (plain.py, plain_reading.py, plain_writing.py)."""

from __future__ import annotations

from dataclasses import replace

from ...errors import InvalidArgumentError, StorageError, TableNotFoundError
from ..base import Backend
from ..folder import folder_name
from . import catalogue, plain_reading
from . import parts as parts_
from .aside import Asides
from .commit import Holds, Transactions, is_part
from .formats import Format
from .manifest import Manifests, State
from .plain import Plain, PlainTables
from .plain_writing import PlainWrites
from .pool import Writers
from .reading import Reader
from .storage import Storage
from .writing import ManagedWrites


class FileBackend(Backend):
    """A folder of tables whose parts are files of one format."""

    chunk_cells = 10_000_000  # cells per write call, so per new part (written while the next chunk converts)
    accepts_dictionary = True  # categories are written with their dictionaries (text formats decode them)

    def __init__(
        self,
        url: str,
        fmt: Format,
        storage_options: dict | None = None,
        fsync: bool = True,
        lock_timeout: float = 600.0,
        retention: float | None = None,
    ):
        super().__init__(url, storage_options=storage_options, fsync=fsync)
        for name, value in (("lock_timeout", lock_timeout), ("retention", retention)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise InvalidArgumentError(f"{name}= takes seconds (a number >= 0), got {value!r}")
        self.format = fmt.name
        self.fmt = fmt  # how parts are written and scanned
        self.storage = Storage(url, storage_options, fsync)
        self.display = self.storage.display
        # Locally a read opens every part at once and an open file outlives its name: retired parts can go at
        # once. Elsewhere a read in another process fetches parts as it goes: they stay for an hour by default.
        self.retention = float(retention if retention is not None else 0 if self.storage.local else 3600)
        self.keys = parts_.KeyCache()
        self.holds = Holds(self._remove)
        self.manifests = Manifests(self.storage, fmt.name, self.holds.generation)
        self.pool = Writers(self.storage, fmt)
        self.plain = PlainTables(self.storage, fmt.name)
        self.plain_writes = PlainWrites(self.plain)
        self.tx = Transactions(
            self.storage,
            self.manifests,
            self.holds,
            self.pool.settle,
            self._remove,
            fmt.suffix,
            lock_timeout,
            self.retention,
            self.plain,
            self.plain_writes.publish,
        )
        self.reader = Reader(self.storage, self.manifests, self.holds, self.tx, self.pool, fmt)
        self.writes = ManagedWrites(
            self.storage, self.tx, self.pool, self.keys, self.reader, fmt.suffix, self.chunk_rows
        )
        self.asides = Asides(self.storage, self.manifests, self.tx, self.pool, self.reader, self._remove, fmt.suffix)

    def _dir(self, table: str) -> str:
        return self.storage.dir(table)

    def _remove(self, paths) -> None:
        paths = list(paths)
        self.keys.forget(paths)
        self.storage.remove(paths)

    # -- transactions --------------------------------------------------------------------------
    def transaction(self):
        return self.tx.transaction()

    def savepoint(self):
        return self.tx.savepoint()

    def claim(self, table):
        self.tx.claim(table)

    # -- catalogue -----------------------------------------------------------------------------
    def tables(self):
        return catalogue.tables(self.storage, self.manifests, self.plain)

    def schema(self, table):
        st = self.tx.get(table)
        return st.schema if st is not None else None

    def create(self, table, schema):
        folder_name(table)
        with self.transaction():
            self.claim(table)
            self.tx.get(table)
            base = self.tx.mine().base.get(table)
            if isinstance(base, Plain):  # a table another tool made, replaced: in the same place and layout
                self.tx.put(table, self.plain_writes.recreate(self.tx.mine(), base, schema))
                return
            with self.storage.io(f"creating table {table!r}"):
                names = self.storage.ls(self._dir(table))
                other = catalogue.other_format(self.storage, table, self.format, names)
            if other:
                raise StorageError(
                    f"table {table!r} in {self.display} is stored as {other}; open it with "
                    f"{other}://{self.url.split('://', 1)[1]}, or use another table name"
                )
            # parts a crashed writer left behind: removed when this table is published
            self.tx.mine().orphans[table] = [n for n in names if is_part(n, self.fmt.suffix)]
            self.tx.put(table, State(table, schema))

    def set_schema(self, table, schema):
        with self.transaction():
            self.tx.put(table, replace(self._existing(table), schema=schema))

    def add_columns(self, table, columns):
        # Only the schema changes: parts written before read the new columns as nulls (formats.py).
        with self.transaction():
            st = self._existing(table)
            if isinstance(st, Plain):
                self.tx.put(table, self.plain_writes.add_columns(st, list(columns)))
                return
            cols = st.schema.data_columns + list(columns) + st.schema.index_columns
            self.tx.put(table, replace(st, schema=replace(st.schema, columns=cols)))

    def vacuum(self, table: str, retention: float | None = None) -> list[str]:
        """Remove what no reader of the table's current version needs, once older than `retention` seconds
        (the store's by default): retired parts, earlier manifests, leftovers of crashed writers; their names.

        Leftovers and manifests go only once older than the store's retention too, unless the table's lock
        is held (locally): elsewhere a running writer's new parts look just the same, and a writer may still
        be trying to put a manifest's version (commit.py relies on the store's retention for that).
        """
        return self.tx.vacuum(table, self.retention if retention is None else retention)

    def drop(self, table):
        with self.transaction():
            self.claim(table)
            if self.tx.get(table) is not None:
                self.tx.put(table, None)

    def _existing(self, table: str) -> State | Plain:
        st = self.tx.get(table)
        if st is None:
            raise TableNotFoundError(f"no table {table!r} in {self.display}")
        return st

    # -- writing -------------------------------------------------------------------------------
    def prepare(self, data, schema):
        return self.fmt.prepare(data, schema)

    def write(self, table, data, schema, mode):
        with self.transaction():
            found = self._existing(table)
            changed: State | Plain
            if isinstance(found, Plain):
                changed, existed = self.plain_writes.write(self.tx.mine(), found, data, schema, mode)
            else:
                changed, existed = self.writes.write(found, data, schema, mode)
            self.tx.put(table, changed)
            return existed

    def delete(self, table, keys, schema):
        with self.transaction():
            found = self._existing(table)
            changed: State | Plain
            if isinstance(found, Plain):
                changed, hit = self.plain_writes.delete(self.tx.mine(), found, keys, schema)
            else:
                changed, hit = self.writes.delete(found, keys, schema)
            self.tx.put(table, changed)
            return hit

    # -- a new table loaded by many writers at once (aside.py) ----------------------------------
    def open_aside(self, table, schema):
        return self.asides.open(table, schema)

    def clear_aside(self, aside, part, schema):
        self.asides.clear(aside, part, schema)

    def write_aside(self, aside, part, data, schema, rows):
        self.asides.write(aside, part, data, schema, rows)

    def take_aside(self, aside, schema, part, rows, keys):
        return self.asides.take(aside, schema, part, rows, keys)

    def swap_in(self, aside, table, schema):
        self.asides.swap_in(aside, table, schema)

    def drop_aside(self, aside):
        self.asides.drop(aside)

    # -- reading -------------------------------------------------------------------------------
    def read(self, table, schema, columns, where, order, limit, batch_rows):
        head = self.manifests.stashed(table) if self.tx.current() is None else None
        st = head.state if head is not None and head.state is not None else self.tx.get(table)
        if isinstance(st, Plain):
            return plain_reading.read(self.plain, st, schema, columns, where, order, limit, batch_rows)
        return self.reader.read(table, schema, columns, where, order, limit, batch_rows)

    def next_version(self, table):
        return self.tx.next_version(table)

    def close(self):
        self.keys.clear()
        self.pool.close()
