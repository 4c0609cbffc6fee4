"""The backend contract: which key a call matches rows by, wherever the frame keeps it.

The table's own key when no key= is given; a key column given as a column or as an index level,
whichever way the table holds it; a table without a key takes appends as they are, and is matched by
an explicit key= (a value it holds more than once fails that row, naming the value).
"""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk


def _gap() -> pd.DataFrame:
    return pd.DataFrame(
        {"country": ["Chad", "Chad", "Peru"], "year": [2002, 2007, 2007], "pop": [9.0, 10.0, 28.0]},
    )


class KeyContract:
    """The key: the table's own, as a column or an index level, or a call's key= on a table without one."""

    # -- the table's own key -------------------------------------------------------------------
    def test_the_tables_own_key_is_used_when_key_is_not_given(self, store):
        _gap().dk.save(store, "g", key=["country", "year"])
        res = pd.DataFrame({"country": ["Peru"], "year": [2007], "pop": [29.0]}).dk.update_batch(store, "g")
        assert res.ok and res.succeeded == 1 and res.key == ["country", "year"]
        res = pd.DataFrame({"country": ["Chad", "Peru"], "year": [2007, 2012], "pop": [11.0, 30.0]}).dk.save(
            store, "g", if_exists="upsert"
        )
        assert res.ok
        assert pd.DataFrame({"country": ["Chad"], "year": [2002]}).dk.delete(store, "g").succeeded == 1
        want = pd.DataFrame(
            {"country": ["Chad", "Peru", "Peru"], "year": [2007, 2007, 2012], "pop": [11.0, 29.0, 30.0]}
        )
        assert_frame_equal(dk.load(store, "g"), want)
        assert store.schema("g").key == ["country", "year"]

    def test_the_tables_key_wins_over_a_column_named_id(self, store):
        df = pd.DataFrame({"code": ["a", "b"], "id": [1, 1], "v": [1.0, 2.0]})
        df.dk.save(store, "t", key="code")
        res = pd.DataFrame({"code": ["b"], "id": [7], "v": [5.0]}).dk.update_batch(store, "t")
        assert res.ok and res.key == ["code"]
        assert dk.load(store, "t")["id"].tolist() == [1, 7]

    def test_a_key_other_than_the_tables_own_is_refused_before_writing(self, store):
        _gap().dk.save(store, "g", key=["country", "year"])
        with pytest.raises(dk.SchemaMismatchError, match=r"\['country', 'year'\]"):
            pd.DataFrame({"country": ["Peru"], "year": [2007], "pop": [1.0]}).dk.update_batch(store, "g", key="country")
        assert_frame_equal(dk.load(store, "g"), _gap())

    # -- a key as a column or as an index level -------------------------------------------------
    @pytest.mark.parametrize("held", ["column", "index"])
    @pytest.mark.parametrize("given", ["column", "index"])
    def test_a_key_column_may_come_as_a_column_or_an_index_level(self, store, held, given):
        base = pd.DataFrame({"id": [1, 2, 3], "v": [1.0, 2.0, 3.0]})
        (base if held == "column" else base.set_index("id")).dk.save(store, "t")

        def shaped(df):
            return df if given == "column" else df.set_index("id")

        assert shaped(pd.DataFrame({"id": [2], "v": [20.0]})).dk.update_batch(store, "t").ok
        assert shaped(pd.DataFrame({"id": [3, 4], "v": [30.0, 40.0]})).dk.save(store, "t", if_exists="upsert").ok
        assert shaped(pd.DataFrame({"id": [5], "v": [50.0]})).dk.save(store, "t", if_exists="append").ok
        assert shaped(pd.DataFrame({"id": [1]})).dk.delete(store, "t").succeeded == 1
        missing = shaped(pd.DataFrame({"id": [9], "v": [9.0]})).dk.update_batch(store, "t")
        assert missing.failures["stage"].tolist() == ["missing"]
        want = pd.DataFrame({"id": [2, 3, 4, 5], "v": [20.0, 30.0, 40.0, 50.0]})
        assert_frame_equal(dk.load(store, "t"), want if held == "column" else want.set_index("id"))

    # -- a table without a key of its own ------------------------------------------------------------
    @pytest.fixture
    def keyless(self, store):
        df = pd.DataFrame({"code": ["a", "b", "c", "c"], "v": [1.0, 2.0, 3.0, 4.0]})
        df.dk.save(store, "k")
        assert store.schema("k").key is None
        return store, df

    def test_a_keyless_table_takes_appends_as_they_are(self, keyless):
        store, df = keyless
        more = pd.DataFrame({"code": ["a", "d"], "v": [5.0, 6.0]})
        assert more.dk.save(store, "k", if_exists="append", key="code").ok  # no key to clash with
        assert_frame_equal(dk.load(store, "k"), pd.concat([df, more], ignore_index=True))

    def test_matching_a_keyless_table_needs_key(self, keyless):
        store, df = keyless
        for call in (
            lambda f: f.dk.update_batch(store, "k"),
            lambda f: f.dk.delete(store, "k"),
            lambda f: f.dk.save(store, "k", if_exists="upsert"),
        ):
            with pytest.raises(dk.KeyRequiredError, match=r"key=.*'code'"):
                call(pd.DataFrame({"code": ["a"], "v": [0.0]}))
        assert_frame_equal(dk.load(store, "k"), df)

    def test_a_keyless_table_is_matched_by_key_and_keeps_no_key(self, keyless):
        store, _ = keyless
        res = pd.DataFrame({"code": ["a", "c", "q"], "v": [10.0, 30.0, 40.0]}).dk.update_batch(store, "k", key="code")
        assert res.succeeded == 1
        assert res.failures["stage"].tolist() == ["write", "missing"]
        assert res.failures["error"].tolist() == ["AmbiguousKey", "MissingKey"]
        assert "code='c'" in res.failures["message"].iloc[0] and "2 rows" in res.failures["message"].iloc[0]
        assert_frame_equal(res.failed_rows(), pd.DataFrame({"code": ["c", "q"], "v": [30.0, 40.0]}, index=[1, 2]))
        res = pd.DataFrame({"code": ["b", "e"], "v": [20.0, 50.0]}).dk.save(store, "k", if_exists="upsert", key="code")
        assert res.ok
        res = pd.DataFrame({"code": ["e", "c", "z"]}).dk.delete(store, "k", key="code")
        assert res.succeeded == 1 and res.failures["error"].tolist() == ["AmbiguousKey", "MissingKey"]
        want = pd.DataFrame({"code": ["a", "b", "c", "c"], "v": [10.0, 20.0, 3.0, 4.0]})
        assert_frame_equal(dk.load(store, "k"), want)
        assert store.schema("k").key is None

    def test_a_keyless_table_matched_by_key_in_a_dry_run_changes_nothing(self, keyless):
        store, df = keyless
        res = pd.DataFrame({"code": ["a", "c"], "v": [10.0, 30.0]}).dk.update_batch(
            store, "k", key="code", dry_run=True
        )
        assert res.succeeded == 1 and res.failures["error"].tolist() == ["AmbiguousKey"]
        assert res.changes["action"].tolist() == ["update"]
        assert_frame_equal(dk.load(store, "k"), df)
