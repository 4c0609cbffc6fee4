"""The manifests of a table: one small JSON file per version, `_dk_<format>/<version>.json`, that says
which parts, in which order, with which first and last keys, make up the table, with its dk schema.
A part the newest manifest does not list is not part of the table.

A version's manifest is written once, put-if-absent, and never changed: of two writers of the
same version one fails, so commits cannot overwrite each other. A drop writes an empty one. Each
manifest also lists the parts retired by recent versions and since when, so that they are removed
only once no reader that started earlier can need them (the store's retention).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ...errors import StorageError
from ...schema import TableSchema
from . import parts as parts_
from .storage import Entry, Storage

_REUSE_SECONDS = 5.0  # the manifest schema() read serves the same thread's next call (save, load) this long
_NUMBERED = re.compile(r"\d{20}\.json")


def is_numbered(name: str) -> bool:
    """Whether a file name is that of a version's manifest."""
    return bool(_NUMBERED.fullmatch(name))


@dataclass(frozen=True)
class Part:
    file: str  # name inside the table's folder
    rows: int
    size: int | None = None  # bytes: read without asking the store for it
    lo: tuple | None = None  # first key (keyed tables: every part is sorted by key)
    hi: tuple | None = None  # last key

    @property
    def bounds(self) -> tuple[tuple, tuple]:
        """(first key, last key), which every part of a keyed table has."""
        assert self.lo is not None and self.hi is not None, f"part {self.file} of a table without a key"
        return self.lo, self.hi


@dataclass(frozen=True)
class State:
    """One version of a table: what its manifest says. Immutable: changes make a new one."""

    name: str
    schema: TableSchema
    parts: tuple[Part, ...] = ()
    version: int = 0  # of the manifest it was read from (0: never published)
    stamp: str | None = None  # unique to that publish: a table dropped and created again is another table
    retired: tuple[tuple[str, float], ...] = ()  # (file, since when) of parts earlier versions listed


@dataclass(frozen=True)
class Head:
    """The newest manifest of a table: its version (0: none) and stamp, and the table it holds (None: no table)."""

    version: int = 0
    stamp: str | None = None
    state: State | None = None
    legacy: bool = False  # read from the single manifest of earlier releases, _dk_<format>.json
    versions: dict = field(default_factory=dict, compare=False)  # the versions listed beside it -> Entry
    listed: float = field(default_factory=time.time, compare=False)  # when they were listed


