"""The dk accessor on Dask DataFrames: writes through a LocalCluster of 2 worker processes and the
local scheduler, one report for the whole frame, keys across partitions, all or nothing, a worker
killed mid-write, and lazy loads with exact dtypes."""

from __future__ import annotations

import os
import signal
import threading
import time

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
import dataknobs_pd.dask as dkd
from dataknobs_pd.testing import dtype_matrix
from tests import pg


@pytest.fixture(autouse=True, scope="module")
def keep_dtypes():
    """Dask turns object columns into strings by default (bytes too); these tests send frames as they are."""
    with dask.config.set({"dataframe.convert-string": False}):
        yield


@pytest.fixture(scope="module")
def cluster(keep_dtypes):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40) as lc,
        Client(lc) as client,
    ):
        yield client


URLS = {
    "sqlite": lambda tmp: f"sqlite:///{tmp}/d.db",
    "postgresql": lambda tmp: pg.new_store_url(),
    "parquet": lambda tmp: f"parquet://{tmp}/p",
    "delta": lambda tmp: f"delta://{tmp}/delta",
    "memory": lambda tmp: f"memory://dask-{tmp.name}",
}


@pytest.fixture(params=sorted(URLS))
def url(request, tmp_path):
    return URLS[request.param](tmp_path)


def test_matrix_round_trips_through_workers(cluster, url):
    df = dtype_matrix(40)
    ddf = dd.from_pandas(df, npartitions=4, sort=False)
    res = ddf.dk.save(url, "m")
    assert res.ok and res.total == 40
    assert_frame_equal(dk.load(url, "m"), df)
    if url.startswith("memory"):  # the workers are other processes: they cannot see this one's memory
        with pytest.raises(dk.InvalidArgumentError, match="this process"):
            dkd.load(url, "m")
        return
    lazy = dkd.load(url, "m", npartitions=3)
    assert lazy.npartitions == 3
    assert_frame_equal(lazy.compute(), df)


def test_one_report_for_the_whole_frame(cluster, url):
    base = pd.DataFrame({"id": np.arange(0, 100), "v": np.zeros(100)})
    base.dk.save(url, "t")
    new = pd.DataFrame({"id": np.r_[100:130, 5, 140, 141, 140, 150], "v": 1.0})  # 5 exists, 140 repeats
    ddf = dd.from_pandas(new, npartitions=4, sort=False)
    res = ddf.dk.save(url, "t", if_exists="append")
    assert (res.total, res.failed) == (35, 2)
    f = res.failures
    assert f["row"].tolist() == [30, 33] and f["error"].tolist() == ["KeyConflict", "DuplicateKey"]
    assert f["partition"].tolist() == [_part_of(ddf, 30), _part_of(ddf, 33)]
    assert "repeats row 31" in f["message"].iloc[1]
    assert_frame_equal(res.failed_rows(), new.iloc[[30, 33]])
    assert len(dk.load(url, "t")) == 133


def test_update_and_delete_through_dask(cluster, url):
    pd.DataFrame({"id": np.arange(50), "v": np.zeros(50), "w": "x"}).dk.save(url, "t")
    upd = dd.from_pandas(pd.DataFrame({"id": [1, 2, 99], "v": [1.0, 2.0, 9.0]}), npartitions=2)
    res = upd.dk.update_batch(url, "t")
    assert res.failures["error"].tolist() == ["MissingKey"] and res.failures["row"].tolist() == [2]
    gone = dd.from_pandas(pd.DataFrame({"id": [3, 4]}), npartitions=2)
    assert gone.dk.delete(url, "t").succeeded == 2
    out = dk.load(url, "t").set_index("id")
    assert out.loc[[1, 2], "v"].tolist() == [1.0, 2.0] and 3 not in out.index and len(out) == 48


def test_raise_is_all_or_nothing_across_partitions(cluster, url):
    pd.DataFrame({"id": [999], "v": [0.0]}).dk.save(url, "t")
    ddf = dd.from_pandas(pd.DataFrame({"id": np.r_[0:40, 999], "v": 1.0}), npartitions=5, sort=False)
    with pytest.raises(dk.BatchError) as info:
        ddf.dk.save(url, "t", if_exists="append", errors="raise")
    assert info.value.result.failures["row"].tolist() == [40]
    assert dk.load(url, "t")["id"].tolist() == [999]


