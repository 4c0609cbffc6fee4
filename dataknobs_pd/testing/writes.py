"""The backend contract: save modes, upsert, update_batch, delete, and exact accounting of every row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk

from .frames import dtype_matrix


def frame(ids, v=None, **extra):
    ids = list(ids)
    data = {
        "id": pd.Series(ids, dtype="int64"),
        "v": pd.Series(v if v is not None else [i * 10 for i in ids], dtype="int64"),
    }
    data.update(extra)
    return pd.DataFrame(data)


def check_accounting(res, store, table, expected_ids):
    """succeeded + failed == total, and the table holds exactly the expected keys, once each."""
    assert res.succeeded + res.failed == res.total
    assert len(res.failures) == res.failed
    assert res.failures["row"].is_unique
    ids = dk.load(store, table, columns=["id"])["id"].tolist()
    assert ids == sorted(expected_ids)


class WriteContract:
    """Save modes, upsert, update_batch, delete, and exact accounting of every row."""

    def test_if_exists_fail_raises_and_writes_nothing(self, store):
        frame([1, 2]).dk.save(store, "t")
        with pytest.raises(dk.TableExistsError, match="'t'"):
            frame([3]).dk.save(store, "t")
        assert dk.load(store, "t")["id"].tolist() == [1, 2]

    def test_if_exists_replace(self, store):
        frame([1, 2]).dk.save(store, "t")
        new = pd.DataFrame({"id": [9], "other": ["x"]})
        new.dk.save(store, "t", if_exists="replace")
        assert_frame_equal(dk.load(store, "t"), new)

    def test_append_reports_exactly_the_existing_keys_and_writes_the_rest(self, store):
        frame(range(0, 100, 2)).dk.save(store, "t")  # even ids
        new = frame(range(50, 150))  # 50..149, of which 50..98 even already exist
        res = new.dk.save(store, "t", if_exists="append")
        clash = [i for i in range(50, 150) if i % 2 == 0 and i < 100]
        assert res.failed == len(clash)
        assert sorted(res.failures["key"]) == clash
        assert set(res.failures["stage"]) == {"write"} and set(res.failures["error"]) == {"KeyConflict"}
        assert sorted(res.failures["row"]) == [i - 50 for i in clash]
        check_accounting(res, store, "t", sorted(set(range(0, 100, 2)) | set(range(50, 150))))
        # the existing rows kept their values
        out = dk.load(store, "t").set_index("id")["v"]
        assert out[50] == 500 and out[51] == 510

    def test_append_without_key(self, store):
        df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
        df.dk.save(store, "t")
        df.dk.save(store, "t", if_exists="append")
        assert dk.load(store, "t")["a"].tolist() == [1, 2, 1, 2]

    def test_upsert_inserts_new_and_updates_existing(self, store):
        frame([1, 2, 3]).dk.save(store, "t")
        res = frame([2, 3, 4], v=[-2, -3, -4]).dk.save(store, "t", if_exists="upsert")
        assert res.ok and res.succeeded == 3
        out = dk.load(store, "t")
        assert out["id"].tolist() == [1, 2, 3, 4] and out["v"].tolist() == [10, -2, -3, -4]

    def test_update_batch_changes_only_given_columns(self, store):
        frame([1, 2, 3], w=["a", "b", "c"]).dk.save(store, "t")
        res = pd.DataFrame({"id": [3, 1], "w": ["C", "A"]}).dk.update_batch(store, "t")
        assert res.ok
        out = dk.load(store, "t")
        assert out["w"].tolist() == ["A", "b", "C"] and out["v"].tolist() == [10, 20, 30]

    def test_update_batch_missing_keys_fail_as_missing(self, store):
        frame([1, 2]).dk.save(store, "t")
        res = frame([2, 5, 6], v=[0, 0, 0]).dk.update_batch(store, "t")
        assert res.failed == 2 and list(res.failures["stage"]) == ["missing", "missing"]
        assert list(res.failures["key"]) == [5, 6] and list(res.failures["row"]) == [1, 2]
        check_accounting(res, store, "t", [1, 2])

    def test_update_batch_insert_missing(self, store):
        frame([1, 2]).dk.save(store, "t")
        res = frame([2, 5], v=[0, 50]).dk.update_batch(store, "t", insert_missing=True)
        assert res.ok
        assert dk.load(store, "t")["v"].tolist() == [10, 0, 50]

    def test_insert_missing_without_required_columns_fails_not_null(self, store):
        frame([1, 2], w=["a", "b"]).dk.save(store, "t")  # v is int64: required
        res = pd.DataFrame({"id": [2, 7], "w": ["B", "G"]}).dk.update_batch(store, "t", insert_missing=True)
        assert res.succeeded == 1 and res.failed == 1
        f = res.failures.iloc[0]
        assert f["key"] == 7 and f["error"] == "NotNull" and "'v'" in f["message"]
        check_accounting(res, store, "t", [1, 2])
        assert dk.load(store, "t")["w"].tolist() == ["a", "B"]

    def test_delete_by_key(self, store):
        frame(range(10)).dk.save(store, "t")
        res = frame([3, 5, 42]).dk.delete(store, "t")
        assert res.succeeded == 2 and res.failed == 1 and res.failures["stage"].tolist() == ["missing"]
        check_accounting(res, store, "t", [0, 1, 2, 4, 6, 7, 8, 9])

    def test_null_and_repeated_keys_fail_validate_and_first_is_written(self, store):
        df = pd.DataFrame({"id": pd.array([1, None, 2, 1, 3, 2], dtype="Int64"), "v": list("abcdef")})
        res = df.dk.save(store, "t")
        assert res.failures["row"].tolist() == [1, 3, 5]
        assert res.failures["stage"].tolist() == ["validate"] * 3
        assert res.failures["error"].tolist() == ["NullKey", "DuplicateKey", "DuplicateKey"]
        assert "row 0" in res.failures["message"].iloc[1]
        out = dk.load(store, "t")
        assert out["v"].tolist() == ["a", "c", "e"]

    def test_convert_failures_are_per_row(self, store):
        pd.DataFrame({"id": [1, 2], "small": np.array([1, 2], dtype="int8")}).dk.save(store, "t")
        new = pd.DataFrame({"id": [3, 4, 5, 6], "small": pd.Series([5, 300, "x", 7], dtype=object)})
        res = new.dk.save(store, "t", if_exists="append")
        assert res.failures["row"].tolist() == [1, 2]
        assert res.failures["stage"].tolist() == ["convert", "convert"]
        assert res.failures["error"].tolist() == ["OutOfRange", "TypeConversion"]
        assert "'small'" in res.failures["message"].iloc[0] and "300" in res.failures["message"].iloc[0]
        check_accounting(res, store, "t", [1, 2, 3, 6])
        assert dk.load(store, "t")["small"].dtype == np.int8

    def test_errors_raise_writes_nothing(self, store):
        frame([1, 2, 3]).dk.save(store, "t")
        before = dk.load(store, "t")
        bad = frame([4, 5, 2, 6])  # 2 exists
        with pytest.raises(dk.BatchError) as info:
            bad.dk.save(store, "t", if_exists="append", errors="raise", chunksize=2)
        res = info.value.result
        assert res.failed == 1 and res.failures["key"].tolist() == [2] and not res.committed
        assert_frame_equal(dk.load(store, "t"), before)

    def test_errors_raise_on_replace_keeps_the_old_table(self, store):
        frame([1, 2]).dk.save(store, "t")
        dup = pd.DataFrame({"id": [7, 7], "v": [1, 2]})
        with pytest.raises(dk.BatchError):
            dup.dk.save(store, "t", if_exists="replace", errors="raise")
        assert dk.load(store, "t")["id"].tolist() == [1, 2]

    @pytest.mark.parametrize(
        "bad",
        [[0], [9], [4], [0, 9], [3, 4, 5], list(range(10))],
        ids=["start", "end", "middle", "both-ends", "across-chunks", "all"],
    )
    def test_accounting_wherever_the_bad_rows_are(self, store, bad):
        frame([100 + i for i in bad]).dk.save(store, "t")
        ids = [100 + i for i in range(10)]
        res = frame(ids).dk.save(store, "t", if_exists="append", chunksize=4)
        assert sorted(res.failures["row"]) == bad
        check_accounting(res, store, "t", ids)

    def test_one_row_and_empty_frames(self, store):
        frame([1]).dk.save(store, "t")
        res = frame([1]).dk.save(store, "t", if_exists="append")
        assert (res.total, res.failed) == (1, 1)
        res = frame([]).dk.save(store, "t", if_exists="append")
        assert (res.total, res.succeeded, res.failed) == (0, 0, 0) and res.ok

    def test_failed_rows_come_back_to_fix_and_resubmit(self, store):
        frame([1]).dk.save(store, "t")
        df = frame([1, 2, 3]).set_axis(pd.Index(["a", "b", "c"]))
        res = df.dk.save(store, "t", if_exists="append")
        bad = res.failed_rows()
        assert_frame_equal(bad, df.loc[["a"]])
        assert res.failures["index"].tolist() == ["a"]
        fixed = bad.assign(id=99)
        assert fixed.dk.save(store, "t", if_exists="append").ok

    def test_new_categories_are_added_on_append(self, store):
        df = pd.DataFrame({"id": [1], "c": pd.Categorical(["a"])})
        df.dk.save(store, "t")
        pd.DataFrame({"id": [2], "c": pd.Categorical(["z"])}).dk.save(store, "t", if_exists="append")
        out = dk.load(store, "t")
        assert out["c"].tolist() == ["a", "z"] and list(out["c"].cat.categories) == ["a", "z"]

    def test_matrix_upsert_round_trips(self, store):
        df = dtype_matrix(n=12)
        df.iloc[:6].dk.save(store, "m")
        res = df.iloc[3:].dk.save(store, "m", if_exists="upsert")
        assert res.ok
        assert_frame_equal(dk.load(store, "m"), df, check_dtype=True)

    def test_result_string_and_failures_columns(self, store):
        res = frame([1, 1]).dk.save(store, "t")
        assert list(res.failures.columns) == ["row", "index", "key", "stage", "error", "message", "code"]
        text = str(res)
        assert "'t'" in text and "2 rows" in text and "1 failed" in text
        assert res.elapsed >= 0 and not res.ok

    def test_append_default_index_frame_to_a_table_that_keeps_an_index(self, store):
        """A table saved from a filtered frame keeps its index labels; appending a fresh frame
        stores that frame's labels too, and updating by key leaves existing labels alone."""
        full = frame(range(6))
        full[full["id"] % 2 == 0].dk.save(store, "t")  # index 0, 2, 4
        res = frame([1, 3]).dk.save(store, "t", if_exists="append")  # default index 0, 1
        assert res.ok
        out = dk.load(store, "t")
        assert out["id"].tolist() == [0, 1, 2, 3, 4] and out.index.tolist() == [0, 0, 2, 1, 4]
        assert frame([4], v=[-4]).dk.update_batch(store, "t").ok
        assert dk.load(store, "t").index.tolist() == [0, 0, 2, 1, 4]

    def test_unencodable_string_fails_its_row_only(self, store):
        df = pd.DataFrame({"id": [1, 2, 3], "s": pd.Series(["ok", "bad \ud800 surrogate", "fine"], dtype=object)})
        res = df.dk.save(store, "t")
        assert res.failures["row"].tolist() == [1]
        assert res.failures["stage"].tolist() == ["convert"] and "'s'" in res.failures["message"].iloc[0]
        assert dk.load(store, "t")["s"].tolist() == ["ok", "fine"]

    def test_floats_mixed_with_numeric_strings_convert(self, store):
        pd.DataFrame({"id": [1], "w": [1.5]}).dk.save(store, "t")
        mixed = pd.DataFrame(
            {
                "id": pd.array([2, 3, 4, None], dtype="Int64"),
                "w": pd.Series([3750.0, "4150", "heavy", 1.0], dtype=object),
            }
        )
        res = mixed.dk.save(store, "t", if_exists="append")
        assert res.failures["row"].tolist() == [2, 3]
        assert res.failures["key"].tolist()[0] == 4 and isinstance(res.failures["key"].iloc[0], (int, np.integer))
        assert dk.load(store, "t")["w"].tolist() == [1.5, 3750.0, 4150.0]

    def test_a_column_saved_without_values_takes_its_first_values(self, store):
        empty = pd.DataFrame({"id": [1], "o": pd.Series([None], dtype=object)})
        empty.dk.save(store, "t")
        empty.dk.save(store, "u")
        pd.DataFrame({"id": [2], "o": pd.Series(["text"], dtype=object)}).dk.save(store, "t", if_exists="append")
        out = dk.load(store, "t")
        assert out["o"].tolist() == [None, "text"] and out["o"].dtype == object
        with pytest.raises(dk.SchemaMismatchError, match="'o'.*no values"):  # text cannot hold ints
            pd.DataFrame({"id": [3], "o": [7]}).dk.save(store, "u", if_exists="append")
        assert dk.load(store, "u")["id"].tolist() == [1]
