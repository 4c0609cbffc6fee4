"""The backend contract: one Store shared by several threads writing and reading at once."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd

import dataknobs_pd as dk

THREADS = 4


ROWS = 2_000


class ThreadContract:
    """One Store shared by several threads writing and reading at once."""

    def test_threads_sharing_one_store(self, store):
        base = pd.DataFrame({"id": np.arange(ROWS * THREADS, dtype="int64"), "w": "base", "n": 0})
        base.dk.save(store, "t")
        errors: list[BaseException] = []
        reports: list = []
        start = threading.Barrier(THREADS + 1)

        def writer(i: int) -> None:
            lo = i * ROWS
            try:
                start.wait(timeout=30)
                # upsert a range that overlaps the next thread's and runs past the end of the table
                up = pd.DataFrame(
                    {"id": np.arange(lo + ROWS // 2, lo + ROWS // 2 + ROWS, dtype="int64"), "w": f"t{i}", "n": i + 1}
                )
                reports.append(up.dk.save(store, "t", if_exists="upsert"))
                # then a column of this thread's own first half only
                own = pd.DataFrame({"id": np.arange(lo, lo + ROWS // 2, dtype="int64"), "n": -(i + 1)})
                reports.append(own.dk.update_batch(store, "t"))
                pd.DataFrame({"id": [10**9 + i], "w": "own", "n": 0}).dk.save(store, f"own{i}")
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        def reader() -> None:
            try:
                start.wait(timeout=30)
                for _ in range(5):
                    out = dk.load(store, "t")
                    assert out["id"].is_unique and out["id"].is_monotonic_increasing
                    assert len(out) >= ROWS * THREADS
                    store.tables()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(THREADS)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a thread hung"
        assert not errors, repr(errors[0])
        assert all(r.ok for r in reports), [str(r) for r in reports if not r.ok]

        out = dk.load(store, "t").set_index("id")
        top = ROWS * THREADS + ROWS // 2
        assert list(out.index) == list(range(top))
        half = ROWS // 2
        for i in range(THREADS):  # every row holds a value one of its writers gave it, in some order
            lo = i * ROWS
            first = set(out.loc[lo : lo + half - 1, "n"])
            assert first <= ({-(i + 1), i} if i else {-1}), (i, first)  # thread i-1's upsert, thread i's update
            assert set(out.loc[lo + half : lo + ROWS - 1, "n"]) == {i + 1}  # only thread i's upsert
        assert set(out.loc[ROWS * THREADS :, "n"]) == {THREADS}
        assert sorted(t for t in store.tables() if t.startswith("own")) == [f"own{i}" for i in range(THREADS)]