def test_local_scheduler_and_index_key_divisions(tmp_path):
    url = f"sqlite:///{tmp_path}/local.db"
    df = pd.DataFrame({"v": np.arange(1000) * 2}, index=pd.Index(np.arange(1000), name="k"))
    with dask.config.set(scheduler="threads"):
        res = dd.from_pandas(df, npartitions=7).dk.save(url, "t")
        assert res.ok and res.total == 1000
        lazy = dkd.load(url, "t", npartitions=4, where=[("v", ">=", 1000)])
        assert lazy.known_divisions and lazy.divisions[0] == 0 and lazy.divisions[-1] == 999
        assert lazy.dtypes.to_dict() == df.dtypes.to_dict()
        assert_frame_equal(lazy.compute(), df[df["v"] >= 1000])


def test_a_killed_worker_never_writes_a_row_twice(tmp_path):
    from distributed import Client, LocalCluster

    url = f"sqlite:///{tmp_path}/kill.db"
    flag = tmp_path / "slow"

    def slow(part):
        if part["id"].iloc[0] == 3000 and not flag.exists():  # the first try of this partition dies
            flag.write_text(str(os.getpid()))
            time.sleep(30)
        return part

    df = pd.DataFrame({"id": np.arange(6000), "v": np.arange(6000) * 1.0})
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50) as lc,
        Client(lc),
    ):
        ddf = dd.from_pandas(df, npartitions=6).map_partitions(slow, meta=df.iloc[:0])

        def killer(killed: list):
            deadline = time.monotonic() + 60
            while not flag.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            os.kill(int(flag.read_text()), signal.SIGKILL)
            killed.append(True)

        _save_while(killer, ddf, url, df)


def _save_while(killer, ddf, url: str, df: pd.DataFrame) -> None:
    """Save `ddf` as table "t" while `killer` (in a thread) kills a worker; then the table holds each row
    of `df` once, and the report counts each once."""
    killed: list = []
    t = threading.Thread(target=killer, args=(killed,))
    t.start()
    res = ddf.dk.save(url, "t")
    t.join(timeout=60)
    assert killed, "the worker was not killed"
    assert res.ok and res.total == len(df)
    out = dk.load(url, "t")
    assert len(out) == len(df) and out["id"].is_unique
    assert_frame_equal(out, df)


def _part_of(ddf, row: int) -> int:
    sizes = ddf.map_partitions(len).compute().tolist()
    return int(np.searchsorted(np.cumsum(sizes), row, side="right"))


def test_dry_run_track_changes_and_new_columns_reach_the_engine(tmp_path):
    url = f"sqlite:///{tmp_path}/opts.db"
    pd.DataFrame({"id": np.arange(6), "v": np.zeros(6)}).dk.save(url, "t")
    new = pd.DataFrame({"id": [1, 2, 7], "v": [1.0, 2.0, 7.0], "w": ["a", "b", "c"]})
    with dask.config.set(scheduler="threads"):
        ddf = dd.from_pandas(new, npartitions=2, sort=False)
        with pytest.raises(dk.SchemaMismatchError, match="'w'"):
            ddf.dk.save(url, "t", if_exists="upsert")
        dry = ddf.dk.save(url, "t", if_exists="upsert", new_columns="add", dry_run=True)
        assert dry.dry_run and not dry.committed and len(dry.changes) == 3
        assert dk.load(url, "t")["v"].tolist() == [0.0] * 6 and "w" not in dk.load(url, "t").columns
        res = ddf.dk.update_batch(url, "t", new_columns="add", track_changes=True, insert_missing=True)
        assert res.ok and sorted(res.changes["row"].tolist()) == [0, 1, 2]
        gone = dd.from_pandas(pd.DataFrame({"id": [3, 4]}), npartitions=2).dk.delete(url, "t", dry_run=True)
        assert gone.dry_run and gone.succeeded == 2
    out = dk.load(url, "t").set_index("id")
    assert out.loc[[1, 2, 7], "w"].tolist() == ["a", "b", "c"] and len(out) == 7


