"""The contracts of the capabilities a store may have beyond the core verbs (backends/capabilities.py).

A backend with a capability runs its mixin beside `BackendContract` (the core contract checks that it does):

    class TestMyStore(BackendContract, ParallelLoadContract, HistoryContract): ...

- `ParallelLoadContract`: a new keyed table loaded by many writers (partitions written aside, checked across
  partitions, swapped in at one commit); a partition written twice writes no row twice; errors="raise"
  swaps nothing in, and nothing is left aside.
- `HistoryContract`: each call's version, the history newest first, a load by version and by time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd.backends.capabilities import History, ParallelLoad
from dataknobs_pd.writing import WriteOptions, write


class LocalPartitions:
    """Partitions written by this process, one after another, as workers would: a `aside.Source`."""

    def __init__(self, frames: list[pd.DataFrame]):
        self.frames = frames
        self.ran = 0  # partitions written through on_workers

    def __iter__(self):
        return iter(self.frames)

    def on_workers(self, fn, *args):
        for i, frame in enumerate(self.frames):
            self.ran += 1
            yield fn(frame, i, *args)


def parts(df: pd.DataFrame, n: int) -> list[pd.DataFrame]:
    return [df.iloc[lo : lo + n] for lo in range(0, len(df), n)]


class ParallelLoadContract:
    """A store with ParallelLoad takes a new table's rows from many writers, exactly as one writer would."""

    def test_the_store_can_load_in_parallel(self, store):
        assert isinstance(store.backend, ParallelLoad) and store.address is not None

    def test_a_parallel_load_reports_and_writes_as_the_one_writer(self, store):
        df = pd.DataFrame(
            {"id": pd.array([*range(40), 5, None, 41], dtype="Int64"), "v": np.arange(43) * 0.5},
            index=pd.RangeIndex(100, 143),
        )
        source = LocalPartitions(parts(df, 10))
        res = write("save", source, store, "p", WriteOptions(key="id"), parallel=source)
        one = dk.save(parts(df, 10), store, "one", key="id")
        assert source.ran == 5  # written aside, partition by partition
        cols = ["row", "index", "partition", "stage", "error", "message"]
        assert_frame_equal(res.failures[cols], one.failures[cols])
        assert res.failures["row"].tolist() == [40, 41] and res.succeeded == 41
        assert_frame_equal(res.failed_rows(), one.failed_rows())
        assert_frame_equal(dk.load(store, "p"), dk.load(store, "one"))
        assert store.schema("p").key == ["id"]
        assert sorted(store.tables()) == ["one", "p"]  # nothing left aside

    def test_a_partition_written_twice_writes_no_row_twice(self, store):
        from dataknobs_pd.aside import write_part

        backend = store.backend
        part = pd.DataFrame({"id": np.arange(30), "v": np.arange(30) * 1.0})
        schema = dk.TypeMapper().schema(part, ["id"])
        aside = backend.open_aside("t", schema)
        try:
            for _ in range(2):  # a worker that died after its commit: the partition runs again
                assert write_part(part, 3, store.address, aside, "t", schema, 7).failures == {}
            with backend.transaction():
                backend.swap_in(aside, "t", schema)
        finally:
            backend.drop_aside(aside)
        assert_frame_equal(dk.load(store, "t"), part)
        assert store.tables() == ["t"]

    def test_errors_raise_swaps_nothing_in(self, store):
        old = pd.DataFrame({"id": [1, 2], "v": [1.0, 2.0]})
        old.dk.save(store, "t")
        new = pd.DataFrame({"id": [*range(10, 30), 10], "v": 0.5})
        source = LocalPartitions(parts(new, 7))
        with pytest.raises(dk.BatchError) as info:
            write("save", source, store, "t", WriteOptions(if_exists="replace", errors="raise"), parallel=source)
        assert info.value.result.failures["row"].tolist() == [20] and source.ran == 3
        assert_frame_equal(dk.load(store, "t"), old)
        assert store.tables() == ["t"]


class HistoryContract:
    """A store with History numbers each call's version, lists them, and reads any of them back."""

    def test_each_call_makes_a_version_listed_newest_first_and_read_back(self, store):
        assert isinstance(store.backend, History)
        v0 = pd.DataFrame({"id": [1, 2, 3], "v": [1.0, 2.0, 3.0]})
        r0 = v0.dk.save(store, "t")
        r1 = pd.DataFrame({"id": [2], "v": [20.0]}).dk.update_batch(store, "t")
        r2 = pd.DataFrame({"id": [3]}).dk.delete(store, "t")
        assert (r0.version, r1.version, r2.version) == (0, 1, 2) and "(version 2)" in str(r2)
        hist = store.history("t")
        assert hist["version"].tolist() == [2, 1, 0]
        assert_frame_equal(dk.load(store, "t", version=0), v0)
        assert dk.load(store, "t", version=1)["v"].tolist() == [1.0, 20.0, 3.0]
        when = pd.Timestamp(hist["timestamp"].iloc[1])
        assert dk.load(store, "t", as_of=when)["v"].tolist() == [1.0, 20.0, 3.0]
        assert dk.load(store, "t", version=1, where=[("id", ">=", 2)], columns=["v"])["v"].tolist() == [20.0, 3.0]
        assert dk.load(store, "t")["id"].tolist() == [1, 2]

    def test_a_version_that_is_not_there_is_named(self, store):
        pd.DataFrame({"id": [1]}).dk.save(store, "t")
        with pytest.raises(dk.InvalidArgumentError, match="7"):
            dk.load(store, "t", version=7)
