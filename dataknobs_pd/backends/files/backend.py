"""FileBackend: the tables of a folder in one file format (formats.py): catalogue, writes by key,
compaction and the pool that writes parts while the next chunk converts; reads are in reading.py.
Tables other tools made (plain files and folders, no manifest) are read and written by plain.py."""

from __future__ import annotations

import os
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import replace

import numpy as np
import pyarrow as pa

from ...errors import ConcurrentWriteError, InvalidArgumentError, StorageError, TableNotFoundError
from ...failures import inserted
from ...schema import TableSchema
from ..base import Backend, conform, put_rows
from . import parts as parts_
from . import reading
from .commit import Holds, Transactions, Tx, is_part
from .formats import Format
from .manifest import DROPPED_MAX, Manifests, Part, State
from .plain import Plain, PlainTables
from .storage import Storage, folder_name, table_of

_MAX_PARTS = 64  # past this, writes merge small parts


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
        )

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
        s, m = self.storage, self.manifests
        with s.io("listing tables"):
            listed: Mapping[str, dict | None]
            if s.object_store:  # every key under the root in one listing
                folders: dict[str, dict] = {}
                for key, e in s.find(s.root).items():
                    folder, _, rest = key.partition("/")
                    folders.setdefault(folder, {})[rest] = e
                listed = folders
            else:
                listed = dict.fromkeys(s.ls(s.root) if not s.local or os.path.isdir(s.root) else [])
            names = []
            for folder, files in listed.items():
                table = table_of(folder)
                if table is None:
                    continue
                if files is None:
                    versions = m.versions(table)
                    legacy = not versions and s.exists(f"{s.dir(table)}/{m.legacy}")
                else:
                    versions = m.numbered(
                        {r[len(m.log) + 1 :]: e for r, e in files.items() if r.startswith(m.log + "/")}
                    )
                    legacy = m.legacy in files
                # An upload to an object store is whole or absent: a manifest bigger than a drop's holds a table.
                # Otherwise the newest manifest that holds a version says (a torn one is skipped, see manifest.py).
                if s.object_store and versions and versions[max(versions)].size > DROPPED_MAX:
                    names.append(table)
                elif (versions or legacy) and m.head(table).state is not None:
                    names.append(table)
        return sorted(names + self.plain.names(set(names)))

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
                self.tx.put(table, self.plain.recreate(self.tx.mine(), base, schema))
                return
            with self.storage.io(f"creating table {table!r}"):
                names = self.storage.ls(self._dir(table))
                other = next((o for o in self._formats_in(names) if Manifests(self.storage, o).head(table).state), None)
            if other:
                raise StorageError(
                    f"table {table!r} in {self.display} is stored as {other}; open it with "
                    f"{other}://{self.url.split('://', 1)[1]}, or use another table name"
                )
            # parts a crashed writer left behind: removed when this table is published
            self.tx.mine().orphans[table] = [n for n in names if is_part(n, self.fmt.suffix)]
            self.tx.put(table, State(table, schema))

    def _formats_in(self, names: list[str]) -> list[str]:
        """Other formats whose manifests are in a table's folder (names of its entries)."""
        found = {n[4:].removesuffix(".json") for n in names if n.startswith("_dk_")}
        return sorted(found - {self.format})

    def set_schema(self, table, schema):
        with self.transaction():
            self.tx.put(table, replace(self._existing(table), schema=schema))

    def add_columns(self, table, columns):
        # Only the schema changes: parts written before read the new columns as nulls (formats.py).
        with self.transaction():
            st = self._existing(table)
            if isinstance(st, Plain):
                self.tx.put(table, self.plain.add_columns(st, list(columns)))
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
        retention = self.retention if retention is None else retention
        with self.transaction():
            self.claim(table)
            locked = table in self.tx.mine().locks
            with self.storage.io(f"vacuuming table {table!r}"):
                head = self.manifests.head(table)
                st = head.state
                if st is None:
                    return []
                now, folder = time.time(), self._dir(table)
                old = {f for f, since in st.retired if now - since >= retention}
                gone = [f"{folder}/{f}" for f in sorted(old)]
                grace = retention if locked else max(retention, self.retention)
                gone += self.tx.sweep(table, st, grace)
                stale = self.manifests.superseded(self.manifests.versions(table), head.version, grace)
                self.manifests.remove(table, stale)
                if not head.legacy:  # the single manifest of an earlier release, if any, is stale too
                    self.storage.remove([f"{folder}/{self.manifests.legacy}"])
            self.holds.retire(gone)
        return [p.rsplit("/", 1)[-1] for p in gone] + [f"{self.manifests.log}/{v:020d}.json" for v in stale]

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
            if isinstance(found, Plain):
                changed, existed_plain = self.plain.write(self.tx.mine(), found, data, schema, mode)
                self.tx.put(table, changed)
                return existed_plain
            st = replace(found, schema=_kept(found.schema, schema))
            n = data.num_rows
            if schema.key:
                order = parts_.sort_order(data, schema.key)
                part_of, row_of = self._locate(st, data, order, schema.key)
            else:
                order, part_of, row_of = None, np.full(n, -1), np.full(n, -1)
            existed = part_of >= 0
            parts = list(st.parts)
            if mode != "insert" and existed.any():
                for p in np.unique(part_of[existed]):
                    sel = np.flatnonzero(part_of == p)
                    old = self._read_whole(st, parts[p])
                    parts[p] = self._write_part(st, put_rows(old, data.take(sel), row_of[sel]))
            new_rows = inserted(data, schema, mode, existed)
            if len(new_rows):
                if order is not None and st.schema.key:  # a keyed table's parts are sorted by key
                    new_rows = order[np.isin(order, new_rows)] if len(new_rows) < n else order
                whole = len(new_rows) == n and bool((new_rows == np.arange(n)).all())
                add = data if whole else data.take(pa.array(new_rows))
                parts.append(self._write_part(st, parts_.complete(add, schema)))
            self.tx.put(table, replace(st, parts=tuple(self._compact(st, parts))))
            return existed if existed.any() else None

    def delete(self, table, keys, schema):
        with self.transaction():
            found = self._existing(table)
            if isinstance(found, Plain):
                changed, hit = self.plain.delete(self.tx.mine(), found, keys, schema)
                self.tx.put(table, changed)
                return hit
            st = replace(found, schema=_kept(found.schema, schema))
            part_of, row_of = self._locate(st, keys, parts_.sort_order(keys, schema.key), schema.key)
            parts: list = list(st.parts)
            for p in np.unique(part_of[part_of >= 0]):
                keep = np.ones(parts[p].rows, dtype=bool)
                keep[row_of[part_of == p]] = False
                rest = self._read_whole(st, parts[p]).filter(pa.array(keep))
                parts[p] = self._write_part(st, rest) if rest.num_rows else None
            self.tx.put(table, replace(st, parts=tuple(p for p in parts if p is not None)))
            return part_of >= 0

    def _compact(self, st: State, parts: list[Part]) -> list[Part]:
        """Merge small parts once a table has many, so that reads open (and merge) few files.

        Keyed tables merge any small parts (and sort them again); tables without a key only
        neighbouring ones, to keep the insertion order. One merge never exceeds a full part.
        """
        if len(parts) <= _MAX_PARTS:
            return parts
        full = self.chunk_rows(len(st.schema.columns))
        small = [i for i, p in enumerate(parts) if p.rows < full // 2]
        if st.schema.key:
            small.sort(key=lambda i: parts[i].rows)
        groups: list[list[int]] = []
        group: list[int] = []
        rows = 0
        for i in small:
            adjacent = st.schema.key or not group or i == group[-1] + 1
            if group and (rows + parts[i].rows > full or not adjacent):
                groups.append(group)
                group, rows = [], 0
            group.append(i)
            rows += parts[i].rows
        groups.append(group)
        out: list = list(parts)
        for group in (g for g in groups if len(g) > 1):
            data = pa.concat_tables([self._read_whole(st, parts[i]) for i in sorted(group)])
            if st.schema.key:
                data = data.sort_by([(k, "ascending") for k in st.schema.key])
            out[min(group)] = self._write_part(st, data)
            for i in group:
                if i != min(group):
                    out[i] = None
        return [p for p in out if p is not None]

    def _write_part(self, st: State, data: pa.Table) -> Part:
        """Write rows (all columns, sorted by key when keyed) as a new part file, in the background."""
        name = f"part-{uuid.uuid4().hex[:20]}{self.fmt.suffix}"
        folder = self._dir(st.name)
        path = f"{folder}/{name}"
        with self.storage.io(f"writing table {st.name!r}"):
            self.storage.ensure_dir(folder)
        self.pool.submit(self.tx.mine(), path, data.replace_schema_metadata(None), st.schema)
        lo = hi = None
        if st.schema.key:
            keys = data.select(st.schema.key)
            self.keys.put(path, keys)
            lo, hi = parts_.row(keys, 0), parts_.row(keys, data.num_rows - 1)
        return Part(name, data.num_rows, None, lo, hi)

    def _locate(self, st: State, data: pa.Table, order: np.ndarray, key: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """For each row of `data`: the part holding its `key` and the row there (-1, -1 when absent). `key` is
        the table's own (parts are ruled out by their key range), or a call's key= on a table without one."""
        n = data.num_rows
        part_of, row_of = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        if not st.parts or n == 0:
            return part_of, row_of
        keys = data.select(key)
        kmin, kmax = parts_.row(keys, int(order[0])), parts_.row(keys, int(order[-1]))
        for i, part in enumerate(st.parts):
            if st.schema.key:
                lo, hi = part.bounds
                if hi < kmin or lo > kmax:
                    continue
            pos = parts_.match(self._part_keys(st, part, key), keys, key)
            hit = pos >= 0
            part_of[hit], row_of[hit] = i, pos[hit]
        return part_of, row_of

    def _part_keys(self, st: State, part: Part, key: list[str]) -> pa.Table:
        if key != st.schema.key:  # a call's key= on a table without a key: its columns are not cached
            return self._read_whole(st, part, key)
        path = f"{self._dir(st.name)}/{part.file}"
        keys = self.keys.get(path)
        if keys is None:
            keys = self._read_whole(st, part, key)
            self.keys.put(path, keys)
        return keys

    def _read_whole(self, st: State, part: Part, columns: list[str] | None = None) -> pa.Table:
        columns = columns or st.schema.names
        target = pa.schema([st.schema.column(c).field for c in columns])
        tables = list(reading.scan(self, st, part, columns, None, 1 << 30))
        return pa.concat_tables([conform(t, target) for t in tables]) if tables else target.empty_table()

    # -- a new table loaded by many writers at once (see Backend.open_aside) -------------------------
    # The writers put their part files in the table's folder (unlisted, so no reader sees them) and, at
    # the end of each partition's transaction, a record of that partition's parts (a manifest of its own,
    # `_dk_aside/<job>/<partition>.json`, replaced by a later try); swap_in lists them all in the table's
    # next manifest. The aside's name is "<job>/<table>".
    def open_aside(self, table, schema):
        if not schema.key:  # a keyless table keeps its rows in the order one writer inserted them
            return None
        if isinstance(self.tx.get(table), Plain):  # replaced in its own place and layout, by one writer
            return None
        with self.storage.io(f"writing table {table!r}"):
            self.storage.ensure_dir(self._dir(table))
        return f"{uuid.uuid4().hex[:16]}/{table}"

    def _record(self, aside: str, part: int | None = None) -> str:
        job, table = aside.split("/", 1)
        folder = f"{self._dir(table)}/_dk_aside/{job}"
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

    def clear_aside(self, aside, part, schema):
        """The partition starts with no parts; at commit its record is replaced, and the parts an earlier
        try of it recorded are removed."""
        tx, table = self.tx.mine(), aside.split("/", 1)[1]
        written: list[Part] = []

        def then():
            with self.storage.io(f"writing table {table!r}"):
                earlier = self._parts_of(aside, part)
                self._put_record(aside, part, schema, written)
            kept = {p.file for p in written}
            self._remove(f"{self._dir(table)}/{p.file}" for p in earlier if p.file not in kept)

        then.written = written  # type: ignore[attr-defined]
        tx.after[(aside, part)] = then

    def write_aside(self, aside, part, data, schema, rows):
        data = data.take(pa.array(parts_.sort_order(data, schema.key)))
        self.tx.mine().after[(aside, part)].written.append(self._write_aside_part(aside, data, schema))

    def _write_aside_part(self, aside: str, data: pa.Table, schema) -> Part:
        """Write rows sorted by key as a part file of the aside's table, now (not in the background)."""
        job, table = aside.split("/", 1)
        data = parts_.complete(data, schema).replace_schema_metadata(None)
        file = f"part-{job}-{uuid.uuid4().hex[:16]}{self.fmt.suffix}"
        with self.storage.io(f"writing table {table!r}"):
            size = self.pool.write(f"{self._dir(table)}/{file}", data, schema)
        keys = data.select(schema.key)
        return Part(file, data.num_rows, size, parts_.row(keys, 0), parts_.row(keys, data.num_rows - 1))

    def take_aside(self, aside, schema, part, rows, keys):
        table = aside.split("/", 1)[1]
        st = State(table, schema, self._parts_of(aside, part))
        out: list[pa.Table | None] = [None] * keys.num_rows
        kept = []
        for p in st.parts:
            whole = self._read_whole(st, p)
            rest = parts_.take_keys(whole, keys, schema.key, out)
            if rest is whole:
                kept.append(p)
            elif rest is not None:
                kept.append(self._write_aside_part(aside, rest, schema))
        with self.storage.io(f"writing table {table!r}"):
            self._put_record(aside, part, schema, kept)
        self._remove(f"{self._dir(table)}/{p.file}" for p in st.parts if p not in kept)
        found = [t for t in out if t is not None]
        return pa.concat_tables(found) if found else schema.arrow_schema.empty_table()

    def swap_in(self, aside, table, schema):
        folder, records = self._dir(table), self._record(aside)
        with self.storage.io(f"writing table {table!r}"):
            names = sorted(n for n in self.storage.ls(records) if n.endswith(".json"))
            parts = [p for n in names for p in self._parts_of(aside, int(n.rsplit("/", 1)[-1][:-5]))]
            there = set(self.storage.entries(folder, stat=False))
        gone = [p.file for p in parts if p.file not in there]
        if gone:  # another writer of the table swept them as leftovers meanwhile
            raise ConcurrentWriteError(
                f"table {table!r} in {self.display} was changed by another writer during this call "
                f"({len(gone)} new part(s) are gone); nothing was written"
            )
        self.tx.get(table)
        self.tx.put(table, State(table, schema, tuple(parts)))

    def drop_aside(self, aside):
        job, table = aside.split("/", 1)
        folder = self._dir(table)
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

    # -- reading -------------------------------------------------------------------------------
    def read(self, table, schema, columns, where, order, limit, batch_rows):
        head = self.manifests.stashed(table) if self.tx.current() is None else None
        st = head.state if head is not None and head.state is not None else self.tx.get(table)
        if isinstance(st, Plain):
            return self.plain.read(st, schema, columns, where, order, limit, batch_rows)
        return reading.read(self, table, schema, columns, where, order, limit, batch_rows)

    def close(self):
        self.keys.clear()
        self.pool.close()


def _kept(stored: TableSchema, schema: TableSchema) -> TableSchema:
    """The schema a write keeps for the table: the call's, less a key= the table does not have of its own."""
    return schema if stored.key or not schema.key else replace(schema, key=None)


class Writers:
    """The worker threads that write part files while the next chunk converts."""

    def __init__(self, storage: Storage, fmt: Format):
        self.storage, self.format = storage, fmt
        self.workers = max(2, min(4, os.cpu_count() or 2))
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, tx: Tx, path: str, data: pa.Table, schema) -> None:
        tx.created.append(path)
        while sum(not f.done() for f in tx.pending.values()) >= 2 * self.workers:  # bounded memory
            wait(list(tx.pending.values()), return_when=FIRST_COMPLETED)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="dk-files")
        tx.pending[path] = self._pool.submit(self.write, path, data, schema)

    def write(self, path: str, data: pa.Table, schema) -> int:
        """Write one part file (on a worker thread, or in the caller's), flushed to the disk before a manifest
        can list it; returns its size in bytes."""
        with self.storage.open_write(path) as out:
            self.format.write(out, data, schema)
            size = out.tell()
        return size

    def settle(self, tx: Tx, path: str | None = None, cancel: bool = False, needed: set | None = None) -> None:
        """Wait for the part writes still running (all, or the one of `path`); raise the first failure.

        A rollback (cancel=True) still waits, so that no file appears after its removal. With
        `needed`, only the failures of those paths count.
        """
        paths = [path] if path is not None else list(tx.pending)
        failure = None
        for p in paths:
            fut = tx.pending.pop(p, None)
            if fut is None or (cancel and fut.cancel()):
                continue
            try:
                tx.sizes[p] = fut.result()
            except BaseException as e:  # noqa: BLE001 - reported below, after every write has ended
                if needed is None or p in needed:
                    failure = failure or e
        if failure is not None and not cancel:
            table = urllib.parse.unquote(paths[0].rsplit("/", 2)[-2]) if paths else "?"
            with self.storage.io(f"writing table {table!r}"):
                raise failure

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
