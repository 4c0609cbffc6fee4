"""Backend registry: URL scheme -> "module:Class", with the pip extra to hint when it is missing.

Outside packages add backends through the entry-point group "dataknobs_pd.backends"
(name = scheme, value = "module:Class"), registered the same way as the built-ins.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ..errors import BackendUnavailableError, UnknownSchemeError

ENTRY_POINT_GROUP = "dataknobs_pd.backends"

# scheme -> (target, extra to install, what it is)
BUILTIN: dict[str, tuple[str, str | None, str]] = {
    "memory": ("dataknobs_pd.backends.memory:MemoryBackend", None, "in-process tables"),
    "sqlite": ("dataknobs_pd.backends.sqlite:SQLiteBackend", None, "SQLite file (the embedded default)"),
    "parquet": (
        "dataknobs_pd.backends.files:ParquetBackend",
        "files",
        "a folder of Parquet files (local or fsspec URL)",
    ),
    "csv": ("dataknobs_pd.backends.files:CSVBackend", "files", "a folder of CSV files (local or fsspec URL)"),
    "jsonl": (
        "dataknobs_pd.backends.files:JSONLBackend",
        "files",
        "a folder of JSON-lines files (local or fsspec URL)",
    ),
    "postgresql": ("dataknobs_pd.backends.postgres:PostgresBackend", "postgres", "PostgreSQL server"),
    "postgres": ("dataknobs_pd.backends.postgres:PostgresBackend", "postgres", "PostgreSQL server"),
    "duckdb": (
        "dataknobs_pd.backends.duckdb:DuckDBBackend",
        "duckdb",
        "DuckDB file or :memory: (embedded, analytical)",
    ),
    "delta": ("dataknobs_pd.backends.delta:DeltaBackend", "delta", "Delta Lake tables (local or fsspec URL)"),
}


def registry() -> dict[str, tuple[str, str | None, str]]:
    """Built-in schemes plus those installed packages declare as entry points."""
    out = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        out.setdefault(ep.name, (ep.value, None, f"from {ep.dist.name if ep.dist else 'a plugin'}"))
    return out


def backend_class(scheme: str):
    """Import the Backend class for `scheme`, or say which schemes exist / which extra is missing."""
    known = BUILTIN if scheme in BUILTIN else registry()  # entry points only for other schemes: ~20 ms
    if scheme not in known:
        listing = ", ".join(f"{s}://" for s in sorted(known))
        raise UnknownSchemeError(f"unknown store scheme {scheme!r}; valid schemes: {listing}")
    target, extra, _ = known[scheme]
    module, _, cls = target.partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as e:
        hint = f"pip install 'dataknobs-pd[{extra}]'" if extra else "reinstall dataknobs-pd"
        raise BackendUnavailableError(
            f"the {scheme}:// backend needs a package that is not installed ({e.name or e}); run: {hint}"
        ) from e
