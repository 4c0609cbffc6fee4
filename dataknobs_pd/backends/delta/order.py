"""Insertion order of a table without a key, kept by the names of its files rather than by a column.

Delta keeps no row order, and a column of positions would be a column every Delta reader sees. So a
keyless table that dataknobs-pd created has each commit write its new rows, in their order, as the
files of one folder of the table's folder named `dk-o<place>-<id>`; delta-rs numbers the files of one
write in the order of their rows (`part-00000-...`, `part-00001-...`). A file's place is its folder's
place followed by its number, a tuple of ints compared element by element:

- new rows go into the folder of the place after the greatest first element in use, `(n,)`;
- a file whose rows are updated or deleted is written again into a folder whose place is the place of
  the file it replaces, so its files `(place..., k)` sort where the old file was, before its next sibling;
- reading takes the files in the order of their places and each file's rows in their order.

Files not named so (written by other tools into the table) come first, in the order Delta lists them;
no order is promised for their rows.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

PREFIX = "dk-o"  # + place + "-" + id: a folder of rows in insertion order
_NAMED = re.compile(r"^dk-o(\d+(?:\.\d+)*)-[0-9a-f]+/part-(\d+)-")

Place = tuple[int, ...]


def place(path: str) -> Place | None:
    """A file's place in the table's order (None for a file not written in order)."""
    m = _NAMED.match(path)
    if m is None:
        return None
    return (*(int(x) for x in m.group(1).split(".")), int(m.group(2)))


def folder(at: Place) -> str:
    """A fresh folder name for files at place `at` (one write's files, numbered in row order)."""
    return f"{PREFIX}{'.'.join(str(x) for x in at)}-{uuid.uuid4().hex}"


def after(paths: Sequence[str]) -> Place:
    """The place of a folder whose files come after every file of `paths`."""
    firsts = [p[0] for p in map(place, paths) if p is not None]
    return (max(firsts) + 1 if firsts else 0,)


def in_order(paths: Sequence[str]) -> list[int]:
    """The positions of `paths` in the table's order: files not written in order first, as listed."""
    places = [place(p) for p in paths]
    unnamed = [i for i, p in enumerate(places) if p is None]
    named = sorted((i for i, p in enumerate(places) if p is not None), key=lambda i: places[i] or ())
    return unnamed + named


def all_named(paths: Sequence[str]) -> bool:
    return all(place(p) is not None for p in paths)
