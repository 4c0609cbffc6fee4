"""Transactions of a file store: the state of the open one, its commit (a new manifest, put-if-absent; for a
plain table, its staged files renamed into place, see plain.py), and the removal of the files no reader needs
any more (at once, or after the store's retention).

A transaction's tables are published one at a time, the tables kept beside a table first (base.publish_order)
and the table last: its manifest is the commit point of the call (manifest.py). A companion published with its
table names it as its owner, and the table's manifest names the companion versions that are its; a transaction
that changes a companion publishes its table too (a manifest of the same parts when its rows did not change).
Readers take the companion version the table names, so what a call that never committed left in a companion
(its batch log row, quarantined rows, undo images, and the rows it took out or marked) is not seen, and the
next commit of the companion builds on the named version, not on that one."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from ...errors import ConcurrentWriteError, InternalError
from ..base import owners, publish_order
from .manifest import Head, Manifests, State
from .plain import Plain, PlainTables
from .storage import Entry, Storage

_SWEEP_EVERY = 16  # every 16th version of a table lists its folder for leftovers of crashed writers


@dataclass
class Tx:
    """One open transaction: the tables as it sees them and the files it wrote."""

    owner: int
    states: dict = field(default_factory=dict)  # table -> State | Plain | None (absent / dropped)
    base: dict = field(default_factory=dict)  # table -> State | Plain | None, as committed when first touched
    heads: dict = field(default_factory=dict)  # table -> Head: the newest manifest when first touched
    created: list = field(default_factory=list)  # paths written by this transaction
    pending: dict = field(default_factory=dict)  # path -> Future of its write, still running
    sizes: dict = field(default_factory=dict)  # path -> bytes, once written
    orphans: dict = field(default_factory=dict)  # table -> file names found in its folder when (re)created
    locks: dict = field(default_factory=dict)  # table -> fd of its lock file, held until the transaction ends
    after: dict = field(default_factory=dict)  # name -> what to do once the commit is done (see aside.py)


class Holds:
    """The parts that reads of this store are reading: a commit retiring one removes it when they end."""

    def __init__(self, remove: Callable):
        self._remove = remove
        self._lock = threading.Lock()
        self._reading: dict[str, int] = {}  # part path -> reads holding it
        self._doomed: set[str] = set()  # parts retired while held
        self._retired: dict[str, int] = {}  # table folder -> commits of this store that retired files in it

    def generation(self, folder: str) -> int:
        """How many commits of this store have retired files in `folder`."""
        return self._retired.get(folder, 0)

    def hold(self, folder: str, paths: list[str], generation: int) -> bool:
        """Hold `paths` for a read; False (nothing held) when files of the folder were retired since `generation`."""
        with self._lock:
            if self._retired.get(folder, 0) != generation:
                return False
            for p in paths:
                self._reading[p] = self._reading.get(p, 0) + 1
        return True

    def release(self, paths: list[str]) -> None:
        """End a read's hold on its parts, removing those retired meanwhile."""
        with self._lock:
            for p in paths:
                if self._reading[p] > 1:
                    self._reading[p] -= 1
                else:
                    del self._reading[p]
            done = [p for p in paths if p in self._doomed and p not in self._reading]
            self._doomed.difference_update(done)
        self._remove(done)

    def retire(self, paths, folder: str | None = None) -> None:
        """Remove files a commit no longer lists; those a read holds, once it ends."""
        paths = list(paths)
        with self._lock:
            for f in {p.rsplit("/", 1)[0] for p in paths} | ({folder} if folder else set()):
                self._retired[f] = self._retired.get(f, 0) + 1
            held = {p for p in paths if p in self._reading}
            self._doomed |= held
        self._remove(p for p in paths if p not in held)


