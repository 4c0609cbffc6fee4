"""kill -9 in the middle of quarantined, undoable writes and of undos: the table, its quarantine, its undo
images and its batch log stay consistent with each other (a call is in all of them, or in none).

A child process writes calls k = 1, 2, ... into table "t": each upserts 2,000 rows whose `v` is k (keys
overlapping the call before), plus 20 rows that fail (keys of their own, never written again), with
quarantine=True and undoable=True; every third call undoes the one before. The parent kills it at a random
moment, three times on the same store, then checks. On the file stores and Delta, which publish a call's
companions first and its table last, the child says when it is between them and lingers there a moment:
the kills often land there, and the last one always does.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from tests.stores import BACKENDS

CHILD = textwrap.dedent(
    """
    import sys, json, numpy as np, pandas as pd, dataknobs_pd as dk
    url, options, start = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    if url.startswith(("parquet:", "delta:")):  # linger between the companions' publish and the table's
        import time
        from dataknobs_pd.backends.delta import backend as delta
        from dataknobs_pd.backends.files.manifest import Manifests
        put, commit = Manifests.put, delta.commit
        def between():
            print("between", flush=True)
            time.sleep(0.2)
        def slow_put(self, table, *a, **k):
            if table == "t":
                between()
            return put(self, table, *a, **k)
        def slow_commit(st):
            if st.name == "t":
                between()
            return commit(st)
        Manifests.put, delta.commit = slow_put, slow_commit
    store = dk.connect(url, **options)
    last = None
    for k in range(start, start + 1000):
        if k % 3 == 0 and last is not None:
            dk.undo(store, "t", last)
            last = None
            print("undo", k, flush=True)
            continue
        ids = np.arange(k * 1000, k * 1000 + 2000)
        bad = -(k * 100 + np.arange(20))
        v = np.concatenate([np.full(len(ids), k, dtype=object), np.full(20, "bad", dtype=object)])
        df = pd.DataFrame({"id": np.concatenate([ids, bad]), "v": v, "w": np.arange(len(v)) * 0.5})
        last = df.dk.save(store, "t", if_exists="upsert", quarantine=True, undoable=True).batch_id
        print("call", k, flush=True)
    """
)


def _run(url: str, options: dict, start: int, wait: float, between: bool = False) -> None:
    """Run the child from call `start`, kill it after `wait` seconds (`between`: then once it says it is between
    the companions' publish and the table's)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, json.dumps(options), str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    first = child.stdout.readline()  # the first call is done: the store is there
    assert first, child.stderr.read().decode()[-2000:] if child.stderr else "the child wrote nothing"
    time.sleep(wait)
    while between and not child.stdout.readline().startswith(b"between"):
        pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait()


@pytest.mark.parametrize("name", ["sqlite", "duckdb", "postgresql", "parquet", "delta"])
def test_kill_9_leaves_table_quarantine_images_and_log_consistent(name, tmp_path):
    spec = BACKENDS[name](tmp_path)
    url, options = spec if isinstance(spec, tuple) else (spec, {})
    rng = random.Random(name)
    with dk.connect(url, **options) as store:
        pd.DataFrame({"id": [0], "v": [0], "w": [0.0]}).dk.save(store, "t")  # v is an int column
    for attempt in range(3):
        _run(url, options, 1 + attempt * 1000, rng.uniform(0.3, 2.5), name in ("parquet", "delta") and attempt == 2)
    with dk.connect(url, **options) as store:
        log = store.batches("t").set_index("batch_id")
        assert len(log) >= 2
        table = dk.load(store, "t")
        q = dk.load(store, "t__quarantine")
        images = dk.load(store, "t__undo")
        logged = set(log.index)
        # every row of the table was written by a call in the log (the last writer of its key)
        saves = log[log["operation"] == "save"]
        assert set(table["v"]) <= {0, *_call_numbers(store, saves.index)}
        # the quarantine holds exactly what each logged call quarantined, and nothing of any other call
        assert set(q["batch_id"]) <= logged
        per_call = q.groupby("batch_id").size()
        for b, row in log.iterrows():
            assert per_call.get(b, 0) == row["quarantined"], b
        # each logged call kept one image per row it changed, and no images are left of calls not logged
        assert set(images["dk_batch_id"]) <= logged
        kept = images.groupby("dk_batch_id").size()
        for b, row in log.iterrows():
            assert kept.get(b, 0) == (row["succeeded"] if row["undoable"] else 0), b
        undone = log["undone_by"].dropna()
        assert set(undone) <= logged and all(log.loc[u, "operation"] == "undo" for u in undone)
        # the last call logged is the last one the table shows: its rows, or the rows of the call it undid gone
        last = log.sort_values("time").index[-1]
        if log.loc[last, "operation"] == "save":
            (k,) = _call_numbers(store, [last])
            assert (table.loc[table["id"].between(k * 1000, k * 1000 + 1999), "v"] == k).all(), (k, last)
        else:
            (j,) = _call_numbers(store, undone.index[undone == last])
            assert j not in set(table["v"]), (j, last)