# -- a new PostgreSQL table from partitions written in parallel (dataknobs_pd.aside) ----------------------
@pytest.fixture
def parallel(monkeypatch):
    """Whether each call that tried the parallel load (the real one, counted) wrote through it; a call of
    pandas frames never tries it."""
    from dataknobs_pd import aside

    ran: list[bool] = []
    real = aside.save

    def counted(*a):
        try:
            done = real(*a)
        except dk.BatchError:  # errors="raise" met a failure: it ran, and swapped nothing in
            ran.append(True)
            raise
        ran.append(done is not None)
        return done

    monkeypatch.setattr(aside, "save", counted)
    return ran


PARALLEL = ["postgresql", "parquet", "csv", "jsonl", "delta"]  # the stores that take a new table from many writers


@pytest.fixture(params=PARALLEL)
def purl(request, tmp_path):
    return pg.new_store_url() if request.param == "postgresql" else f"{request.param}://{tmp_path}/{request.param}"


def _leftovers(url: str, table: str) -> list[str]:
    """What a parallel load left behind: tables aside (PostgreSQL), or records and part files the table's
    manifest does not list (file stores)."""
    if url.startswith("postgresql"):
        return _aside_tables(url)
    backend = dk.connect(url).backend
    if url.startswith("delta"):  # stage folders the table's files are not in
        folder = backend.loc.folder(table)
        listed = {u.rsplit("/", 2)[-2] for u in backend.loc.delta_table(table).file_uris()}
        return [n for n in os.listdir(folder) if n == "_dk_aside" or (n.startswith("dk-") and n not in listed)]
    st = backend.manifests.load(table)[0].state
    listed = {p.file for p in st.parts} if st else set()
    names = os.listdir(backend._dir(table)) if os.path.isdir(backend._dir(table)) else []
    return [n for n in names if n == "_dk_aside" or (n.startswith("part-") and n not in listed)]


def _aside_tables(url: str) -> list[str]:
    store = dk.connect(url)
    with store.backend.session.borrow() as c:
        rows = c.query(
            "SELECT relname FROM pg_class WHERE relnamespace = to_regnamespace($1) AND relname LIKE '\\_dk\\_aside%'",
            (store.backend.nsp,),
        )
    return [r[0] for r in rows]


def test_parallel_load_reports_as_the_one_writer(cluster, parallel, purl):
    url = purl
    df = pd.DataFrame(
        {
            "id": pd.array(np.r_[0:60, 5, 61, None, 62, 30], dtype="Int64"),  # 5 and 30 repeat across partitions
            "v": np.arange(65) * 0.5,
            "big": [2**62] * 63 + [2**70, 1],  # 2**70 does not fit the column's Int: a conversion failure
        },
        index=pd.RangeIndex(100, 165),
    )
    frames = [df.iloc[lo : lo + 13] for lo in range(0, 65, 13)]
    one = dk.save(frames, url, "one")  # the same partitions through the one writer
    res = dd.from_pandas(df, npartitions=5, sort=False).dk.save(url, "t")
    assert parallel == [True]  # the list of frames went through the one writer, the partitions not
    assert (res.total, res.failed) == (65, one.failed) and one.failed >= 3
    cols = ["row", "partition", "stage", "error", "message"]
    assert_frame_equal(res.failures[cols], one.failures[cols])
    assert_frame_equal(res.failed_rows(), one.failed_rows())
    assert_frame_equal(dk.load(url, "t"), dk.load(url, "one"))
    assert _leftovers(url, "t") == []


