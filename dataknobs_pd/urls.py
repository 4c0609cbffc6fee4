"""Store URLs: the scheme, and the password masked in everything shown."""

from __future__ import annotations

import os
import re

from .errors import UnknownSchemeError

# The password runs from "://user:" to the last "@": an unescaped password may hold "/" or "@" itself.
_PASSWORD = re.compile(r"(?P<head>://[^/@:\s]*:)(?P<pw>.*)(?P<at>@)", re.DOTALL)


def mask(url: str) -> str:
    """The URL with any password replaced by ***."""
    return _PASSWORD.sub(lambda m: f"{m['head']}***{m['at']}", url)


def password_of(url: str) -> str | None:
    """The password of a URL, found the way `mask` finds it (None when there is none)."""
    m = _PASSWORD.search(url)
    return m["pw"] if m and m["pw"] else None


def scheme_of(url: str) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise UnknownSchemeError(
            f"{mask(str(url))!r} is not a store URL; use e.g. 'sqlite:///path/to/file.db' or 'memory://'"
        )
    # SQLAlchemy-style URLs name a driver after a "+" (postgresql+psycopg://): the same store
    return url.split("://", 1)[0].lower().split("+", 1)[0]


# Stores kept in a local file or folder: sqlite:///rel.db is relative to the working folder, sqlite:////abs.db
# absolute; parquet://rel and parquet:///abs likewise (one slash fewer). Other URLs name no local path.
_FILES = ("sqlite", "duckdb")  # scheme:///path (SQLAlchemy's form)
_FOLDERS = ("parquet", "csv", "jsonl", "delta")  # scheme://path, or scheme://fsspec-url


def resolved(url: str) -> str:
    """The URL with a local file's or folder's path made absolute (from the working folder): what it names
    no longer depends on the working folder, and messages show where it is. Other URLs come back unchanged."""
    head, _, rest = url.partition("://")
    scheme = head.lower().split("+", 1)[0]
    if scheme in _FILES:
        path = rest.removeprefix("/")
        if not path or path.startswith(":memory:"):
            return url
        return f"{head}:///{os.path.abspath(path)}"
    if scheme in _FOLDERS and rest and "://" not in rest and "::" not in rest:
        return f"{head}://{os.path.abspath(rest)}"
    return url
