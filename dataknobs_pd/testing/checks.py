"""The backend contract: checks before writing (validate=, a pandera schema).

Rows that fail a check fail at stage `validate` with the check's name, and the rest are written (and kept
in the quarantine when asked); update_batch checks the columns its frame has; a failure of no row refuses
the call before anything is written; a stream's failures count rows across it; a table keeps a schema that
another process's writes are checked against; load checks what it reads.
"""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk

from .elsewhere import elsewhere


def _pandera():
    import pandera.pandas as pa  # the validate extra: imported by the tests only, not with the package

    return pa


def _checks():
    pa = _pandera()
    return pa.DataFrameSchema(
        {
            "id": pa.Column(int, unique=True),
            "x": pa.Column(float, pa.Check.ge(0), nullable=True),
            "tag": pa.Column(str, pa.Check.isin(["a", "b"])),
        }
    )


def _frame() -> pd.DataFrame:
    """Rows 1 and 3 fail a check (row 1 two of them), the others pass."""
    at = pd.Index([10, 11, 12, 13, 14], name="at")
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "x": [1.0, -1.0, None, -5.0, 2.5],
            "tag": pd.Series(["a", "c", "b", "b", "a"], dtype="str", index=at),
        },
        index=at,
    )


class ChecksContract:
    """validate=: pandera checks before writing."""

    def test_rows_failing_a_check_are_reported_and_the_rest_written(self, store):
        df = _frame()
        res = df.dk.save(store, "c", key="id", validate=_checks(), quarantine=True)
        assert res.failures["row"].tolist() == [1, 3] and res.failures["index"].tolist() == [11, 13]
        assert set(res.failures["stage"]) == {"validate"} and set(res.failures["error"]) == {"Check"}
        assert res.failures["code"].tolist() == [
            "greater_than_or_equal_to(0), isin(['a', 'b'])",
            "greater_than_or_equal_to(0)",
        ]
        assert res.failures["message"].iloc[1] == "column 'x': value -5.0 fails greater_than_or_equal_to(0)"
        assert "column 'tag': value 'c'" in res.failures["message"].iloc[0]
        assert_frame_equal(res.failed_rows(), df.iloc[[1, 3]])
        assert_frame_equal(dk.load(store, "c"), df.iloc[[0, 2, 4]])
        assert (
            res.quarantined == 2 and dk.quarantined(store, "c").failures["code"].iloc[1] == res.failures["code"].iloc[1]
        )

    def test_update_batch_checks_the_columns_its_frame_has(self, store):
        df = _frame().iloc[[0, 2, 4]]
        df.dk.save(store, "c", key="id")
        upd = pd.DataFrame({"id": [1, 3], "x": [-2.0, 7.0]})  # no `tag`: its checks do not apply
        res = upd.dk.update_batch(store, "c", validate=_checks())
        assert res.failures["row"].tolist() == [0] and res.failures["code"].tolist() == ["greater_than_or_equal_to(0)"]
        assert dk.load(store, "c")["x"].tolist()[:2] == [1.0, 7.0]
        assert pd.DataFrame({"id": [3]}).dk.delete(store, "c", validate=_checks()).ok

    def test_a_failure_of_no_row_refuses_the_call_and_writes_nothing(self, store):
        df = _frame().iloc[[0, 2]]
        df.dk.save(store, "c", key="id")
        before = dk.load(store, "c")
        new = _frame().iloc[[4]]
        with pytest.raises(dk.SchemaMismatchError, match="column 'tag' is missing"):
            new.drop(columns="tag").dk.save(store, "c", if_exists="append", validate=_checks())
        with pytest.raises(dk.SchemaMismatchError, match="column 'x' has dtype object"):
            new.astype({"x": object}).dk.save(store, "c", if_exists="append", validate=_checks())
        pa = _pandera()
        wide = pa.DataFrameSchema(
            _checks().columns, checks=[pa.Check(lambda d: d["x"].sum() > 100, name="sum_over_100")]
        )
        with pytest.raises(dk.SchemaMismatchError, match="the frame fails sum_over_100"):
            new.dk.save(store, "c", if_exists="append", validate=wide)
        assert_frame_equal(dk.load(store, "c"), before)

    def test_a_stream_reports_check_failures_by_their_row_in_the_whole_input(self, store):
        df = _frame()
        res = dk.save((df.iloc[:2], df.iloc[2:]), store, "c", key="id", validate=_checks())
        assert res.failures["row"].tolist() == [1, 3] and res.failed_rows()["id"].tolist() == [2, 4]
        assert dk.load(store, "c")["id"].tolist() == [1, 3, 5]

    def test_a_table_keeps_its_checks_for_every_writer(self, store):
        _frame().iloc[[0]].dk.save(store, "c", key="id")
        store.set_validation("c", _checks())
        assert store.validation("c").to_json() == _checks().to_json()
        failures, store = _append_elsewhere(store, "c", _frame().iloc[1:])  # another process (or Store) writes
        assert failures["row"].tolist() == [0, 2] and failures["code"].tolist()[1] == "greater_than_or_equal_to(0)"
        with store:
            assert dk.load(store, "c")["id"].tolist() == [1, 3, 5]
            replaced = _frame().dk.save(store, "c", if_exists="replace")  # the table keeps its checks
            assert replaced.failures["row"].tolist() == [1, 3]
            assert store.validation("c").to_json() == _checks().to_json()
            store.set_validation("c", None)
            assert store.validation("c") is None
            assert _frame().iloc[[1]].dk.save(store, "c", if_exists="upsert").ok  # it fails two checks

    def test_set_validation_refuses_a_check_pandera_cannot_keep(self, store):
        pa = _pandera()
        _frame().dk.save(store, "c", key="id")
        own = pa.DataFrameSchema({"x": pa.Column(float, pa.Check(lambda s: s < 100, name="under_100"))})
        with pytest.raises(dk.InvalidArgumentError, match="column 'x': under_100.*validate= instead"):
            store.set_validation("c", own)
        assert store.validation("c") is None
        with pytest.raises(dk.TableNotFoundError):
            store.set_validation("nowhere", _checks())

    def test_load_with_validate_raises_with_the_report(self, store):
        _frame().iloc[[0, 2, 4]].dk.save(store, "c", key="id")
        pa = _pandera()
        over_1 = pa.DataFrameSchema({"x": pa.Column(float, pa.Check.gt(1), nullable=True)})
        with pytest.raises(dk.BatchError) as info:
            dk.load(store, "c", validate=over_1)
        res = info.value.result
        assert res.operation == "load" and res.failures["key"].tolist() == [1]
        assert res.failed_rows()["x"].tolist() == [1.0]
        assert len(dk.load(store, "c", where=[("x", ">", 2)], validate=over_1)) == 1


def _append_elsewhere(store, table: str, df: pd.DataFrame) -> tuple[pd.DataFrame, dk.Store]:
    """The failures of appending `df` to `table` from another process (from another Store when only this
    process reaches the store), and a Store open on the store again (this one is closed first: DuckDB lets
    one process open a file)."""
    address = store.address
    if address is None:
        return df.dk.save(store, table, if_exists="append").failures, store
    store.close()
    return elsewhere(_append, *address, table, df), dk.connect(address[0], **address[1])


def _append(url: str, options: dict, table: str, df: pd.DataFrame) -> pd.DataFrame:
    """In the other process: the failures of appending `df` to `table`."""
    with dk.connect(url, **options) as s:
        return df.dk.save(s, table, if_exists="append").failures
