"""A backend's connections and, per thread, the open transaction: savepoints, locks, deferred keys.

A transaction pins one pooled connection to the calling thread until it ends; outside one, a
statement borrows an idle connection (autocommit). `Transaction` owns everything the open
transaction has done that a rollback must forget: the savepoint depth, the tables it locked
for writing, and the primary keys of the tables it created, added once after their bulk load
(one index build is faster than a million insertions).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ...errors import ConcurrentWriteError, ConnectionLostError, DataKnobsError, InternalError, StorageError, WriteError
from ..sql import q
from .connection import TRANSIENT, Conn, Lent, Pool

RETRIES = 6
T = TypeVar("T")


class Transaction:
    """One open transaction on one connection, and what it has done that a rollback must forget."""

    def __init__(self, conn: Conn):
        self.conn = conn
        self.depth = 0  # savepoint nesting
        self.deferred: dict[str, tuple[str, list[str], int]] = {}  # table -> (relation, primary key, depth)
        self.locked: dict[str, int] = {}  # table -> depth at which it was locked for writing
        # What a call inserting into a keyed table knows of the keys there before it began (see
        # PostgresBackend._found): forgotten when the next call claims the table. Rows a call inserts
        # cannot clash with its later rows (the engine refuses repeated keys), and the table is
        # locked against other writers, so this stays true until the call ends.
        self.bounds: dict[str, tuple | None] = {}  # table -> (min, max) of a one-int key, () empty, None unknown
        self.clashed: set[str] = set()  # tables where a chunk of this call met a key there already

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit, undone alone (locks and deferred keys taken inside it included) if the block raises."""
        c, name = self.conn, f"dk_{self.depth}"
        c.run(f"SAVEPOINT {name}", doing="opening a savepoint")
        self.depth += 1
        try:
            yield
        except BaseException:
            self.depth -= 1
            self.deferred = {t: v for t, v in self.deferred.items() if v[2] <= self.depth}
            self.locked = {t: d for t, d in self.locked.items() if d <= self.depth}
            if not c.broken:
                c.run(f"ROLLBACK TO SAVEPOINT {name}", doing="rolling back a savepoint")
                c.run(f"RELEASE SAVEPOINT {name}", doing="releasing a savepoint")
            raise
        self.depth -= 1
        c.run(f"RELEASE SAVEPOINT {name}", doing="releasing a savepoint")

    def claim(self, relation: str, table: str) -> None:
        """Other writers of `table` wait until this transaction ends (an advisory lock on its name)."""
        self.bounds.pop(table, None)  # a new call: the keys an earlier one inserted count now
        self.clashed.discard(table)
        try:
            self.conn.run(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                (relation,),
                doing=f"waiting for the other writers of {table!r}",
            )
        except WriteError as e:  # a deadlock found while waiting: the whole call may run again
            if e.code not in TRANSIENT:
                raise
            raise ConcurrentWriteError(
                f"waiting for the other writers of {table!r} ended in a deadlock ({e}); this call was rolled back, "
                f"nothing of it was written: run it again"
            ) from e

    def lock(self, relation: str, table: str) -> None:
        """One writer at a time per keyed table: two calls locking rows in different orders would deadlock.

        SHARE ROW EXCLUSIVE conflicts with itself, not with readers; it is taken before any other
        lock on the table in this transaction, so it never needs an upgrade. A table this
        transaction created is its own already.
        """
        if table not in self.locked and table not in self.deferred:
            self.conn.run(f"LOCK TABLE {relation} IN SHARE ROW EXCLUSIVE MODE", doing=f"locking {table!r} for writing")
            self.locked[table] = self.depth

    def created(self, table: str) -> bool:
        """Whether this transaction created `table` and has not added its primary key yet: no row can clash."""
        return table in self.deferred

    def defer_key(self, relation: str, table: str, key: list[str]) -> None:
        self.deferred[table] = (relation, key, self.depth)

    def forget(self, table: str) -> None:
        """The table is dropped: no key to add."""
        self.deferred.pop(table, None)

    def add_key(self, table: str) -> None:
        """Add the primary key deferred at create, before anything needs it (a lookup by key, a conflict)."""
        entry = self.deferred.pop(table, None)
        if entry:
            relation, key, _ = entry
            try:
                self.conn.run(
                    f"ALTER TABLE {relation} ADD PRIMARY KEY ({', '.join(q(k) for k in key)})",
                    doing=f"adding the primary key of {table!r}",
                )
            except WriteError as e:  # keys that pandas holds apart and PostgreSQL does not (never seen)
                raise StorageError(f"cannot add the primary key of {table!r}: {e}; nothing was written") from e

    def retrying(self, attempt: Callable[[], T], table: str) -> T:
        """Run `attempt` in a savepoint, again after a deadlock or serialization failure.

        When they persist the whole call is given up (halving a chunk would not help): the
        other transaction holds rows this one needs until it ends.
        """
        for n in range(RETRIES):
            try:
                with self.savepoint():
                    return attempt()
            except WriteError as e:
                if e.code not in TRANSIENT:
                    raise
                if n == RETRIES - 1:
                    raise ConcurrentWriteError(
                        f"writing to {table!r} kept conflicting with another transaction ({e}; SQLSTATE {e.code}); "
                        f"this call was rolled back, nothing of it was written: run it again"
                    ) from e
                time.sleep(random.uniform(0.01, 0.05 * 2**n))
        raise AssertionError("unreachable: the last try returns or raises")