def test_parallel_load_raise_and_replace(cluster, parallel, purl):
    url = purl
    old = pd.DataFrame({"id": [1, 2], "v": ["a", "b"]})
    old.dk.save(url, "t")
    new = pd.DataFrame({"id": np.r_[10:50, 10], "v": "x"})
    ddf = dd.from_pandas(new, npartitions=4, sort=False)
    with pytest.raises(dk.BatchError) as info:
        ddf.dk.save(url, "t", if_exists="replace", errors="raise")
    assert info.value.result.failures["row"].tolist() == [40]
    assert_frame_equal(dk.load(url, "t"), old)
    res = ddf.dk.save(url, "t", if_exists="replace")
    assert res.succeeded == 40 and dk.load(url, "t")["id"].tolist() == list(range(10, 50))
    with pytest.raises(dk.TableExistsError):
        ddf.dk.save(url, "t")
    assert parallel == [True, True] and _leftovers(url, "t") == []


def test_a_retried_partition_replaces_its_first_try(purl):
    from dataknobs_pd.aside import write_part

    url = purl
    part = pd.DataFrame({"id": np.arange(100), "v": np.arange(100) * 1.0})
    store = dk.connect(url)
    schema = dk.TypeMapper().schema(part, ["id"])
    aside = store.backend.open_aside("t", schema)
    try:
        for _ in range(2):  # a worker that died after its commit: Dask runs the partition again
            assert write_part(part, 3, store.address, aside, "t", schema, 30).failures == {}
        with store.backend.transaction():
            store.backend.swap_in(aside, "t", schema)
    finally:
        store.backend.drop_aside(aside)
    assert_frame_equal(dk.load(url, "t"), part)
    assert _leftovers(url, "t") == []


def _rows_aside(url: str, table: str) -> int:
    """Rows the partitions have written aside so far (their transactions committed)."""
    backend = dk.connect(url).backend
    if url.startswith("postgresql"):
        names = _aside_tables(url)
        if not names:
            return 0
        with backend.session.borrow() as c:
            return c.query(f'SELECT count(*) FROM "{backend.nsp}"."{min(names, key=len)}"')[0][0]
    jobs = f"{backend._dir(table)}/_dk_aside"
    records = [  # published records only: a record is written to a temporary name first, then linked
        f"{jobs}/{j}/{r}"
        for j in (os.listdir(jobs) if os.path.isdir(jobs) else [])
        for r in os.listdir(f"{jobs}/{j}")
        if r.endswith(".json")
    ]
    return sum(p.rows for r in records for p in backend.manifests.parse(table, open(r, "rb").read()).state.parts)


@pytest.mark.parametrize("kind", ["postgresql", "parquet"])
def test_a_worker_killed_after_writing_its_partitions_writes_no_row_twice(tmp_path, keep_dtypes, kind):
    """The other worker's partitions are written (their results wait on it) when it dies: Dask runs
    them again on a new worker, and each new try first removes what the first wrote."""
    from distributed import Client, LocalCluster

    url = pg.new_store_url() if kind == "postgresql" else f"parquet://{tmp_path}/store"
    go = tmp_path / "go"

    def slow(part):
        planned = tmp_path / "planned"  # the driver reads partition 0 first, to plan the call
        if part["id"].iloc[0] == 0 and not planned.exists():
            planned.write_text("")
        elif part["id"].iloc[0] == 0 and not go.exists():  # then it waits until the other worker is killed
            (tmp_path / "slow").write_text(str(os.getpid()))
            deadline = time.monotonic() + 60
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return part

    df = pd.DataFrame({"id": np.arange(6000), "v": np.arange(6000) * 1.0})
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50) as lc,
        Client(lc) as client,
    ):
        ddf = dd.from_pandas(df, npartitions=6).map_partitions(slow, meta=df.iloc[:0])

        def killer(killed: list):
            try:
                # Partition 0 waits; of partitions 1-5, some may wait behind it in its worker's queue
                # (Dask gives a one-thread worker more than one task), the others are written. The
                # other worker is killed once what it writes has stopped growing for a second.
                deadline, seen, since = time.monotonic() + 60, -1, time.monotonic()
                while time.monotonic() < deadline:
                    rows = _rows_aside(url, "t") if (tmp_path / "slow").exists() else -1
                    if rows != seen:
                        seen, since = rows, time.monotonic()
                    elif rows >= 1000 and time.monotonic() - since > 1.0:
                        break
                    time.sleep(0.05)
                else:
                    return
                waiting = int((tmp_path / "slow").read_text())
                other = [p for p in client.run(os.getpid).values() if p != waiting]
                os.kill(other[0], signal.SIGKILL)
                killed.append(other[0])
            finally:
                go.write_text("")

        _save_while(killer, ddf, url, df)
    assert _leftovers(url, "t") == []


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
def test_parallel_load_on_s3(cluster, parallel, fmt):
    """The workers put their parts to S3 (moto's server) themselves; one commit at the driver lists them."""
    from tests import s3_server

    url, options = s3_server.store_spec(fmt)
    store = dk.connect(url, **options)
    df = pd.DataFrame({"id": np.r_[0:300, 7], "v": np.arange(301) * 0.25, "s": "x"})
    res = dd.from_pandas(df, npartitions=3, sort=False).dk.save(store, "t")
    assert parallel == [True] and (res.total, res.failed) == (301, 1)
    assert res.failures["message"].iloc[0] == "key (id) repeats row 7 of this input"
    assert_frame_equal(dk.load(store, "t"), df.iloc[:300])
    prefix = url.split(f"s3://{s3_server.BUCKET}/", 1)[1] + "/t/"
    names = [k[len(prefix) :] for k in s3_server.server().objects(prefix)]
    assert not [n for n in names if n.startswith("_dk_aside")]
    if fmt == "parquet":
        listed = {p.file for p in store.backend.manifests.load("t")[0].state.parts}
        assert {n for n in names if n.startswith("part-")} == listed
    else:
        listed = {u.rsplit("/", 2)[-2] for u in store.backend.loc.delta_table("t").file_uris()}
        assert {n.split("/", 1)[0] for n in names if n.startswith("dk-")} == listed


