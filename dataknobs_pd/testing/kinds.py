"""The column kinds of the property-based contract (PropertyContract): the dtypes of API.md's Types list, by
the names the property draws them by, and what the oracle needs to know of them."""

from __future__ import annotations

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
DATETIMES = [f"datetime64[{u}]" for u in ("s", "ms", "us", "ns")] + [
    "datetime64[us, UTC]",
    "datetime64[ns, UTC]",
    "datetime64[s, America/New_York]",
    "datetime64[ns, America/New_York]",
]
TIMEDELTAS = [f"timedelta64[{u}]" for u in ("s", "ms", "us", "ns")]
KINDS = (
    list(INT_RANGES)
    + ["float32", "float64", "Int64", "boolean", "bool", "str", "string", "object_str"]
    + ["cat_str", "cat_ord", "cat_int"]
    + DATETIMES
    + TIMEDELTAS
    + ["decimal", "bytes", "date", "json"]
    + ["int64[pyarrow]", "double[pyarrow]", "string[pyarrow]", "bool[pyarrow]"]
)
REQUIRED = set(INT_RANGES) | {"bool"}  # dtypes without a missing value: a new row needs one


def dtype_parts(kind: str) -> tuple[str, str | None]:
    """The unit and zone of a datetime64 kind."""
    inner = kind[kind.index("[") + 1 : -1]
    unit, _, tz = inner.partition(", ")
    return unit, tz or None
