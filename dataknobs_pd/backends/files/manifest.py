"""The manifests of a table: one small JSON file per version, `_dk_<format>/<version>.json`, that says
which parts, in which order, with which first and last keys, make up the table, with its dk schema.
A part the newest manifest does not list is not part of the table.

A version's manifest is written once, put-if-absent, and never changed: of two writers of the
same version one fails, so commits cannot overwrite each other. A drop writes one that says so
("dropped"). Each manifest also lists the parts retired by recent versions and since when, so that
they are removed only once no reader that started earlier can need them (the store's retention).

A manifest is published whole (storage.put_new: written aside, synced, read back and checked, then
linked to its name), so a crash or a full disk cannot tear one. A numbered file that is empty or
not valid JSON is still never a version (a file system without hard links fills the name after
creating it; earlier releases wrote a drop as an empty file, which cannot be told from a torn one):
readers take the newest manifest that is, and the next commit numbers past it.

The tables kept beside a table (its batch log, quarantine and undo images: base.COMPANIONS) are published
before it, one at a time, so the table's own manifest is the commit point of them all: a companion's
manifest published in the transaction of its table says so (`owner`), and the table's manifest names the
version of each companion that goes with it (`companions`). A companion's newest manifest that names an owner
is its version only when the owner's newest manifest names it; otherwise the version the owner names is (none:
there is no companion), and the newer one is what a call that never committed left (a crash, a failure
between the publishes). The named version is never removed before the owner names a newer one: a manifest
goes only after a later commit of the companion, which its owner's commit names.
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

from ...errors import InternalError, StorageError
from ...schema import TableSchema
from . import parts as parts_
from .storage import Entry, Storage

_REUSE_SECONDS = 5.0  # the manifest schema() read serves the same thread's next call (save, load) this long
_NUMBERED = re.compile(r"\d{20}\.json")
DROPPED_MAX = 512  # bytes: a drop's manifest is smaller (a table's may be too); see catalogue.tables


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
        if self.lo is None or self.hi is None:
            raise InternalError(f"part {self.file} of a table without a key")
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
    companions: tuple[tuple[str, int], ...] | None = None  # the version of each companion that goes with it


@dataclass(frozen=True)
class Head:
    """The newest manifest of a table: its version (0: none) and stamp, and the table it holds (None: no table)."""

    version: int = 0
    stamp: str | None = None
    state: State | None = None
    legacy: bool = False  # read from the single manifest of earlier releases, _dk_<format>.json
    versions: dict = field(default_factory=dict, compare=False)  # the versions listed beside it -> Entry
    listed: float = field(default_factory=time.time, compare=False)  # when they were listed
    top: int = 0  # the highest version listed, one that holds no version (empty, cut short) too
    owner: str | None = None  # a companion's: the table it was published with (see the module's docstring)
    strays: tuple[str, ...] = ()  # parts a newer manifest of a call that never committed lists (not the table's)

    @property
    def next(self) -> int:
        """The version the next commit puts: past every manifest listed, so never one a torn file holds."""
        return max(self.version, self.top) + 1


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
        """The newest manifest of the table that holds a version: an empty or cut-short one is skipped."""
        s = self.storage
        with s.io(f"reading table {table!r}"):
            for _ in range(3):  # a manifest may be removed between the listing and the read (a local drop)
                listed = time.time()
                versions, legacy = self._list(table)
                found = self._newest(table, versions)
                if found is None:
                    continue
                if not found.version and legacy:  # no numbered manifest holds a version: an earlier release's?
                    raw = s.cat(f"{s.dir(table)}/{self.legacy}")
                    doc = self._document(raw) if raw is not None else None
                    if doc is not None:
                        found = self._head(table, doc, legacy=True)
                found = replace(found, top=max(versions, default=0), versions=versions, listed=listed)
                return self._owned(table, found)
        raise StorageError(f"table {table!r} in {s.display} keeps changing; read it again")

    def _newest(self, table: str, versions: dict[int, Entry]) -> Head | None:
        """The newest of `versions` that holds a version (Head() when none does); None when one of them
        was removed after the listing."""
        for v in sorted(versions, reverse=True):
            raw = self.storage.cat(self.path(table, v)) if versions[v].size else b""
            if raw is None:
                return None
            doc = self._document(raw)
            if doc is not None:
                return self._head(table, doc)
        return Head()

    def _owned(self, table: str, found: Head) -> Head:
        """A companion's newest manifest, or the version of it its owner names (see the module's docstring):
        the same head (version, stamp, top: what the next commit numbers past) holding that version's table."""
        if found.owner is None:
            return found
        owner = self.head(found.owner).state
        if owner is not None and owner.companions is None:  # an owner written by a release without the names
            return found
        named = dict(owner.companions or ()) if owner is not None else {}
        version = named.get(table)
        if version == found.version:
            return found
        st = None
        if version is not None:
            raw = self.storage.cat(self.path(table, version))
            doc = self._document(raw) if raw is not None else None
            if doc is None:
                raise StorageError(
                    f"table {table!r} in {self.storage.display}: the manifest of version {version}, which table "
                    f"{found.owner!r} names, is missing or cut short"
                )
            st = self._head(table, doc).state
        mine = {p.file for p in st.parts} | {f for f, _ in st.retired} if st is not None else set()
        strays = tuple(p.file for p in found.state.parts if p.file not in mine) if found.state is not None else ()
        return replace(found, state=st, strays=strays)

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

    def stashed(self, table: str) -> Head | None:
        """The manifest of `table` this thread just read (what `load(reuse=True)` would take), left stashed."""
        found = self._stash.get(threading.get_ident())
        if found and found[0] == table and time.monotonic() - found[1] < _REUSE_SECONDS:
            return found[2]
        return None

    def forget(self, everyone: bool = False) -> None:
        """Drop the stashed reads (this thread's, or every thread's: a commit replaced them)."""
        if everyone:
            self._stash.clear()
        else:
            self._stash.pop(threading.get_ident(), None)

    def parse(self, table: str, raw: bytes, version: int | None = None, legacy: bool = False) -> Head:
        """The manifest `raw` (of version `version`); one empty or cut short is an error."""
        doc = self._document(raw)
        if doc is None:
            raise StorageError(
                f"table {table!r} in {self.storage.display}: its manifest"
                f"{'' if version is None else f' of version {version}'} is empty or cut short (not valid JSON)"
            )
        return self._head(table, doc, legacy)

    @staticmethod
    def _document(raw: bytes) -> dict | None:
        """A manifest's JSON document; None for a file that holds none: empty or cut short by a crash or a
        full disk (every proper prefix of a JSON object is invalid JSON)."""
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def _head(self, table: str, d: dict, legacy: bool = False) -> Head:
        if d.get("format") != self.fmt:
            raise StorageError(f"table {table!r} in {self.storage.display}: manifest of format {d.get('format')!r}")
        version, stamp, owner = d["version"], d.get("stamp"), d.get("owner")
        if d.get("dropped"):
            return Head(version, stamp, None, legacy, owner=owner)
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
        named = d.get("companions")
        companions = tuple(sorted((str(c), int(v)) for c, v in named.items())) if isinstance(named, dict) else None
        st = State(d.get("table", table), schema, parts, version, stamp, retired, companions)
        return Head(version, stamp, st, legacy, owner=owner)

    def encode(self, table: str, st: State | None, version: int, owner: str | None = None) -> bytes:
        """The manifest of version `version`: the table `st`, or when it is None a drop, a small document
        (no table name, at most an owner's: at most DROPPED_MAX bytes) that says "dropped"; a companion's
        published with its table names it (`owner`)."""
        doc: dict = {"dataknobs_pd": 2, "format": self.fmt}
        if owner is not None:
            doc["owner"] = owner
        if st is None:
            doc.update(version=version, stamp=uuid.uuid4().hex, committed=time.time(), dropped=True)
            return json.dumps(doc, indent=1).encode()
        doc.update(
            table=table,
            version=version,
            stamp=uuid.uuid4().hex,
            committed=time.time(),
            schema=json.loads(st.schema.to_json()),
            parts=[{"file": p.file, "rows": p.rows, "bytes": p.size} for p in st.parts],
        )
        if st.schema.key and st.parts:
            doc["bounds"] = parts_.encode_bounds([b for p in st.parts for b in p.bounds], st.schema)
        doc["retired"] = [{"file": f, "since": since} for f, since in st.retired]
        if st.companions is not None:
            doc["companions"] = dict(st.companions)
        return json.dumps(doc, indent=1).encode()

    def put(self, table: str, st: State | None, version: int, owner: str | None = None) -> bool:
        """Publish version `version` unless a manifest of that version exists (False then): whole, read back
        and checked first (see Storage.put_new)."""
        s = self.storage
        with s.io(f"publishing table {table!r}"):
            s.ensure_dir(self.folder(table))
            raw = self.encode(table, st, version, owner)
            return s.put_new(self.path(table, version), raw, lambda back: self._check(table, st, version, back))

    def _check(self, table: str, st: State | None, version: int, raw: bytes) -> None:
        """That a manifest about to be published says what it should: its version, and the parts of `st`
        (none, dropped, when it is None)."""
        head = self.parse(table, raw, version)
        want = None if st is None else [(p.file, p.rows) for p in st.parts]
        got = None if head.state is None else [(p.file, p.rows) for p in head.state.parts]
        if head.version != version or got != want:
            raise StorageError(
                f"table {table!r} in {self.storage.display}: the manifest of version {version} does not read "
                f"back as written; nothing was published"
            )

    def remove(self, table: str, versions) -> None:
        self.storage.remove(self.path(table, v) for v in versions)
