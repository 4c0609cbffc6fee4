"""The backend contract: failures that outlive the kernel.

Failed rows kept in the table's quarantine in the call's transaction, read back by another process (or,
for a store only this process reaches, another Store) with their values as sent, in their frame's dtypes
and index; a later call that writes a key takes its rows out; error budgets write nothing; the batch log
has a row per call; undo puts back inserts, updates and deletes exactly, reports rows changed since as
conflicts, and undoing an undo redoes the call.
"""

from __future__ import annotations

import decimal
import json

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk

from .elsewhere import elsewhere


def _dirty() -> pd.DataFrame:
    """Rows of many dtypes; rows 1 and 3 cannot go into an int column, row 4 repeats a key."""
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 3],
            "n": np.array([10, "eleven", 12, 13.5, 14], dtype=object),
            "when": pd.to_datetime(
                ["2024-01-01 08:00", "2024-02-29 12:30", None, "2024-03-10 02:30", "2024-05-01 00:00"]
            )
            .tz_localize("UTC")
            .tz_convert("America/New_York"),
            "price": np.array([decimal.Decimal("1.10"), None, decimal.Decimal("3.30"), None, None], dtype=object),
            "tag": pd.Categorical(["a", "b", "a", None, "b"]),
            "f": [0.5, np.nan, np.inf, -0.0, 2.0],
            "text": pd.array(["x", None, 'quo"te, \n', "é", ""], dtype="string"),
        },
        index=pd.Index([10, 20, 30, 40, 50], name="at"),
    )


def _table() -> pd.DataFrame:
    """The table the dirty rows go into: `n` is an int column there."""
    df = _dirty().iloc[[0, 2]].copy()
    df["n"] = df["n"].astype("int64")
    return df


