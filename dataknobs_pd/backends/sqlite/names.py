"""Names in a SQLite store: qualified references, and the table and column names it refuses.

Statements name user tables `main."t"` and the stage `temp."_dk_stage"`, so nothing shadows
anything; a table is found by its exact name, and a new name SQLite would fold into an
existing one (it folds ASCII case) is refused rather than let one table stand in for another.
"""

from __future__ import annotations

import sqlite3
import string

from ...errors import InvalidArgumentError
from ..sql import META, STAGE, q

ROWIDS = ("rowid", "_rowid_", "oid")  # SQLite's names for a row's id, unless a column takes them
SEQ = "_dk_seq"  # the row id of a keyless table whose columns take all of ROWIDS
META_T = f"main.{q(META)}"
STAGE_T = f"temp.{q(STAGE)}"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def fold(name: str) -> str:
    """A name as SQLite compares identifiers: ASCII letters without case, anything else exact."""
    return name.translate(_ASCII_LOWER)


def main(table: str) -> str:
    return f"main.{q(table)}"


def hides_rowid(names: list[str]) -> bool:
    """Whether columns of these names take every name of SQLite's row id."""
    taken = {fold(n) for n in names}
    return all(a in taken for a in ROWIDS)


def check_table(table) -> None:
    """Refuse a table name SQLite cannot keep, or keeps for itself, before any statement holds it."""
    if not isinstance(table, str) or not table or "\x00" in table:
        raise InvalidArgumentError(
            f"table name {table!r} cannot be stored in SQLite: use a non-empty string without NUL characters"
        )
    if fold(table).startswith("sqlite_"):
        raise InvalidArgumentError(
            f"table name {table!r} is reserved: SQLite keeps names starting with 'sqlite_' for its own tables"
        )
    if fold(table) == META:
        raise InvalidArgumentError(f"table name {table!r} is reserved: it is this store's catalogue")


def check_columns(table: str, names: list[str]) -> None:
    """Refuse column names SQLite cannot keep apart (NUL characters, equal but for ASCII case)."""
    seen: dict[str, str] = {}
    for name in names:
        if "\x00" in name:
            raise InvalidArgumentError(
                f"column name {name!r} of table {table!r} contains a NUL character, which SQLite cannot keep"
            )
        other = seen.setdefault(fold(name), name)
        if other != name:
            raise InvalidArgumentError(
                f"columns {other!r} and {name!r} of table {table!r} differ only by case, and SQLite takes "
                f"them for one column; rename one"
            )


def exists(c: sqlite3.Connection, table: str) -> bool:
    """A table of exactly this name (SQLite itself would also take one differing by ASCII case)."""
    return bool(c.execute("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchall())


def user_table(name: str) -> bool:
    """Whether a table of the store is a user's (not SQLite's, nor this package's catalogue or stage)."""
    return not fold(name).startswith(("sqlite_", "_dk_"))