def test_a_table_made_meanwhile_is_appended_to_not_replaced(tmp_path):
    """save(if_exists="append") planned a new table, and another writer made it while the partitions were
    written aside: the call appends to that table (through the one writer), as it would have had the table
    been there from the start."""
    url = f"parquet://{tmp_path}/store"
    other = pd.DataFrame({"id": [10**6], "v": [-1.0]})

    def meanwhile(part):
        if part["id"].iloc[0] == 20 and "t" not in dk.connect(url).tables():
            other.dk.save(url, "t")
        return part

    df = pd.DataFrame({"id": np.arange(40), "v": np.arange(40) * 1.0})
    with dask.config.set(scheduler="threads"):
        ddf = dd.from_pandas(df, npartitions=4, sort=False).map_partitions(meanwhile, meta=df.iloc[:0])
        res = ddf.dk.save(url, "t", if_exists="append")
    assert res.ok and res.succeeded == 40
    assert_frame_equal(
        dk.load(url, "t"), pd.concat([df, other], ignore_index=True).sort_values("id", ignore_index=True)
    )


@pytest.mark.parametrize("scheme", ["parquet", "sqlite"])  # written by the workers in parallel; by the one writer
def test_a_dask_call_quarantines_once_with_rows_counted_across_partitions(tmp_path, scheme):
    url = f"{scheme}://{tmp_path}/q" if scheme == "parquet" else f"sqlite:///{tmp_path}/q.db"
    df = pd.DataFrame({"id": np.arange(9), "n": np.array([0, "x", 2, 3, 4, 5, 6, "y", 8], dtype=object)})
    with dask.config.set(scheduler="threads"):
        ddf = dd.from_pandas(df, npartitions=3, sort=False)
        pd.DataFrame({"id": [100], "n": [1]}).dk.save(url, "t")
        res = ddf.dk.save(url, "t", if_exists="append", quarantine=True)
    assert res.quarantined == 2 and res.failures["row"].tolist() == [1, 7]
    q = dk.quarantined(url, "t")
    assert q.failures["row"].tolist() == [1, 7] and q.failures["batch_id"].tolist() == [res.batch_id] * 2
    assert_frame_equal(q.failed_rows(), df.iloc[[1, 7]])
    assert store_batches(url)["batch_id"].tolist()[-1] == res.batch_id and len(store_batches(url)) == 2
    with dask.config.set(scheduler="threads"):
        fixed = dd.from_pandas(q.failed_rows().assign(n=[1, 7]).astype({"n": "int64"}), npartitions=2)
        assert fixed.dk.save(url, "t", if_exists="upsert").ok
    assert dk.quarantined(url, "t").failed == 0


