"""What a table or column name may be, on every store."""

from __future__ import annotations

import pandas as pd

from .errors import InvalidArgumentError

RESERVED = "_dk_"  # prefix of the stores' own tables and columns (catalogue, stage, hidden columns)


def check_table_name(table) -> None:
    """A table name any store can take: a non-empty str, no NUL, not one of the stores' own names."""
    if not isinstance(table, str) or not table:
        raise InvalidArgumentError(f"table must be a non-empty string, got {table!r}")
    if "\x00" in table:
        raise InvalidArgumentError(f"table name {table!r} contains a NUL character, which no store can keep")
    if table.lower().startswith(RESERVED):
        raise InvalidArgumentError(
            f"table name {table!r} is reserved: names starting with {RESERVED!r} are the stores' own catalogue"
        )


def check_column_names(df: pd.DataFrame) -> None:
    """Column and index names without NUL and outside the reserved prefix."""
    for what, names in (("column", df.columns), ("index level", df.index.names)):
        for name in names:
            text = str(name) if name is not None else ""
            if "\x00" in text:
                raise InvalidArgumentError(f"{what} name {name!r} contains a NUL character, which no store can keep")
            if text.lower().startswith(RESERVED):
                raise InvalidArgumentError(
                    f"{what} name {name!r} is reserved: names starting with {RESERVED!r} are the stores' own"
                )
