"""The tables of a file store's folder: the managed ones (a folder with a manifest that holds a version), and
the plain ones other tools made (plain.py); and, before a table is created, the formats whose manifests
its folder already holds."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..folder import table_of
from .manifest import DROPPED_MAX, Manifests
from .plain import PlainTables
from .storage import Storage


def tables(storage: Storage, manifests: Manifests, plain: PlainTables) -> list[str]:
    """Backend.tables of a file store: its managed tables and the plain ones, sorted."""
    s, m = storage, manifests
    with s.io("listing tables"):
        listed: Mapping[str, dict | None]
        if s.object_store:  # every key under the root in one listing
            folders: dict[str, dict] = {}
            for key, e in s.find(s.root).items():
                folder, _, rest = key.partition("/")
                folders.setdefault(folder, {})[rest] = e
            listed = folders
        else:
            listed = dict.fromkeys(s.ls(s.root) if not s.local or os.path.isdir(s.root) else [])
        names = []
        for folder, files in listed.items():
            table = table_of(folder)
            if table is None:
                continue
            if files is None:
                versions = m.versions(table)
                legacy = not versions and s.exists(f"{s.dir(table)}/{m.legacy}")
            else:
                versions = m.numbered({r[len(m.log) + 1 :]: e for r, e in files.items() if r.startswith(m.log + "/")})
                legacy = m.legacy in files
            # An upload to an object store is whole or absent: a manifest bigger than a drop's holds a table.
            # Otherwise the newest manifest that holds a version says (a torn one is skipped, see manifest.py).
            if s.object_store and versions and versions[max(versions)].size > DROPPED_MAX:
                names.append(table)
            elif (versions or legacy) and m.head(table).state is not None:
                names.append(table)
    return sorted(names + plain.names(set(names)))


def other_format(storage: Storage, table: str, fmt: str, names: list[str]) -> str | None:
    """Another format than `fmt` that holds the table `table`, from the names of its folder's entries: the
    first whose manifests there hold a version, or None."""
    found = {n[4:].removesuffix(".json") for n in names if n.startswith("_dk_")}
    return next((o for o in sorted(found - {fmt}) if Manifests(storage, o).head(table).state), None)