def store_batches(url: str) -> pd.DataFrame:
    with dk.connect(url) as s:
        return s.batches("t")


def test_a_new_table_loaded_in_parallel_quarantines_its_repeated_keys_once(tmp_path):
    url = f"parquet://{tmp_path}/q"
    df = pd.DataFrame({"id": [0, 1, 2, 3, 1, 5, 6, 0, 8], "n": np.arange(9)})
    with dask.config.set(scheduler="threads"):
        res = dd.from_pandas(df, npartitions=3, sort=False).dk.save(url, "t", quarantine=True)
    assert res.quarantined == 2 and res.failures["row"].tolist() == [4, 7]
    q = dk.quarantined(url, "t")
    assert q.failures["error"].tolist() == ["DuplicateKey"] * 2
    assert_frame_equal(q.failed_rows(), df.iloc[[4, 7]])
    assert store_batches(url)["batch_id"].tolist() == [res.batch_id]
    with dk.connect(url) as s:  # written by the workers: no undo table, one batch log row
        assert sorted(s.backend.tables()) == ["t", "t__batches", "t__quarantine"]


def test_validate_checks_each_partition_with_rows_counted_across_them(tmp_path):
    import pandera.pandas as pa

    checks = pa.DataFrameSchema({"v": pa.Column(float, pa.Check.ge(0))})
    df = pd.DataFrame({"id": np.arange(30), "v": np.where(np.arange(30) % 7 == 3, -1.0, 1.0)})
    url = f"sqlite:///{tmp_path}/checked.db"
    with dask.config.set(scheduler="threads"):
        res = dd.from_pandas(df, npartitions=3, sort=False).dk.save(url, "t", validate=checks)
    bad = [3, 10, 17, 24]
    assert res.failures["row"].tolist() == bad and set(res.failures["code"]) == {"greater_than_or_equal_to(0)"}
    assert dk.load(url, "t")["id"].tolist() == [i for i in range(30) if i not in bad]


@pytest.mark.parametrize("kind", ["postgresql", "parquet"])
def test_a_parallel_load_checks_its_partitions_on_the_workers(cluster, parallel, tmp_path, kind):
    import pandera.pandas as pa

    url = pg.new_store_url() if kind == "postgresql" else f"parquet://{tmp_path}/p"
    checks = pa.DataFrameSchema({"v": pa.Column(float, pa.Check.ge(0))})
    df = pd.DataFrame({"id": np.arange(40), "v": np.where(np.arange(40) % 9 == 4, -1.0, 1.0)})
    frames = [df.iloc[lo : lo + 10] for lo in range(0, 40, 10)]
    one = dk.save(frames, url, "one", validate=checks)
    res = dd.from_pandas(df, npartitions=4, sort=False).dk.save(url, "t", validate=checks)
    assert parallel == [True] and res.failures["row"].tolist() == [4, 13, 22, 31]
    cols = ["row", "partition", "stage", "error", "code", "message"]
    assert_frame_equal(res.failures[cols], one.failures[cols])
    assert_frame_equal(dk.load(url, "t"), dk.load(url, "one"))
    with dk.connect(url) as store:  # a table's own checks, on a replace through the workers
        store.set_validation("t", pa.DataFrameSchema({"v": pa.Column(float, pa.Check.le(0))}))
    again = dd.from_pandas(df, npartitions=4, sort=False).dk.save(url, "t", if_exists="replace")
    assert parallel == [True, True] and again.succeeded == 4
    with pytest.raises(dk.SchemaMismatchError, match="column 'v' is missing"):
        dd.from_pandas(df[["id"]], npartitions=2).dk.save(url, "t", if_exists="replace")
    assert dk.load(url, "t")["v"].tolist() == [-1.0] * 4 and _leftovers(url, "t") == []
