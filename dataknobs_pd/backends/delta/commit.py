"""The commit: a transaction's staged changes of one table become ONE Delta commit, all or nothing.

- a new or replaced table is one write (overwrite keeps the history);
- rows appended to a table that nothing else changes are one append; new columns ride in it (schema merge);
- updates and deletes rewrite the data files holding the touched rows: delta-rs writes the new files into a
  stage folder of the table (with their statistics), and one commit adds them and removes those they replace;
- updates and deletes in a call that also adds columns are one Delta merge of the rewritten rows instead:
  delta-rs puts a new schema only into a write or a merge, not into a commit of files written apart.

Every commit carries the dk schema, what it did, and a Delta app transaction (see the package docstring).
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, Schema, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from ...errors import ConcurrentWriteError, InternalError, StorageError
from ..base import put_rows
from . import physical as ph
from .history import OP_KEY, ROWS_KEY, SCHEMA_KEY, TOKEN_KEY
from .staging import Staged, complete

APP_ID = "dataknobs_pd"  # every commit carries a txn action of this app: two concurrent commits always conflict
GONE = "_dk_gone"  # in the source of a merge: the row's key is to be deleted


def commit(st: Staged) -> tuple[str, int | None] | None:
    """Write one table's staged changes as one commit (or remove a dropped table); (token, version or None)."""
    loc = st.loc
    if st.dropped and not st.fresh:
        if st.base is not None:
            with loc.io(f"dropping table {st.name!r}"):
                loc.remove(loc.folder(st.name))
        return None
    if not st.changed:
        return None
    if st.schema is None:
        raise InternalError("a table that changes and is not dropped has a schema")
    token = uuid.uuid4().hex
    read = st.base.version() if st.base is not None else None
    props = CommitProperties(
        custom_metadata={
            SCHEMA_KEY: st.schema.to_json(),
            OP_KEY: st.operation(),
            ROWS_KEY: st.counts(),
            TOKEN_KEY: token,
        },
        app_transactions=[Transaction(APP_ID, read + 1 if read is not None else 0)],
    )
    full = ph.stored_schema(st.schema)
    stage = None
    try:
        with loc.io(f"writing table {st.name!r}"):
            if st.fresh and st.adds is not None:  # its files are written: one commit lists them
                actions = [_add(a) for a in st.adds]
                if st.base is None:
                    create_table_with_add_actions(
                        loc.uri(st.name),
                        Schema.from_arrow(full),
                        actions,
                        mode="error",
                        storage_options=loc.delta_options or None,
                        commit_properties=props,
                    )
                else:  # overwrite: the commit removes every file of the version read
                    st.base.create_write_transaction(list(actions), "overwrite", full, commit_properties=props)
            elif st.fresh:
                data = _new_rows(st, full, 0)
                if st.base is None:
                    write_deltalake(
                        loc.uri(st.name),
                        data,
                        mode="error",
                        commit_properties=props,
                        storage_options=loc.delta_options or None,
                    )
                else:
                    write_deltalake(st.base, data, mode="overwrite", schema_mode="overwrite", commit_properties=props)
            elif not (st.updates or st.deletes):
                if st.base is None:
                    raise InternalError("rows are appended to a table that exists")
                evolve: Literal["merge"] | None = "merge" if full != pa.schema(st.base.schema().to_arrow()) else None
                write_deltalake(
                    st.base,
                    _new_rows(st, full, _next_seq(st)),
                    mode="append",
                    schema_mode=evolve,
                    commit_properties=props,
                )
            elif st.grows(full):
                _merge(st, full, props)
            else:
                stage = loc.new_stage()
                _replace_files(st, full, props, stage)
    except StorageError as e:
        if stage:
            loc.remove_quietly(f"{loc.folder(st.name)}/{stage}")
        cause = e.__cause__
        if isinstance(cause, CommitFailedError) or (
            isinstance(cause, DeltaError) and "already exists" in str(cause).lower()
        ):
            raise ConcurrentWriteError(
                f"table {st.name!r} in {loc.display} was changed by another writer "
                f"during this call; nothing was written"
            ) from cause
        raise
    if read is None:
        return token, 0  # a new table: its first version
    if st.base is None:
        raise InternalError("the table `read` is a version of")
    # delta-rs brings the table it wrote to up to the version it committed (not after create_write_transaction)
    return token, (st.base.version() if st.base.version() != read else None)


def _new_rows(st: Staged, full: pa.Schema, first_seq: int) -> pa.Table:
    """The staged new rows, every column of the table, sorted by key (or numbered in insertion order)."""
    if st.schema is None:
        raise InternalError("rows of a table that is not dropped")
    data = pa.concat_tables([complete(t, full) for t in st.inserts]) if st.inserts else full.empty_table()
    data = data.combine_chunks()  # delta-rs writes one batch faster than many small ones
    if st.schema.key:
        key = ph.stored_names(st.schema, st.schema.key)
        if not _ascending(data, key):
            data = data.sort_by([(k, "ascending") for k in key])
    else:
        seq = pa.array(np.arange(first_seq, first_seq + data.num_rows, dtype=np.int64))
        data = data.set_column(data.schema.get_field_index(ph.SEQ), full.field(ph.SEQ), seq)
    return data


