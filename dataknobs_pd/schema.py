"""The dk schema: what a table needs beyond Arrow to come back exactly as it was saved.

It is saved with every table (a metadata table in SQL stores, key-value metadata or a
sidecar in file stores) and is the single description backends and TypeMapper share.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from .zones import upgrade as upgrade_zone

VERSION = 1
INDEX_PREFIX = "__index_level_"


@dataclass(frozen=True)
class Column:
    """One stored column: its name in the store, its pandas label and how to rebuild its dtype."""

    name: str  # the name in the store
    kind: str  # portable field type: int64, string, category, datetime, json, ...
    arrow: pa.DataType  # the logical Arrow type backends store and return
    nullable: bool
    dtype: dict  # how TypeMapper rebuilds the pandas dtype ({"name": ..., extras})
    label: Any = None  # the original pandas label (a str or an int); None means `name`
    index: bool = False  # True for an index level

    @property
    def pandas_label(self):
        return self.name if self.label is None else self.label

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.arrow, nullable=self.nullable)


@dataclass
class TableSchema:
    """Columns in stored order (data columns first, then index levels), key and index shape."""

    columns: list[Column]
    key: list[str] | None = None
    index_names: list = field(default_factory=list)  # original names, None for unnamed levels
    # True: `key` is the key= a call matches rows by, on a table that has no key of its own (nothing in the
    # store keeps it unique, and it is never stored)
    loose: bool = False
    # The checks the table keeps (store.set_validation): a pandera schema in pandera's own JSON; every write
    # through the package is checked against them (checks.py)
    checks: str | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def data_columns(self) -> list[Column]:
        return [c for c in self.columns if not c.index]

    @property
    def index_columns(self) -> list[Column]:
        return [c for c in self.columns if c.index]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([c.field for c in self.columns])

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def get(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def with_column(self, col: Column) -> TableSchema:
        cols = [col if c.name == col.name else c for c in self.columns]
        return replace(self, columns=cols)

    # -- serialization -------------------------------------------------------------
    def to_json(self) -> str:
        arrow = base64.b64encode(self.arrow_schema.serialize().to_pybytes()).decode()
        return json.dumps(
            {
                "version": VERSION,
                "key": self.key,
                "index_names": self.index_names,
                "arrow": arrow,
                "columns": [
                    {"name": c.name, "kind": c.kind, "dtype": c.dtype, "label": c.label, "index": c.index}
                    for c in self.columns
                ],
                **({"checks": self.checks} if self.checks is not None else {}),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes, table: str | None = None) -> TableSchema:
        """Parse a stored schema; a damaged record is a StorageError naming `table`."""
        try:
            return cls._from_json(text)
        except Exception as e:  # noqa: BLE001 - any parse failure means the record is damaged
            from .errors import StorageError

            where = f"table {table!r}" if table is not None else "a table"
            raise StorageError(
                f"the stored dk schema of {where} is damaged and cannot be read "
                f"({type(e).__name__}: {str(e)[:200]}); drop the table or save it again with if_exists='replace'"
            ) from e

    @classmethod
    def _from_json(cls, text: str | bytes) -> TableSchema:
        d = json.loads(text)
        arrow = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(d["arrow"])))
        cols = []
        for c in d["columns"]:
            # a zone saved as str(tz) that nothing reads back ("UTC-05:00", "pytz.FixedOffset(-300)"): as today's
            t, spec = upgrade_zone(arrow.field(c["name"]).type, c["dtype"])
            cols.append(
                Column(
                    name=c["name"],
                    kind=c["kind"],
                    arrow=t,
                    nullable=arrow.field(c["name"]).nullable,
                    dtype=spec,
                    label=c.get("label"),
                    index=c.get("index", False),
                )
            )
        return cls(columns=cols, key=d.get("key"), index_names=d.get("index_names", []), checks=d.get("checks"))

    def __eq__(self, other):
        return isinstance(other, TableSchema) and self.to_json() == other.to_json()