def _call_numbers(store, batch_ids) -> list[int]:
    """The `v` each logged save wrote: read from its images' after-rows is not possible, so from the
    quarantine's keys (-(k*100+i)) of that call."""
    q = dk.load(store, "t__quarantine")
    out = set()
    for b in batch_ids:
        keys = q.loc[q["batch_id"] == b, "key"].map(json.loads)
        out |= {(-int(k)) // 100 for k in keys}
    return sorted(out)


# -- a failure between the publishes: the companions are published, the table is not ---------------------------
@pytest.fixture
def table_publish_fails(monkeypatch):
    """While `on` holds True, the publish of table "t" itself fails (its companions' publish went before it):
    the file stores' manifest put, Delta's commit."""
    from dataknobs_pd.backends.delta import backend as delta
    from dataknobs_pd.backends.files.manifest import Manifests

    on = [False]
    put, commit = Manifests.put, delta.commit

    def failing_put(self, table, *args, **kwargs):
        if on[0] and table == "t":
            raise dk.StorageError("the table's publish failed (injected)")
        return put(self, table, *args, **kwargs)

    def failing_commit(st):
        if on[0] and st.name == "t":
            raise dk.StorageError("the table's commit failed (injected)")
        return commit(st)

    monkeypatch.setattr(Manifests, "put", failing_put)
    monkeypatch.setattr(delta, "commit", failing_commit)
    return on


@pytest.mark.parametrize("name", ["parquet", "csv", "delta"])
def test_a_call_whose_table_was_not_published_is_in_no_companion(name, tmp_path, table_publish_fails):
    url = BACKENDS[name](tmp_path)
    store = dk.connect(url)
    first = pd.DataFrame({"id": [0], "v": [0]}).dk.save(store, "t")
    a = pd.DataFrame({"id": [1, 2, -1], "v": [1, 2, "x"]}).dk.save(
        store, "t", if_exists="upsert", quarantine=True, undoable=True
    )
    after_a = dk.load(store, "t")
    change = pd.DataFrame({"id": [-1, 1, 3, -2], "v": [7, 10, 3, "x"]})  # writes A's quarantined key -1

    table_publish_fails[0] = True
    with pytest.raises(dk.StorageError, match="injected"):
        change.dk.save(store, "t", if_exists="upsert", quarantine=True, undoable=True)
    with pytest.raises(dk.StorageError, match="injected"):  # an undo that dies the same way
        dk.undo(store, "t", a.batch_id)
    table_publish_fails[0] = False

    def only_a():
        assert_frame_equal(dk.load(store, "t"), after_a)
        log = store.batches("t")
        assert log["batch_id"].tolist() == [first.batch_id, a.batch_id]
        assert log["undone_by"].isna().all()  # the undo that died marked nothing
        owed = dk.quarantined(store, "t").failures
        assert owed["batch_id"].tolist() == [a.batch_id] and owed["key"].tolist() == [-1]  # not taken out
        assert set(dk.load(store, "t__undo")["dk_batch_id"]) == {a.batch_id}
        assert set(dk.load(store, "t__quarantine")["batch_id"]) == {a.batch_id}

    only_a()
    with dk.connect(
        url, **({"retention": 0} if name != "delta" else {})
    ) as other:  # another handle, as after a restart
        store, mine = other, store
        only_a()
        store = mine
    with pytest.raises(dk.InvalidArgumentError, match="no call"):  # the dead call cannot be undone
        dk.undo(store, "t", store.batches("t")["batch_id"].iloc[-1] + "x")

    b = change.dk.save(store, "t", if_exists="upsert", quarantine=True, undoable=True)  # builds on A's versions
    owed = dk.quarantined(store, "t").failures
    assert owed["batch_id"].tolist() == [b.batch_id] and owed["key"].tolist() == [-2]
    log = store.batches("t")
    assert log["batch_id"].tolist() == [first.batch_id, a.batch_id, b.batch_id]
    versions = log["version"].tolist()
    assert versions == sorted(set(versions)) and None not in versions  # each call made its own version
    if name == "delta":
        assert versions == [first.version, a.version, b.version]
    u = dk.undo(store, "t", b.batch_id)
    assert u.failed == 0
    assert_frame_equal(dk.load(store, "t"), after_a)
    assert dk.quarantined(store, "t").failures["batch_id"].tolist() == [b.batch_id]
    assert dk.undo(store, "t", a.batch_id).failed == 0
