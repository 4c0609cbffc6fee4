"""The commit: a transaction's staged changes of one table become ONE Delta commit, all or nothing.

- a new or replaced table is one write (overwrite keeps the history);
- rows appended to a table that nothing else changes are one append; new columns ride in it (schema merge);
- updates and deletes rewrite the data files holding the touched rows: delta-rs writes the new files into a
  stage folder of the table (with their statistics), and one commit adds them and removes those they replace;
- updates and deletes in a call that also adds columns are one Delta merge of the rewritten rows instead:
  delta-rs puts a new schema only into a write or a merge, not into a commit of files written apart;
  so do updates and deletes in a partitioned table (another tool's), whose files delta-rs places;
- a keyless table that dataknobs-pd created keeps its rows in insertion order by its files (order.py):
  its new rows, and the files a call rewrites, are written apart in folders named by their place and
  committed in one commit; a call that adds columns to it writes all its rows again, in their order,
  as one overwrite (the one commit of files written apart that takes a new schema);
- rows appended to a table of another tool are written by delta-rs with the table's own columns and
  types (and partitions): no column is added to it, and no order is promised for its rows.

Every commit carries the dk schema, what it did, and a Delta app transaction (see the package docstring); a
companion's names the table it was committed with, a table's the companion versions that are its (backend.py).
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, Schema, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from ...errors import ConcurrentWriteError, InternalError, StorageError
from ..base import put_rows
from . import order
from . import physical as ph
from .history import COMPANIONS_KEY, OP_KEY, ORDER_KEY, ORDERED, OWNER_KEY, ROWS_KEY, SCHEMA_KEY, TOKEN_KEY
from .staging import Staged, complete

APP_ID = "dataknobs_pd"  # every commit carries a txn action of this app: two concurrent commits always conflict
GONE = "_dk_gone"  # in the source of a merge: the row's key is to be deleted
TARGET_FILE_SIZE: int | None = None  # of the files written in order (None: delta-rs's default)


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
    if st.latest is not None:
        _catch_up(st)
    token = uuid.uuid4().hex
    read = st.base.version() if st.base is not None else None
    info = {
        SCHEMA_KEY: st.table_schema().to_json(),
        OP_KEY: st.operation(),
        ROWS_KEY: st.counts(),
        TOKEN_KEY: token,
    }
    if st.ordered:
        info[ORDER_KEY] = ORDERED
    if st.owner is not None:
        info[OWNER_KEY] = st.owner
    if st.companions is not None:
        info[COMPANIONS_KEY] = dict(st.companions)
    props = CommitProperties(
        custom_metadata=info,
        app_transactions=[Transaction(APP_ID, read + 1 if read is not None else 0)],
    )
    full = st.full()
    stages: list[str] = []  # folders of files written apart: removed when the commit fails
    try:
        with loc.io(f"writing table {st.name!r}"):
            if st.fresh and st.adds is not None:  # its files are written: one commit lists them
                actions = [_add(a) for a in st.adds]
                if st.base is None:
                    _create(st, full, actions, props)
                else:  # overwrite: the commit removes every file of the version read
                    st.base.create_write_transaction(list(actions), "overwrite", full, commit_properties=props)
            elif st.ordered:
                _commit_in_order(st, full, props, stages)
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
                # the table's own columns and types (another tool's table keeps them), then the columns added
                grows = st.grows(full)
                have = pa.schema(st.base.schema().to_arrow())
                target = pa.schema(list(have) + [f for f in full if f.name not in have.names])
                write_deltalake(
                    st.base,
                    _new_rows(st, target, _next_seq(st)),
                    mode="append",
                    schema_mode="merge" if grows else None,
                    commit_properties=props,
                )
            elif st.grows(full) or st.partitioned:
                _merge(st, full, props)
            else:
                stages.append(loc.new_stage())
                _replace_files(st, full, props, stages[0])
    except StorageError as e:
        for stage in stages:
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


def _catch_up(st: Staged) -> None:
    """A companion staged on the version its table names, older than its latest (what a call that never
    committed left): its latest becomes that version again (a Delta restore; a table written anew needs none),
    and the commit goes on it."""
    latest, base = st.latest, st.base
    if latest is None or base is None:
        raise InternalError("a companion caught up has a latest version and the one its table names")
    if not st.fresh:
        info = {SCHEMA_KEY: (st.base_schema or st.table_schema()).to_json(), OP_KEY: "restore"}
        if st.ordered:
            info[ORDER_KEY] = ORDERED
        try:
            with st.loc.io(f"writing table {st.name!r}"):
                latest.restore(base.version(), commit_properties=CommitProperties(custom_metadata=info))
                latest.update_incremental()
        except StorageError as e:
            if isinstance(e.__cause__, CommitFailedError):
                raise ConcurrentWriteError(
                    f"table {st.name!r} in {st.loc.display} was changed by another writer during this call; "
                    f"nothing was written"
                ) from e.__cause__
            raise
    st.base, st.latest = latest, None


def _new_rows(st: Staged, full: pa.Schema, first_seq: int) -> pa.Table:
    """The staged new rows, every column of `full`: sorted by the table's key, numbered in insertion order
    (`_dk_seq`), or as they came."""
    if st.schema is None:
        raise InternalError("rows of a table that is not dropped")
    data = pa.concat_tables([complete(t, full) for t in st.inserts]) if st.inserts else full.empty_table()
    data = data.combine_chunks()  # delta-rs writes one batch faster than many small ones
    if ph.SEQ in full.names:
        seq = pa.array(np.arange(first_seq, first_seq + data.num_rows, dtype=np.int64))
        data = data.set_column(data.schema.get_field_index(ph.SEQ), full.field(ph.SEQ), seq)
    elif st.own_key:
        key = ph.stored_names(st.schema, st.own_key)
        if not _ascending(data, key):
            data = data.sort_by([(k, "ascending") for k in key])
    return data


def _next_seq(st: Staged) -> int:
    """The insertion number after the last row of a table that numbers its rows in `_dk_seq`."""
    if not st.seq:
        return 0
    top = st.snapshot().max_of(ph.SEQ)
    return 0 if top is None else top + 1


def _touched(st: Staged) -> dict[int, list]:
    """{number of a file among the keys' files: the edits of its rows (kind, changes or None, rows)}."""
    keys = st.keys()
    touched: dict[int, list] = {}
    for changes, pos in st.updates:
        for f in np.unique(keys.file_of[pos]):
            sel = np.flatnonzero(keys.file_of[pos] == f)
            touched.setdefault(int(f), []).append(("update", changes.take(sel), keys.row_of[pos[sel]]))
    for pos in st.deletes:
        for f in np.unique(keys.file_of[pos]):
            touched.setdefault(int(f), []).append(("delete", None, keys.row_of[pos[keys.file_of[pos] == f]]))
    return touched


def _edited(rows: pa.Table, edits: list) -> tuple[pa.Table, pa.Table | None]:
    """(a file's rows as its edits leave them, in their order; the rows deleted or None)."""
    gone = np.zeros(rows.num_rows, dtype=bool)
    same: dict[tuple, list] = {}  # updates of the same columns go in one put_rows (later ones win)
    for kind, changes, at in edits:
        if kind == "update":
            same.setdefault(tuple(changes.column_names), []).append((changes, at))
        else:
            gone[at] = True
    for group in same.values():
        rows = put_rows(rows, pa.concat_tables([c for c, _ in group]), np.concatenate([a for _, a in group]))
    if not gone.any():
        return rows, None
    return rows.filter(pa.array(~gone)), rows.filter(pa.array(gone))


def _rewritten(st: Staged, full: pa.Schema) -> tuple[pa.Table, list[int], pa.Table]:
    """(the touched files' rows as they become and the new rows, the touched files' numbers, deleted keys)."""
    keys = st.keys()
    touched = _touched(st)
    parts, deleted = [], []
    for f, edits in sorted(touched.items()):
        rows, gone = _edited(st.file(keys.files[f]), edits)
        if gone is not None:
            deleted.append(gone)
        parts.append(rows)
    if st.inserts:
        parts.append(_new_rows(st, full, _next_seq(st)))
    data = (pa.concat_tables(parts) if parts else full.empty_table()).combine_chunks()
    if st.schema is None:
        raise InternalError("rows of a table that is not dropped")
    key = ph.stored_key(st.schema)
    deleted = pa.concat_tables(deleted).select(key) if deleted else full.empty_table().select(key)
    return data, sorted(touched), deleted


def _create(st: Staged, full: pa.Schema, actions: list, props: CommitProperties, replacing: dict | None = None) -> None:
    """One commit that makes the table of `full`'s columns from files written apart: a new table, or with
    `replacing` (the configuration of the table there) one that takes the place of that table."""
    create_table_with_add_actions(
        st.loc.uri(st.name),
        Schema.from_arrow(full),
        actions,
        mode="error" if replacing is None else "overwrite",
        configuration=replacing,
        storage_options=st.loc.delta_options or None,
        commit_properties=props,
    )


# -- a keyless table kept in insertion order by its files (order.py) ---------------------------------
def _commit_in_order(st: Staged, full: pa.Schema, props: CommitProperties, stages: list[str]) -> None:
    """One commit of files written apart: the new rows after every file; a file whose rows change again
    in its place. A new table, or a call adding columns, writes every row in order (one overwrite)."""
    if st.fresh:
        written = [_add(a) for a in _write_in_order(st, _new_rows(st, full, 0), (0,), stages)]
        if st.base is None:
            _create(st, full, written, props)
        elif st.partitioned:  # another tool's partitioned table replaced: a table of no partitions
            _create(st, full, written, props, replacing=st.base.metadata().configuration)
        else:  # overwrite: the commit removes every file of the version read, and sets the new schema
            st.base.create_write_transaction(list(written), "overwrite", full, commit_properties=props)
        return
    if st.base is None:
        raise InternalError("rows are written to a table that exists")
    touched = _touched(st) if (st.updates or st.deletes) else {}
    files = st.keys().files if touched else []
    if st.grows(full) or not order.all_named([files[f] for f in touched]):
        _rewrite_in_order(st, full, props, stages, touched)
        return
    actions: list[AddAction | RemoveAction] = []
    now = int(time.time() * 1000)
    sizes = st.snapshot().sizes() if touched else {}
    for f, edits in sorted(touched.items()):
        rows, _ = _edited(st.file(files[f]), edits)
        at = order.place(files[f])
        if at is None:
            raise InternalError("a file rewritten in its place has one")
        if rows.num_rows:
            actions += [_add(a) for a in _write_in_order(st, rows, at, stages)]
        actions.append(RemoveAction(files[f], True, now, sizes.get(files[f]), {}))
    if st.inserts:
        after = order.after(st.snapshot().actions().column("path").to_pylist())
        actions += [_add(a) for a in _write_in_order(st, _new_rows(st, full, 0), after, stages)]
    if actions:
        st.base.create_write_transaction(actions, "append", full, commit_properties=props)
    else:  # nothing to add or remove (the schema alone changed): a commit that carries it
        write_deltalake(st.base, full.empty_table(), mode="append", commit_properties=props)


def _rewrite_in_order(
    st: Staged, full: pa.Schema, props: CommitProperties, stages: list[str], touched: dict[int, list]
) -> None:
    """Every row of the table again, in its order (file by file, edits applied; then the new rows): one
    overwrite of files written apart, which also sets the table's new schema."""
    if st.base is None:
        raise InternalError("rows are written to a table that exists")
    loc = st.loc
    folder = loc.folder(st.name)
    number = {p: i for i, p in enumerate(st.keys().files)} if touched else {}
    adds: list[dict] = []
    for at, path in enumerate(st.snapshot().paths()):  # one file in memory at a time
        with loc.fs.open(f"{folder}/{path}", "rb") as f:
            rows = complete(pq.read_table(f), full)
        edits = touched.get(number.get(path, -1))
        if edits:
            rows = _edited(rows, edits)[0]
        adds += _write_in_order(st, rows, (at,), stages)
    if st.inserts:
        adds += _write_in_order(st, _new_rows(st, full, 0), order.after([a["path"] for a in adds]), stages)
    st.base.create_write_transaction([_add(a) for a in adds], "overwrite", full, commit_properties=props)


def _write_in_order(st: Staged, data: pa.Table, at: order.Place, stages: list[str]) -> list[dict]:
    """Write rows as the files of a new folder at place `at`; their add actions. delta-rs keeps the order of
    rows it is given as one batch (of several batches it may write any first): one batch it is."""
    if not data.num_rows:
        return []
    loc = st.loc
    folder, stage = loc.folder(st.name), order.folder(at)
    stages.append(stage)
    write_deltalake(
        loc.uri_of(f"{folder}/{stage}"),
        data.combine_chunks(),
        mode="error",
        target_file_size=TARGET_FILE_SIZE,
        storage_options=loc.delta_options or None,
    )
    adds = loc.harvest(folder, stage)
    for a in adds:
        if order.place(a["path"]) is None:
            raise InternalError(f"delta-rs named a file {a['path']!r}: its place in the table's order is unknown")
    return adds


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