class Transactions:
    """The transactions of one store: one at a time, owned by the thread that opened it; nested ones
    are savepoints. Parts are written as the transaction goes; the commit publishes them at once."""

    def __init__(
        self,
        storage: Storage,
        manifests: Manifests,
        holds: Holds,
        settle: Callable,
        remove: Callable,
        suffix: str,
        lock_timeout: float,
        retention: float,
        plain: PlainTables,
        publish_plain: Callable,
    ):
        self.storage, self.manifests, self.holds = storage, manifests, holds
        self.plain = plain  # the tables other tools made, which have no manifest
        self._publish_plain = publish_plain  # publish_plain(tx, table, base, st): plain_writing.py
        self._settle = settle  # settle(tx, path=None, cancel=False, needed=None): wait for part writes
        self._remove = remove
        self.suffix = suffix
        self.lock_timeout = lock_timeout
        self.retention = retention  # seconds a retired part stays for the readers of earlier versions
        self._lock = threading.RLock()
        self._tx: Tx | None = None

    def current(self) -> Tx | None:
        tx = self._tx
        return tx if tx is not None and tx.owner == threading.get_ident() else None

    def mine(self) -> Tx:
        """This thread's open transaction, which every change of a table runs inside."""
        tx = self.current()
        if tx is None:
            raise InternalError("no transaction is open in this thread")
        return tx

    def get(self, table: str) -> State | Plain | None:
        """The table as this thread sees it: its transaction's view (loaded on first touch), else committed;
        a table without a manifest may be one another tool made (plain.py)."""
        tx = self.current()
        if tx is None:
            head = self.manifests.load(table)[0]
            return head.state if head.state is not None else self.plain.find(table)
        if table not in tx.states:
            head = self.manifests.load(table, reuse=True, stash=False)[0]
            tx.heads[table] = head
            found = head.state if head.state is not None else self.plain.find(table)
            tx.base[table] = tx.states[table] = found
            if head.strays:  # parts of a newer version that never committed: removed with the next publish
                tx.orphans[table] = [*tx.orphans.get(table, ()), *head.strays]
        return tx.states[table]

    def put(self, table: str, st: State | Plain | None) -> None:
        self.mine().states[table] = st

    @contextmanager
    def transaction(self):
        with self._lock:
            if self.current() is not None:
                with self.savepoint():
                    yield
                return
            tx = self._tx = Tx(threading.get_ident())
            try:
                try:
                    yield
                except BaseException:
                    self._tx = None
                    self._undo(tx)
                    raise
                try:
                    self._commit(tx)
                except BaseException:
                    self._settle(tx, cancel=True)
                    raise
                finally:
                    self._tx = None
            finally:
                for fd in tx.locks.values():
                    os.close(fd)  # closing the file releases its lock

    @contextmanager
    def savepoint(self):
        with self._lock:
            tx = self.current()
            if tx is None:
                with self.transaction():
                    yield
                return
            snapshot = dict(tx.states)
            try:
                yield
            except BaseException:
                tx.states = snapshot
                raise

    def claim(self, table: str) -> None:
        """Hold the table's lock until the transaction ends (local stores): its writers take turns.

        Across processes and across stores of the same folder; writers of one store already take
        turns on its thread lock. Object stores have no such lock: there the put-if-absent manifest
        lets one of two writers of the same version commit.
        """
        tx = self.current()
        if tx is None or table in tx.locks:
            return
        fd = self.storage.lock(table, self.lock_timeout)
        if fd is None:
            return
        tx.locks[table] = fd
        self.manifests.forget()  # read before the lock, so maybe stale: read it again

    def _undo(self, tx: Tx) -> None:
        """Roll back: no file of the transaction stays, nor the folder of a table it was creating."""
        self._settle(tx, cancel=True)
        self._remove(tx.created)
        for table in [t for t, base in tx.base.items() if base is None]:
            self.storage.rmdir(self.manifests.folder(table))  # only when empty: a failed first publish made it
            self.storage.rmdir(self.storage.dir(table))

    # -- commit ------------------------------------------------------------------------------------
    def _commit(self, tx: Tx) -> None:
        s = self.storage
        keep: set[str] = set()
        for t, st in tx.states.items():
            if isinstance(st, Plain):
                keep |= st.staged()
            elif st is not None:
                keep |= {f"{s.dir(t)}/{p.file}" for p in st.parts}
        changed = {t: st for t, st in tx.states.items() if st is not tx.base[t]}
        owned = self._owned(tx, changed)
        plain = {t for t in changed if isinstance(tx.base[t], Plain)}
        try:
            self._settle(tx, needed=keep)  # a part a savepoint undid may fail to write: no matter
            self.manifests.forget(everyone=True)  # no thread may reuse a version this commit replaces
            for table in publish_order(changed):
                if table not in tx.locks:
                    fd = s.lock(table, self.lock_timeout)
                    if fd is not None:
                        tx.locks[table] = fd
            for table in changed:  # under the lock: another store of the folder may have committed since
                if table in tx.locks and self._moved(tx.heads[table], self.manifests.head(table)):
                    raise self._conflict(table)
        except BaseException:
            self._undo(tx)
            raise
        done = {}
        published = []
        for table in publish_order(changed):
            try:
                if table in plain:
                    self._publish_plain(tx, table, tx.base[table], tx.states[table])
                    published.append(table)
                else:
                    done[table] = self._publish(tx, table, owned.get(table))
            except BaseException:
                if not done and not published:  # nothing is visible yet: as if the call had never run
                    self._undo(tx)
                else:  # the tables kept beside it are published (publish_order): the rest leaves no file
                    unpublished = tuple(f"{s.dir(t)}/" for t in changed if t not in done and t not in published)
                    self._remove([p for p in tx.created if p.startswith(unpublished)])
                raise
        stale = [p for p in tx.created if p not in keep]
        for table, versions in done.items():
            stale += self._clean(tx, table, versions)
        self.holds.retire(dict.fromkeys(stale))
        for table in [t for t in done if tx.states[t] is None]:
            self.storage.rmdir(self.manifests.folder(table))  # only when empty (a tombstone may stay)
            self.storage.rmdir(self.storage.dir(table))
        for then in tx.after.values():
            then()

    def _owned(self, tx: Tx, changed: dict) -> dict[str, str]:
        """The changed companions whose table is a managed table of this transaction, each with that table,
        which is then published too and names their new versions (see the module's docstring)."""
        found = {}
        for c, t in owners(tx.states).items():
            st = tx.states[t]
            if c not in changed or isinstance(st, Plain) or isinstance(tx.base[t], Plain):
                continue
            found[c] = t
            if st is None:  # the table is dropped too: its drop names none
                continue
            base = tx.base[t]
            named = dict(base.companions or ()) if isinstance(base, State) else {}
            if isinstance(st, State) and st.companions is not None:
                named.update(st.companions)
            named[c] = tx.heads[c].next
            tx.states[t] = changed[t] = replace(st, companions=tuple(sorted(named.items())))
        return found

    def next_version(self, table: str) -> int | None:
        """The version of `table` this thread's transaction publishes (a managed table: see Backend.next_version)."""
        tx = self.current()
        if tx is None or isinstance(self.get(table), Plain) or isinstance(tx.base.get(table), Plain):
            return None
        return tx.heads[table].next

    def _publish(self, tx: Tx, table: str, owner: str | None = None) -> dict[int, Entry]:
        """Put the table's next manifest (a companion's naming its `owner`); the versions its folder then holds."""
        s, version, st = self.storage, tx.heads[table].next, tx.states[table]
        folder = s.dir(table)
        if st is not None:
            parts = tuple(replace(p, size=tx.sizes.get(f"{folder}/{p.file}", p.size)) for p in st.parts)
            st = tx.states[table] = replace(st, parts=parts, retired=self._retired(tx.base[table], st))
        with s.io(f"publishing table {table!r}"):  # locally the names of its parts are made durable first
            s.ensure_dir(self.manifests.folder(table))
            s.sync_dir(folder)
            if tx.base[table] is None:  # and the table's folder's
                s.sync_dir(s.root)
        if not self.manifests.put(table, st, version, owner):
            raise self._conflict(table)
        head = tx.heads[table]
        since = time.time() - head.listed
        if since < self.retention:  # no manifest is removed younger: ours cannot be the put of a removed one
            return {**{v: Entry(e.age + since, e.size) for v, e in head.versions.items()}, version: Entry(0.0, 1)}
        versions = self.manifests.versions(table)
        if max(versions, default=version) > version:
            # A newer version exists, so ours was removed as superseded before we put it again: not ours.
            self.manifests.remove(table, [version])
            raise self._conflict(table)
        return versions

    def _retired(self, base: State | None, st: State) -> tuple:
        """The parts the new version keeps for readers of earlier ones: those retired within the retention."""
        if not self.retention or base is None:
            return ()
        now, listed = time.time(), {p.file for p in st.parts}
        kept = [(f, since) for f, since in base.retired if now - since < self.retention and f not in listed]
        return tuple(kept + [(p.file, now) for p in base.parts if p.file not in listed])

    def _clean(self, tx: Tx, table: str, versions: dict[int, Entry]) -> list[str]:
        """After a commit: remove the manifests no writer can race for any more; the files to retire."""
        s, head, base, st = self.storage, tx.heads[table], tx.base[table], tx.states[table]
        folder, version = s.dir(table), head.next
        if st is None:  # dropped: no reader needs its files; the tombstone stays while writers may race for it
            old = [v for v in versions if v < version or (v == version and table in tx.locks)]
        else:  # a manifest goes once no writer can still be trying to put its version
            old = self.manifests.superseded(versions, version, self.retention)
        self.manifests.remove(table, old)
        stale = [f"{folder}/{self.manifests.legacy}"] if head.legacy else []
        if st is None or version % _SWEEP_EVERY == 0:
            stale += self.sweep(table, st, 0.0 if st is None or table in tx.locks else self.retention)
        listed = {p.file for p in st.parts} if st else set()
        kept = listed | {f for f, _ in st.retired} if st else set()
        gone = {p.file for p in base.parts} | {f for f, _ in base.retired} if base else set()
        gone |= set(tx.orphans.get(table, ()))
        stale += [f"{folder}/{f}" for f in sorted(gone - kept)]
        return stale

    def sweep(self, table: str, st: State | None, grace: float) -> list[str]:
        """The part files (and temporary manifests) older than `grace` seconds that `st` neither lists nor
        keeps for earlier readers: leftovers of crashed writers (a running writer's parts are younger)."""
        folder, log = self.storage.dir(table), self.manifests.folder(table)
        keep = {p.file for p in st.parts} | {f for f, _ in st.retired} if st else set()
        out = [
            f"{folder}/{n}"
            for n, e in self.storage.entries(folder).items()
            if is_part(n, self.suffix) and n not in keep and e.age >= grace
        ]
        return out + [f"{log}/{n}" for n, e in self.storage.entries(log).items() if ".tmp-" in n and e.age >= grace]

    def vacuum(self, table: str, retention: float) -> list[str]:
        """FileBackend.vacuum: remove what no reader of the table's current version needs, once older than
        `retention` seconds (leftovers and manifests once older than the store's retention too, unless the
        table's lock is held); the names removed."""
        with self.transaction():
            self.claim(table)
            locked = table in self.mine().locks
            with self.storage.io(f"vacuuming table {table!r}"):
                head = self.manifests.head(table)
                st = head.state
                if st is None:
                    return []
                now, folder = time.time(), self.storage.dir(table)
                old = {f for f, since in st.retired if now - since >= retention}
                gone = [f"{folder}/{f}" for f in sorted(old)]
                grace = retention if locked else max(retention, self.retention)
                gone += self.sweep(table, st, grace)
                # a companion's: the version its table names (a newer one of a call that never committed stays)
                stale = self.manifests.superseded(self.manifests.versions(table), st.version, grace)
                self.manifests.remove(table, stale)
                if not head.legacy:  # the single manifest of an earlier release, if any, is stale too
                    self.storage.remove([f"{folder}/{self.manifests.legacy}"])
            self.holds.retire(gone)
        return [p.rsplit("/", 1)[-1] for p in gone] + [f"{self.manifests.log}/{v:020d}.json" for v in stale]

    @staticmethod
    def _moved(then: Head, now: Head) -> bool:
        return (now.version, now.stamp, now.top) != (then.version, then.stamp, then.top)

    def _conflict(self, table: str) -> ConcurrentWriteError:
        return ConcurrentWriteError(
            f"table {table!r} in {self.storage.display} was changed by another writer "
            f"during this call; nothing was written"
        )


def is_part(name: str, suffix: str) -> bool:
    return name.startswith("part-") and name.endswith(suffix)