def _read_in_another_process(store, table: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """dk.quarantined(table) as a new process (a kernel restarted) reads it: its failures and failed rows.
    The store is closed here first (as a kernel that restarts does; DuckDB lets one process open a file)."""
    address = store.address
    if address is None:  # only this process reaches the store (memory, a connection lent): read it here
        q = dk.quarantined(store, table)
        return q.failures, q.failed_rows()
    store.close()
    return elsewhere(_quarantined, *address, table)


def _quarantined(url: str, options: dict, table: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """In the other process: what dk.quarantined reads."""
    with dk.connect(url, **options) as s:
        q = dk.quarantined(s, table)
        return q.failures, q.failed_rows()


class QuarantineContract:
    """Quarantine, error budgets, the batch log and undo."""

    # -- quarantine ----------------------------------------------------------------------------
    def test_quarantined_rows_come_back_in_another_process_as_they_were_sent(self, store):
        _table().dk.save(store, "q", key="id")
        dirty = _dirty()
        res = dirty.iloc[[1, 3, 4]].dk.save(store, "q", if_exists="append", quarantine=True)
        assert res.failed == 3 and res.quarantined == 3 and res.batch_id
        address = store.address
        failures, rows = _read_in_another_process(store, "q")
        want = dirty.iloc[[1, 3, 4]]
        assert_frame_equal(rows, want)  # values, dtypes and index as sent, also "eleven" and 13.5
        assert failures["batch_id"].tolist() == [res.batch_id] * 3
        assert failures["row"].tolist() == [0, 1, 2]
        assert failures["index"].tolist() == [20, 40, 50]
        assert failures["key"].tolist() == [2, 4, 3]
        assert_frame_equal(
            failures[["stage", "error", "message", "code"]].reset_index(drop=True),
            res.failures[["stage", "error", "message", "code"]].reset_index(drop=True),
        )
        if address is not None:
            store = dk.connect(address[0], **address[1])
        with store:
            assert dk.load(store, "q")["id"].tolist() == [1, 3]  # the good rows are not in the quarantine

    def test_a_later_call_writing_a_quarantined_key_takes_it_out(self, store):
        _table().dk.save(store, "q", key="id")
        res = _dirty().iloc[[1, 3]].dk.save(store, "q", if_exists="append", quarantine=True)
        assert dk.quarantined(store, "q").failed == 2
        fixed = dk.quarantined(store, "q").failed_rows().copy()
        fixed.loc[20, "n"] = 11
        fixed = fixed.loc[[20]].astype({"n": "int64"})
        assert fixed.dk.save(store, "q", if_exists="upsert").ok  # no quarantine=True: any call resolves
        left = dk.quarantined(store, "q")
        assert left.failed == 1 and left.failures["key"].tolist() == [4]
        assert dk.quarantined(store, "q", batch_id=res.batch_id).failed == 1
        assert dk.quarantined(store, "q", batch_id="no-such-call").failed == 0
        assert pd.DataFrame({"id": [4]}).dk.delete(store, "q").failed == 1  # 4 is not in the table
        assert dk.quarantined(store, "q").failed == 1
        assert 4 not in dk.load(store, "q")["id"].tolist()

    def test_the_quarantine_is_a_table_other_tools_read(self, store):
        _table().dk.save(store, "q", key="id")
        _dirty().iloc[[1]].dk.save(store, "q", if_exists="append", quarantine=True)
        raw = dk.load(store, "q__quarantine")
        assert list(raw.columns[:9]) == ["batch_id", "time", "row", "index", "key", "stage", "error", "message", "code"]
        assert json.loads(raw["values"].iloc[0])[1] == "eleven"
        assert "q__quarantine" not in store.tables() and "q" in store.tables()

    def test_quarantine_from_a_stream_counts_rows_across_it(self, store):
        _table().dk.save(store, "q", key="id")
        dirty = _dirty()
        res = dk.save((dirty.iloc[[1]], dirty.iloc[[3, 4]]), store, "q", if_exists="append", quarantine=True)
        assert res.quarantined == 3
        q = dk.quarantined(store, "q")
        assert q.failures["row"].tolist() == [0, 1, 2]
        assert_frame_equal(q.failed_rows(), dirty.iloc[[1, 3, 4]])

    # -- error budgets -------------------------------------------------------------------------
    def test_over_budget_nothing_is_written_nor_quarantined(self, store):
        _table().dk.save(store, "q", key="id")
        before = dk.load(store, "q")
        logged = len(store.batches("q"))
        clean = _dirty().iloc[[1, 3]].copy()
        clean.loc[20, "id"] = 7
        for budget in ({"max_errors": 0}, {"max_error_rate": 0.25}):
            with pytest.raises(dk.BatchError, match="error budget") as e:
                _dirty().iloc[[1, 3, 4]].dk.save(store, "q", if_exists="append", quarantine=True, **budget)
            assert e.value.result.failed == 3 and e.value.result.within_budget is False
        assert_frame_equal(dk.load(store, "q"), before)
        assert dk.quarantined(store, "q").failed == 0
        assert len(store.batches("q")) == logged
        dry = _dirty().iloc[[0, 1]].dk.save(store, "q", if_exists="upsert", max_errors=0, dry_run=True)
        assert dry.within_budget is False and not dry.committed
        ok = _dirty().iloc[[0, 1]].dk.save(store, "q", if_exists="upsert", max_error_rate=0.5)
        assert ok.within_budget is True and ok.succeeded == 1

    # -- the batch log -------------------------------------------------------------------------
    def test_every_committed_call_has_a_row_in_the_batch_log(self, store):
        a = _table().dk.save(store, "q", key="id")
        b = _dirty().iloc[[1, 3]].dk.save(store, "q", if_exists="append", quarantine=True)
        _dirty().iloc[[1]].dk.save(store, "q", if_exists="append", dry_run=True)  # no row
        c = pd.DataFrame({"id": [1]}).dk.delete(store, "q", undoable=True)
        log = store.batches("q")
        assert log["batch_id"].tolist() == [a.batch_id, b.batch_id, c.batch_id]
        assert log["operation"].tolist() == ["save", "save", "delete"]
        assert log[["total", "succeeded", "failed", "quarantined"]].values.tolist() == [
            [2, 2, 0, 0],
            [2, 0, 2, 2],
            [1, 1, 0, 0],
        ]
        assert log["undoable"].tolist() == [False, False, True]
        assert log["undone_by"].isna().all()
        assert str(log["time"].dtype) == "datetime64[us, UTC]"

    # -- undo ----------------------------------------------------------------------------------
    def test_undo_puts_back_inserts_updates_and_deletes_exactly(self, store):
        _table().dk.save(store, "u", key="id")
        start = dk.load(store, "u")
        change = _table()
        change.loc[30, ["n", "f", "text"]] = [99, np.nan, pd.NA]
        new = _table().iloc[[0]].rename(index={10: 60}).assign(id=9, tag=pd.Categorical(["b"]))
        upsert = pd.concat([change.iloc[[1]], new])
        res = upsert.dk.save(store, "u", if_exists="upsert", undoable=True)
        assert res.ok
        after = dk.load(store, "u")
        gone = pd.DataFrame({"id": [1]}).dk.delete(store, "u", undoable=True)
        undone = dk.undo(store, "u", str(gone.batch_id))
        assert undone.ok and undone.operation == "undo"
        assert_frame_equal(dk.load(store, "u"), after)
        u = dk.undo(store, "u", str(res.batch_id))
        assert u.ok and u.changes is not None and sorted(u.changes["action"]) == ["delete", "update"]
        assert_frame_equal(dk.load(store, "u"), start)
        redo = dk.undo(store, "u", str(u.batch_id))  # undoing the undo redoes the call
        assert redo.ok
        assert_frame_equal(dk.load(store, "u"), after)
        log = store.batches("u").set_index("batch_id")
        assert log.loc[res.batch_id, "undone_by"] == u.batch_id
        assert log.loc[u.batch_id, "undone_by"] == redo.batch_id

    def test_images_are_the_same_whether_the_store_copies_them_or_they_are_read(self, store):
        """track_changes=True reads the stored rows, and the images are made from that read; without it, a
        store that can (SQLite, PostgreSQL) copies them itself through the write's stage."""
        base = _table()  # with nanoseconds, which some stores keep in a column of their own
        base["stamp"] = pd.to_datetime(["2024-01-01 00:00:00.000000001", "2024-01-02 00:00:00.000000000"]).astype(
            "datetime64[ns]"
        )
        kept = []
        for track in (True, False):
            table = f"i{int(track)}"
            base.dk.save(store, table, key="id")
            change = base.iloc[[1]].assign(f=1.5, text=pd.array(['quo"te'], dtype="string"))
            new = base.iloc[[0]].rename(index={10: 60}).assign(id=9, tag=pd.Categorical(["b"]))
            pd.concat([change, new]).dk.save(store, table, if_exists="upsert", undoable=True, track_changes=track)
            pd.DataFrame({"id": [1]}).dk.delete(store, table, undoable=True, track_changes=track)
            images = dk.load(store, f"{table}__undo").drop(columns="dk_batch_id")
            kept.append(images.sort_values(["dk_action", "id"], ignore_index=True))
        assert kept[0]["dk_action"].tolist() == ["delete", "insert", "update"]
        assert_frame_equal(kept[0], kept[1])

    def test_undo_leaves_rows_changed_since_and_reports_them(self, store):
        _table().dk.save(store, "u", key="id")
        first = pd.DataFrame({"id": [1, 3], "f": [7.0, 8.0]}).dk.update_batch(store, "u", undoable=True)
        pd.DataFrame({"id": [3], "f": [9.0]}).dk.update_batch(store, "u")
        u = dk.undo(store, "u", first.batch_id)
        assert u.succeeded == 1 and u.failed == 1
        assert u.failures["stage"].tolist() == ["undo"] and u.failures["error"].tolist() == ["Conflict"]
        assert u.failures["key"].tolist() == [3]
        assert dk.load(store, "u")["f"].tolist() == [0.5, 9.0]

    def test_undo_dry_run_changes_nothing(self, store):
        _table().dk.save(store, "u", key="id")
        first = pd.DataFrame({"id": [1], "f": [7.0]}).dk.update_batch(store, "u", undoable=True)
        dry = dk.undo(store, "u", first.batch_id, dry_run=True)
        assert dry.succeeded == 1 and not dry.committed
        assert dk.load(store, "u")["f"].tolist() == [7.0, np.inf]
        assert store.batches("u")["undone_by"].isna().all()

    def test_undo_of_a_call_without_images_says_to_pass_undoable(self, store):
        res = _table().dk.save(store, "u", key="id")
        with pytest.raises(dk.InvalidArgumentError, match="undoable=True"):
            dk.undo(store, "u", res.batch_id)
        with pytest.raises(dk.InvalidArgumentError, match="store.batches"):
            dk.undo(store, "u", "no-such-call")