class Session:
    """The connections of one backend (a Pool per URL, or a borrowed connection: Lent) and each
    thread's open transaction. `guard`, when set, runs before each transaction begins and may refuse
    it (a borrowed connection's own transaction is open: see dataknobs_pd.borrowed)."""

    def __init__(self, pool: Pool | Lent, guard: Callable[[], None] | None = None):
        self.pool = pool
        self.guard = guard
        self._local = threading.local()

    @property
    def current(self) -> Transaction | None:
        """The calling thread's open transaction."""
        return getattr(self._local, "tx", None)

    @contextmanager
    def borrow(self) -> Iterator[Conn]:
        """The open transaction's connection, else an idle one (autocommit) for this block."""
        tx = self.current
        if tx is not None:
            yield tx.conn
            return
        c = self.pool.get()
        try:
            yield c
        finally:
            self.pool.put(c)

    @contextmanager
    def use(self) -> Iterator[Transaction]:
        """The open transaction, else a transaction for this block."""
        tx = self.current
        if tx is not None:
            yield tx
            return
        with self.transaction():
            tx = self.current
            if tx is None:
                raise InternalError("the transaction just opened")
            yield tx

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Committed when the block ends (deferred keys added first), rolled back if it raises;
        inside an open transaction, a savepoint."""
        if self.current is not None:
            with self.current.savepoint():
                yield
            return
        if self.guard is not None:
            self.guard()
        c = self.pool.get()
        tx = self._local.tx = Transaction(c)
        try:
            c.run("BEGIN", doing="starting a transaction")
            try:
                yield
                for table in list(tx.deferred):
                    tx.add_key(table)
            except BaseException:
                if not c.broken:
                    try:
                        c.run("ROLLBACK", doing="rolling back")
                    except DataKnobsError:
                        c.broken = True
                raise
            try:
                c.run("COMMIT", doing="committing")
            except ConnectionLostError as e:
                raise ConnectionLostError(
                    f"lost the connection to {c.where} while committing: this call may or may not have been "
                    f"written; check the table before running it again ({e.__cause__})"
                ) from e
        finally:
            self._local.tx = None
            self.pool.put(c)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A savepoint of the open transaction, else a transaction."""
        if self.current is None:
            with self.transaction():
                yield
            return
        with self.current.savepoint():
            yield

    def close(self) -> None:
        self.pool.close()