def _next_seq(st: Staged) -> int:
    """The insertion number after the last row of a table without a key."""
    if st.schema is None:
        raise InternalError("rows of a table that is not dropped")
    if st.schema.key or st.base is None:
        return 0
    top = st.snapshot().max_of(ph.SEQ)
    return 0 if top is None else top + 1


def _rewritten(st: Staged, full: pa.Schema) -> tuple[pa.Table, list[int], pa.Table]:
    """(the touched files' rows as they become and the new rows, the touched files' numbers, deleted keys)."""
    keys = st.keys()
    touched: dict[int, list] = {}
    for changes, pos in st.updates:
        for f in np.unique(keys.file_of[pos]):
            sel = np.flatnonzero(keys.file_of[pos] == f)
            touched.setdefault(int(f), []).append(("update", changes.take(sel), keys.row_of[pos[sel]]))
    for pos in st.deletes:
        for f in np.unique(keys.file_of[pos]):
            touched.setdefault(int(f), []).append(("delete", None, keys.row_of[pos[keys.file_of[pos] == f]]))
    parts, deleted = [], []
    for f, edits in sorted(touched.items()):
        rows = st.file(keys.files[f])
        gone = np.zeros(rows.num_rows, dtype=bool)
        same: dict[tuple, list] = {}  # updates of the same columns go in one put_rows (later ones win)
        for kind, changes, at in edits:
            if kind == "update":
                same.setdefault(tuple(changes.column_names), []).append((changes, at))
            else:
                gone[at] = True
        for group in same.values():
            rows = put_rows(rows, pa.concat_tables([c for c, _ in group]), np.concatenate([a for _, a in group]))
        if gone.any():
            deleted.append(rows.filter(pa.array(gone)))
            rows = rows.filter(pa.array(~gone))
        parts.append(rows)
    if st.inserts:
        parts.append(_new_rows(st, full, 0))
    data = (pa.concat_tables(parts) if parts else full.empty_table()).combine_chunks()
    if st.schema is None:
        raise InternalError("rows of a table that is not dropped")
    key = ph.stored_key(st.schema)
    deleted = pa.concat_tables(deleted).select(key) if deleted else full.empty_table().select(key)
    return data, sorted(touched), deleted


def _replace_files(st: Staged, full: pa.Schema, props: CommitProperties, stage: str) -> None:
    """One commit that adds the touched files written anew (with the new rows) and removes the old ones."""
    if st.base is None:
        raise InternalError("files of a table that exists are replaced")
    loc = st.loc
    data, touched, _ = _rewritten(st, full)
    folder = loc.folder(st.name)
    if data.num_rows:  # delta-rs writes the files and their statistics as a table of their own, then harvested
        write_deltalake(loc.uri_of(f"{folder}/{stage}"), data, mode="error", storage_options=loc.delta_options or None)
        adds = loc.harvest(folder, stage)
    else:
        adds = []
    now = int(time.time() * 1000)
    files = st.keys().files
    sizes = st.snapshot().sizes()
    actions: list[AddAction | RemoveAction] = [_add(a) for a in adds]
    actions += [RemoveAction(files[f], True, now, sizes.get(files[f]), {}) for f in touched]
    st.base.create_write_transaction(actions, "append", full, commit_properties=props)


def _add(a: dict) -> AddAction:
    """The add action of a file written apart, from its entry in the log delta-rs wrote (Location.harvest)."""
    return AddAction(a["path"], a["size"], {}, a["modificationTime"], True, a.get("stats") or "")


def _merge(st: Staged, full: pa.Schema, props: CommitProperties) -> None:
    """One Delta merge by key of the rewritten rows (with the new columns) and of the keys deleted."""
    # Files the merge leaves alone lack the new columns and read as nulls.
    data, _, deleted = _rewritten(st, full)
    source = pa.concat_tables(
        [
            complete(data, full).append_column(GONE, pa.repeat(False, data.num_rows)),
            complete(deleted, full).append_column(GONE, pa.repeat(True, deleted.num_rows)),
        ]
    )
    if st.schema is None or st.base is None:
        raise InternalError("a merge into a table that exists")
    key = ph.stored_key(st.schema)
    values = {_quote(c): f"s.{_quote(c)}" for c in full.names}  # only columns named here join the schema
    (
        st.base.merge(
            source,
            " AND ".join(f"t.{_quote(k)} = s.{_quote(k)}" for k in key),
            source_alias="s",
            target_alias="t",
            merge_schema=True,
            commit_properties=props,
        )
        .when_matched_delete(f"s.{GONE}")
        .when_matched_update(values)
        .when_not_matched_insert(values)
        .execute()
    )


def _quote(name: str) -> str:
    """A column name as a SQL identifier (delta-rs parses merge predicates and values as SQL)."""
    return '"' + name.replace('"', '""') + '"'


def _ascending(t: pa.Table, key: list[str]) -> bool:
    """Whether rows are already in the order of a one-column key (frames are often saved sorted)."""
    if t.num_rows < 2:
        return True
    if len(key) != 1:
        return False
    col = t.column(key[0])
    try:
        return bool(pc.all(pc.less(col.slice(0, t.num_rows - 1), col.slice(1))).as_py())
    except pa.ArrowNotImplementedError:
        return False