class Manifests:
    """The manifests of one store's tables in one format: read, parsed and published."""

    def __init__(self, storage: Storage, fmt: str, generation: Callable[[str], int] = lambda folder: 0):
        self.storage = storage
        self.fmt = fmt
        self.log = f"_dk_{fmt}"  # the folder of a table's manifests
        self.legacy = f"_dk_{fmt}.json"
        self._generation = generation  # folder -> how many commits of this store retired files in it
        self._stash: dict[int, tuple] = {}  # thread -> (table, time, head, generation) last read

    def folder(self, table: str) -> str:
        return f"{self.storage.dir(table)}/{self.log}"

    def path(self, table: str, version: int) -> str:
        return f"{self.folder(table)}/{version:020d}.json"

    def versions(self, table: str) -> dict[int, Entry]:
        """The versions of the table's manifests -> their age and size."""
        return self._list(table)[0]

    def _list(self, table: str) -> tuple[dict[int, Entry], bool]:
        """The versions of the table's manifests, and whether a legacy manifest may be there."""
        s = self.storage
        if s.s3:  # the log and the legacy manifest in one listing
            found = s.find(s.dir(table), self.log)
            return self.numbered(
                {n[len(self.log) + 1 :]: e for n, e in found.items() if n.startswith(self.log + "/")}
            ), self.legacy in found
        return self.numbered(s.entries(self.folder(table))), True

    @staticmethod
    def numbered(entries: dict[str, Entry]) -> dict[int, Entry]:
        """The manifests among a log folder's entries, by version."""
        return {int(n[:-5]): e for n, e in entries.items() if is_numbered(n)}

    @staticmethod
    def superseded(versions: dict[int, Entry], newest: int, retention: float) -> list[int]:
        """Versions before `newest` whose successor was written at least `retention` seconds ago: no writer
        can still be trying to put them (one that does finds a newer version and gives up, see commit.py)."""
        return [
            v for v in versions if v < newest and (versions[v + 1].age if v + 1 in versions else math.inf) >= retention
        ]

    def head(self, table: str) -> Head:
        """The newest manifest of the table."""
        s = self.storage
        with s.io(f"reading table {table!r}"):
            for _ in range(3):  # the newest may be removed between the listing and the read (a local drop)
                listed = time.time()
                versions, legacy = self._list(table)
                if not versions:
                    raw = s.cat(f"{s.dir(table)}/{self.legacy}") if legacy else None
                    return Head() if raw is None else self.parse(table, raw, legacy=True)
                newest = max(versions)
                raw = s.cat(self.path(table, newest)) if versions[newest].size else b""  # empty: dropped
                if raw is not None:
                    return replace(self.parse(table, raw, newest), versions=versions, listed=listed)
        raise StorageError(f"table {table!r} in {s.display} keeps changing; read it again")

    def load(self, table: str, reuse: bool = False, stash: bool = True) -> tuple[Head, int]:
        """The newest manifest, and how many commits of this store had retired files of the table before it
        was read. `reuse` takes the one this thread just read, if recent; `stash` keeps this one."""
        me = threading.get_ident()
        stashed = self._stash.pop(me, None)
        if reuse and stashed and stashed[0] == table and time.monotonic() - stashed[1] < _REUSE_SECONDS:
            return stashed[2], stashed[3]
        generation = self._generation(self.storage.dir(table))
        head = self.head(table)
        if stash:
            self._stash[me] = (table, time.monotonic(), head, generation)
        return head, generation

    def forget(self, everyone: bool = False) -> None:
        """Drop the stashed reads (this thread's, or every thread's: a commit replaced them)."""
        if everyone:
            self._stash.clear()
        else:
            self._stash.pop(threading.get_ident(), None)

    def parse(self, table: str, raw: bytes, version: int | None = None, legacy: bool = False) -> Head:
        """The manifest `raw` of version `version` (an empty one: the table was dropped at that version)."""
        if not raw:
            return Head(version or 0)
        try:
            d = json.loads(raw)
        except ValueError as e:
            raise StorageError(
                f"table {table!r} in {self.storage.display}: its manifest is not valid JSON ({e})"
            ) from e
        if d.get("format") != self.fmt:
            raise StorageError(f"table {table!r} in {self.storage.display}: manifest of format {d.get('format')!r}")
        version, stamp = d["version"], d.get("stamp")
        schema = TableSchema.from_json(json.dumps(d["schema"]), table)
        bounds = parts_.decode_bounds(d.get("bounds")) if schema.key else None
        parts = tuple(
            Part(
                p["file"],
                p["rows"],
                p.get("bytes"),
                bounds[2 * i] if bounds else None,
                bounds[2 * i + 1] if bounds else None,
            )
            for i, p in enumerate(d["parts"])
        )
        retired = tuple((r["file"], r["since"]) for r in d.get("retired", ()))
        return Head(version, stamp, State(d.get("table", table), schema, parts, version, stamp, retired), legacy)

    def encode(self, table: str, st: State | None, version: int) -> bytes:
        """The manifest of version `version`: the table `st`, or when it is None (dropped) an empty file,
        which a listing tells apart by its size."""
        if st is None:
            return b""
        doc = {
            "dataknobs_pd": 2,
            "format": self.fmt,
            "table": table,
            "version": version,
            "stamp": uuid.uuid4().hex,
            "committed": time.time(),
            "schema": json.loads(st.schema.to_json()),
            "parts": [{"file": p.file, "rows": p.rows, "bytes": p.size} for p in st.parts],
        }
        if st.schema.key and st.parts:
            doc["bounds"] = parts_.encode_bounds([b for p in st.parts for b in p.bounds], st.schema)
        doc["retired"] = [{"file": f, "since": since} for f, since in st.retired]
        return json.dumps(doc, indent=1).encode()

    def put(self, table: str, st: State | None, version: int) -> bool:
        """Publish version `version` unless a manifest of that version exists (False then)."""
        s = self.storage
        with s.io(f"publishing table {table!r}"):
            s.ensure_dir(self.folder(table))
            return s.put_new(self.path(table, version), self.encode(table, st, version))

    def remove(self, table: str, versions) -> None:
        self.storage.remove(self.path(table, v) for v in versions)
