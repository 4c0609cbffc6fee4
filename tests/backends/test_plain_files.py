"""Tables other tools made in a file store's folder: a pandas `to_parquet` file, a pyarrow hive-partitioned folder,
a Spark-like folder, a pandas `to_csv` file and a pyarrow CSV folder, locally and on S3 (moto's server). Each is
listed, read as pandas reads it, filtered with its partitions pruned, appended to, updated and deleted by key=,
and read back by the tool that made it, with the same columns and forms."""

from __future__ import annotations

import os
import uuid

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd.backends.base import COMPANIONS
from dataknobs_pd.types import TypeMapper
from tests import s3_server
from tests.backends.test_full_disk import FullDiskFS


def _files(folder) -> list[str]:
    """Every file below `folder`, relative, sorted (hidden ones too), but those of the tables kept beside a
    table (its batch log `sales__batches`, a table of its own, and its lock)."""
    out = []
    for dirpath, _, names in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        out += [n if rel == "." else f"{rel}/{n}" for n in names]
    return sorted(f for f in out if not any(k in f for k in COMPANIONS))


def _staged(folder) -> list[str]:
    """Files a call staged and left behind (none, after any call)."""
    return [f for f in _files(folder) if os.path.basename(f).startswith(".dk-")]


def _spoil(path) -> tuple[bytes, os.stat_result]:
    """Overwrite a file with bytes no reader can parse, keeping its size and times; what it held before."""
    st = os.stat(path)
    with open(path, "rb") as f:
        before = f.read()
    with open(path, "wb") as f:
        f.write(b"\0" * len(before))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return before, st


def _restore(path, before: bytes, st: os.stat_result) -> None:
    with open(path, "wb") as f:
        f.write(before)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _sales() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "city": ["Oslo", None, "Lima", "Pune"],
            "kind": pd.Categorical(["a", "b", "a", "b"]),
            "amount": [1.5, np.nan, 3.25, 4.0],
            "when": pd.date_range("2021-01-01", periods=4, tz="Europe/Paris"),
            "ok": [True, False, True, True],
        },
        index=pd.Index([10, 20, 30, 40], name="order"),
    )


# -- a single Parquet file written by pandas ------------------------------------------------------------
def test_a_pandas_parquet_file_is_a_table(tmp_path):
    path = tmp_path / "sales.parquet"
    df = _sales()
    df.to_parquet(path)
    meta = pq.read_schema(path).metadata[b"pandas"]
    store = dk.connect(f"parquet://{tmp_path}")
    assert store.tables() == ["sales"]
    assert_frame_equal(dk.load(store, "sales"), pd.read_parquet(path))  # the index from pandas' metadata
    assert_frame_equal(
        dk.load(store, "sales", where=[("amount", ">", 2)]), pd.read_parquet(path, filters=[("amount", ">", 2)])
    )
    by_amount = pd.read_parquet(path).sort_values("amount", ascending=False)
    assert_frame_equal(
        dk.load(store, "sales", columns=["city"], order_by=("amount", "desc"), limit=2), by_amount[["city"]].head(2)
    )
    chunks = list(dk.load(store, "sales", chunksize=3))
    assert [len(c) for c in chunks] == [3, 1]
    assert_frame_equal(pd.concat(chunks), pd.read_parquet(path))

    # an append: the file holds every row (a Parquet file cannot grow in place: rewritten), nothing else is added
    more = _sales().iloc[:2].set_axis(pd.Index([50, 60], name="order")).assign(id=[5, 6], city=["Rome", "Kyiv"])
    assert more.dk.save(store, "sales", if_exists="append").ok
    expected = pd.concat([df, more])
    assert_frame_equal(pd.read_parquet(path), expected)
    assert_frame_equal(dk.load(store, "sales"), expected)
    assert _files(tmp_path) == ["_dk_locks/sales.lock", "sales.parquet"]
    assert pq.read_schema(path).metadata[b"pandas"] == meta  # pandas' own description of its columns

    # by key= (the file has no key of its own): the file is rewritten, as pandas reads it
    res = pd.DataFrame({"id": [2, 5, 9], "city": ["Rome", "Turin", "Nowhere"]}).dk.update_batch(
        store, "sales", key="id"
    )
    assert res.succeeded == 2 and res.failures["stage"].tolist() == ["missing"]
    expected.loc[expected["id"] == 2, "city"] = "Rome"
    expected.loc[expected["id"] == 5, "city"] = "Turin"
    res = pd.DataFrame({"id": [1, 6]}).dk.delete(store, "sales", key="id")
    assert res.ok and res.succeeded == 2
    expected = expected[~expected["id"].isin([1, 6])]
    assert_frame_equal(pd.read_parquet(path), expected)
    assert_frame_equal(dk.load(store, "sales"), expected)
    assert _staged(tmp_path) == [] and pq.read_schema(path).metadata[b"pandas"] == meta


def test_a_parquet_file_replaced_stays_where_it_was(tmp_path):
    path = tmp_path / "sales.parquet"
    _sales().to_parquet(path)
    new = pd.DataFrame({"sku": ["x", "y"], "qty": [3, 4]})
    assert new.dk.save(f"parquet://{tmp_path}", "sales", if_exists="replace").ok
    assert_frame_equal(pd.read_parquet(path), new)
    assert _files(tmp_path) == ["_dk_locks/sales.lock", "sales.parquet"]
    empty = new.iloc[:0]
    assert empty.dk.save(f"parquet://{tmp_path}", "sales", if_exists="replace").ok
    assert_frame_equal(pd.read_parquet(path), empty, check_index_type=False)


def test_a_failed_call_leaves_the_files_as_they_were(tmp_path):
    path = tmp_path / "sales.parquet"
    _sales().to_parquet(path)
    before = path.read_bytes()
    store = dk.connect(f"parquet://{tmp_path}")
    bad = _sales().iloc[:2].set_axis(pd.Index([50, 60], name="order")).astype({"id": object})
    bad.loc[60, "id"] = 2.5  # no integer
    with pytest.raises(dk.BatchError):
        bad.dk.save(store, "sales", if_exists="append", errors="raise")
    assert path.read_bytes() == before and _staged(tmp_path) == []
    res = _sales().iloc[:1].dk.update_batch(store, "sales", key="id", dry_run=True)
    assert res.changes["action"].tolist() == ["unchanged"]
    assert path.read_bytes() == before and _staged(tmp_path) == []


def test_a_full_disk_leaves_the_file_as_it_was(tmp_path):
    fsspec.register_implementation("fulldisk", FullDiskFS, clobber=True)
    path = tmp_path / "sales.parquet"
    _sales().to_parquet(path)
    before = path.read_bytes()
    store = dk.connect(f"parquet://fulldisk://{tmp_path}")  # the local disk through fsspec, with room for nothing
    more = _sales().iloc[:1].set_axis(pd.Index([50], name="order")).assign(id=5)
    FullDiskFS.free = 0
    try:
        with pytest.raises(dk.StorageError, match="disk is full"):
            more.dk.save(store, "sales", if_exists="append")
    finally:
        FullDiskFS.free = None
    assert path.read_bytes() == before and _staged(tmp_path) == []
    assert more.dk.save(store, "sales", if_exists="append").ok  # room again
    assert_frame_equal(pd.read_parquet(path), pd.concat([_sales(), more]))


def test_another_writer_meanwhile_stops_the_commit(tmp_path):
    path = tmp_path / "sales.parquet"
    _sales().to_parquet(path)
    store = dk.connect(f"parquet://{tmp_path}")
    backend = store.backend
    schema = backend.schema("sales")
    rows, _ = TypeMapper().to_arrow(_sales().iloc[:1], schema)
    theirs = _sales().iloc[2:]
    with pytest.raises(dk.ConcurrentWriteError), backend.transaction():
        backend.write("sales", rows, schema, "insert")
        theirs.to_parquet(path)  # pandas rewrites the file before the call commits
    assert_frame_equal(pd.read_parquet(path), theirs)  # theirs stands, nothing of the call is published
    assert _staged(tmp_path) == []


def test_columns_are_added_to_a_single_parquet_file_only(tmp_path):
    _sales().to_parquet(tmp_path / "sales.parquet")
    more = _sales().iloc[:1].set_axis(pd.Index([50], name="order")).assign(id=5, note="new")
    res = more.dk.save(f"parquet://{tmp_path}", "sales", if_exists="append", new_columns="add")
    assert res.ok and list(res.added) == ["note"]
    back = pd.read_parquet(tmp_path / "sales.parquet")
    assert back["note"].tolist()[-1] == "new" and back["note"].isna().sum() == 4
    assert_frame_equal(dk.load(f"parquet://{tmp_path}", "sales"), back)
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "folder.parquet")
    os.mkdir(tmp_path / "events")
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "events" / "part-0.parquet")
    with pytest.raises(dk.SchemaMismatchError, match="folder of files"):
        pd.DataFrame({"id": [3], "note": ["x"]}).dk.save(
            f"parquet://{tmp_path}", "events", if_exists="append", new_columns="add"
        )
    assert _files(tmp_path / "events") == ["part-0.parquet"]


# -- a hive-partitioned folder written by pyarrow -------------------------------------------------------
def _events() -> pa.Table:
    return pa.table(
        {
            "year": [2021, 2021, 2021, 2022, 2022],
            "id": [1, 2, 3, 4, 5],
            "what": ["a", "b", "c", "d", "e"],
            "x": [0.5, 1.5, 2.5, 3.5, 4.5],
        }
    )


def test_a_hive_partitioned_folder_is_a_table(tmp_path):
    folder = tmp_path / "events"
    ds.write_dataset(_events(), folder, format="parquet", partitioning=["year"], partitioning_flavor="hive")
    store = dk.connect(f"parquet://{tmp_path}")
    assert store.tables() == ["events"]
    out = dk.load(store, "events")
    assert_frame_equal(out, pd.read_parquet(folder))  # the partition column comes back as pandas reads it
    assert list(out.columns) == ["id", "what", "x", "year"] and out["year"].dtype == "category"
    assert_frame_equal(
        dk.load(store, "events", where=[("x", ">", 1), ("year", "==", 2021)]),
        pd.read_parquet(folder, filters=[("x", ">", 1), ("year", "==", 2021)]),
        check_categorical=False,
    )
    # the partitions a filter rules out are not opened: the file of 2021 cannot be read, and no filtered read minds
    spoilt = folder / "year=2021" / "part-0.parquet"
    before, st = _spoil(spoilt)
    try:
        with pytest.raises(dk.StorageError):
            dk.load(store, "events")
        got = dk.load(store, "events", where=[("year", "==", 2022)])
        assert got["id"].tolist() == [4, 5]
        chunks = list(dk.load(store, "events", where=[("year", "in", [2022])], chunksize=1))
        assert [c["id"].tolist() for c in chunks] == [[4], [5]]
        assert dk.load(store, "events", where=[("year", ">=", 2022)], order_by=("x", "desc"))["id"].tolist() == [5, 4]
    finally:
        _restore(spoilt, before, st)

    # an append: a new file in each partition's folder, without the partition column, as pyarrow writes them
    more = pd.DataFrame({"id": [6, 7], "what": ["f", "g"], "x": [5.5, 6.5], "year": [2022, 2023]})
    assert more.dk.save(store, "events", if_exists="append").ok
    added = [f for f in _files(folder) if f not in ("year=2021/part-0.parquet", "year=2022/part-0.parquet")]
    assert [f.split("/")[0] for f in added] == ["year=2022", "year=2023"]
    assert all(os.path.basename(f).startswith("part-dk-") for f in added)
    assert all(pq.read_schema(folder / f).names == ["id", "what", "x"] for f in added)
    back = pd.read_parquet(folder)
    assert_frame_equal(dk.load(store, "events"), back)
    assert sorted(back["id"]) == [1, 2, 3, 4, 5, 6, 7] and back.set_index("id").loc[7, "year"] == 2023

    # by key=: only the files holding the keys are rewritten; a row whose partition changes moves folders
    untouched = os.stat(folder / "year=2022" / "part-0.parquet")
    res = pd.DataFrame({"id": [1, 2], "what": ["A", "B"], "year": [2021, 2023]}).dk.update_batch(
        store, "events", key="id"
    )
    assert res.ok
    res = pd.DataFrame({"id": [3]}).dk.delete(store, "events", key="id")
    assert res.ok
    assert os.stat(folder / "year=2022" / "part-0.parquet").st_mtime_ns == untouched.st_mtime_ns
    back = pd.read_parquet(folder)
    assert_frame_equal(dk.load(store, "events"), back)
    rows = back.set_index("id").sort_index()
    assert rows.index.tolist() == [1, 2, 4, 5, 6, 7]
    assert rows["what"].tolist() == ["A", "B", "d", "e", "f", "g"]
    assert rows["year"].astype(int).tolist() == [2021, 2023, 2022, 2022, 2022, 2023]
    read = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
    assert read.schema.names == ["id", "what", "x", "year"] and read.num_rows == 6
    assert _staged(tmp_path) == []
    # a folder emptied of its rows goes too
    assert pd.DataFrame({"id": [2, 7]}).dk.delete(store, "events", key="id").ok
    assert not (folder / "year=2023").exists()
    assert sorted(pd.read_parquet(folder)["id"]) == [1, 4, 5, 6]


def test_a_partitioned_folder_replaced_keeps_its_partitions(tmp_path):
    folder = tmp_path / "events"
    ds.write_dataset(_events(), folder, format="parquet", partitioning=["year"], partitioning_flavor="hive")
    new = pd.DataFrame({"id": [10, 11], "what": ["p", "q"], "x": [1.0, 2.0], "year": [2030, 2031]})
    assert new.dk.save(f"parquet://{tmp_path}", "events", if_exists="replace").ok
    assert [f.split("/")[0] for f in _files(folder)] == ["year=2030", "year=2031"]
    back = pd.read_parquet(folder)
    assert back["id"].tolist() == [10, 11] and back["year"].astype(int).tolist() == [2030, 2031]
    assert_frame_equal(dk.load(f"parquet://{tmp_path}", "events"), back)
    dk.connect(f"parquet://{tmp_path}").drop("events")
    assert not folder.exists() and dk.connect(f"parquet://{tmp_path}").tables() == []


# -- a folder as Spark writes it ------------------------------------------------------------------------
def test_a_spark_folder_is_a_table(tmp_path):
    folder = tmp_path / "clicks"
    (folder / "_temporary" / "0").mkdir(parents=True)
    job = uuid.uuid4()
    for i, rows in enumerate(([1, 2, 3], [4, 5])):
        name = f"part-{i:05d}-{job}-c000.snappy.parquet"
        table = pa.table(
            {
                "id": pa.array(rows, pa.int64()),
                "user": [f"u{r}" for r in rows],
                "n": [r if r != 2 else None for r in rows],
            }
        )
        pq.write_table(table, folder / name, compression="snappy")
        (folder / f".{name}.crc").write_bytes(b"not parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / "_temporary" / "0" / "part-00009.parquet").write_bytes(b"half written")
    store = dk.connect(f"parquet://{tmp_path}")
    assert store.tables() == ["clicks"]
    out = dk.load(store, "clicks")
    assert_frame_equal(out, pd.read_parquet(folder))
    assert out["n"].dtype == "float64"  # an integer column holding a missing value, as pandas reads it
    whole = pd.read_parquet(folder)  # filtered by pandas: the table's dtypes, not those of the rows left
    assert_frame_equal(dk.load(store, "clicks", where=[("n", ">=", 3)]), whole[whole["n"] >= 3].reset_index(drop=True))
    assert pd.DataFrame({"id": [6], "user": ["u6"], "n": [6.0]}).dk.save(store, "clicks", if_exists="append").ok
    first = os.stat(folder / f"part-00000-{job}-c000.snappy.parquet")
    assert pd.DataFrame({"id": [5], "n": [50.0]}).dk.update_batch(store, "clicks", key="id").ok
    assert os.stat(folder / f"part-00000-{job}-c000.snappy.parquet").st_mtime_ns == first.st_mtime_ns
    back = pd.read_parquet(folder)
    assert_frame_equal(dk.load(store, "clicks"), back)
    assert back["id"].tolist() == [1, 2, 3, 4, 5, 6] and back["n"].fillna(0).tolist() == [1, 0, 3, 4, 50, 6]
    assert (folder / "_SUCCESS").exists() and (folder / f".part-00000-{job}-c000.snappy.parquet.crc").exists()
    res = pd.DataFrame({"id": [5], "n": [1.5]}).dk.update_batch(store, "clicks", key="id")
    assert res.failed == 1 and res.failures["stage"].tolist() == ["write"]  # 1.5 is no integer: the files' type
    assert pd.read_parquet(folder).set_index("id").loc[5, "n"] == 50.0


def test_leftovers_of_a_managed_table_are_no_table(tmp_path):
    pd.DataFrame({"id": [1, 2]}).dk.save(f"parquet://{tmp_path}", "kept")
    crashed = tmp_path / "gone"
    crashed.mkdir()
    pq.write_table(pa.table({"id": [1]}), crashed / f"part-{uuid.uuid4().hex[:20]}.parquet")
    pd.DataFrame({"id": [3]}).to_parquet(tmp_path / "plain.parquet")
    assert dk.connect(f"parquet://{tmp_path}").tables() == ["kept", "plain"]
    assert dk.connect(f"csv://{tmp_path}").tables() == []


# -- a CSV file written by pandas, a CSV folder written by pyarrow ---------------------------------------
def _people() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3],
            "name": ["Ann", None, "Bo, Jr."],
            "score": [1.5, np.nan, 3.0],
            "visits": [1, 5, 2],
            "member": [True, False, True],
            "since": ["2021-01-01", "2021-02-03", "2022-12-31"],
        }
    )


def test_a_pandas_csv_file_is_a_table(tmp_path):
    path = tmp_path / "people.csv"
    _people().to_csv(path, index=False)
    text = path.read_bytes()
    store = dk.connect(f"csv://{tmp_path}")
    assert store.tables() == ["people"]
    out = dk.load(store, "people")
    assert_frame_equal(out, pd.read_csv(path))  # dates stay text, as pandas reads them
    assert_frame_equal(
        dk.load(store, "people", where=[("name", "==", "Bo, Jr.")]), pd.read_csv(path).iloc[2:].reset_index(drop=True)
    )
    assert dk.load(store, "people", columns=["id"], order_by=("visits", "desc"), limit=2)["id"].tolist() == [2, 3]
    assert [len(c) for c in dk.load(store, "people", chunksize=2)] == [2, 1]

    more = pd.DataFrame(
        {"id": [4], "name": ["Cy"], "score": [4.25], "visits": [7], "member": [False], "since": ["2023-01-01"]}
    )
    assert more.dk.save(store, "people", if_exists="append").ok
    assert path.read_bytes().startswith(text)  # the rows written before stay as they were, byte for byte
    expected = pd.concat([pd.read_csv(path).iloc[:3], more], ignore_index=True)
    assert_frame_equal(pd.read_csv(path), expected)
    assert_frame_equal(dk.load(store, "people"), expected)

    assert pd.DataFrame({"id": [2], "name": ["Di"], "score": [2.0]}).dk.update_batch(store, "people", key="id").ok
    assert pd.DataFrame({"id": [1]}).dk.delete(store, "people", key="id").ok
    expected = expected.iloc[1:].reset_index(drop=True)
    expected.loc[0, ["name", "score"]] = ["Di", 2.0]
    assert_frame_equal(pd.read_csv(path), expected)
    assert_frame_equal(dk.load(store, "people"), expected)
    assert _files(tmp_path) == ["_dk_locks/people.lock", "people.csv"]


def test_a_csv_folder_written_by_pyarrow_is_a_table(tmp_path):
    folder = tmp_path / "events"
    ds.write_dataset(_events(), folder, format="csv", partitioning=["year"], partitioning_flavor="hive")
    store = dk.connect(f"csv://{tmp_path}")
    assert store.tables() == ["events"]

    def theirs() -> pd.DataFrame:  # how pyarrow reads the folder back
        return ds.dataset(folder, format="csv", partitioning="hive").to_table().to_pandas()

    assert_frame_equal(dk.load(store, "events"), theirs())
    spoilt = folder / "year=2021" / "part-0.csv"
    dk.load(store, "events")
    before, st = _spoil(spoilt)
    try:
        assert dk.load(store, "events", where=[("year", "==", 2022)])["id"].tolist() == [4, 5]
    finally:
        _restore(spoilt, before, st)
    more = pd.DataFrame({"year": [2023], "id": [6], "what": ["f"], "x": [5.5]})
    assert more.dk.save(store, "events", if_exists="append").ok
    assert pd.DataFrame({"id": [2], "x": [9.0]}).dk.update_batch(store, "events", key="id").ok
    back = theirs()
    assert_frame_equal(dk.load(store, "events"), back)
    assert back.set_index("id").loc[[2, 6], "x"].tolist() == [9.0, 5.5]
    assert back.set_index("id").loc[6, "year"] == 2023


# -- on S3 ----------------------------------------------------------------------------------------------
def test_plain_files_on_s3():
    s3 = s3_server.server()
    prefix = f"{s3_server.BUCKET}/{uuid.uuid4().hex}"
    options = s3.options()
    df = _sales()
    df.to_parquet(f"s3://{prefix}/sales.parquet", storage_options=options)
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    ds.write_dataset(
        _events(),
        f"{prefix}/events",
        format="parquet",
        partitioning=["year"],
        partitioning_flavor="hive",
        filesystem=pa.fs.PyFileSystem(pa.fs.FSSpecHandler(fs)),
    )
    store = dk.connect(f"parquet://s3://{prefix}", storage_options=options)
    assert store.tables() == ["events", "sales"]

    def theirs(name: str) -> pd.DataFrame:
        return pd.read_parquet(f"s3://{prefix}/{name}", storage_options=options)

    assert_frame_equal(dk.load(store, "sales"), theirs("sales.parquet"))
    assert_frame_equal(dk.load(store, "events"), theirs("events"))
    assert dk.load(store, "events", where=[("year", "==", 2022)])["id"].tolist() == [4, 5]
    more = pd.DataFrame({"id": [6], "what": ["f"], "x": [5.5], "year": [2023]})
    assert more.dk.save(store, "events", if_exists="append").ok
    assert pd.DataFrame({"id": [1], "what": ["A"]}).dk.update_batch(store, "events", key="id").ok
    assert_frame_equal(dk.load(store, "events"), theirs("events"))
    assert sorted(theirs("events")["id"]) == [1, 2, 3, 4, 5, 6]
    assert _sales().iloc[:1].set_axis(pd.Index([50], name="order")).dk.save(store, "sales", if_exists="append").ok
    assert_frame_equal(theirs("sales.parquet"), pd.concat([df, df.iloc[:1].set_axis(pd.Index([50], name="order"))]))
    keys = s3.objects(prefix.split("/", 1)[1])
    assert not [k for k in keys if "/.dk-" in k]
    assert [k.rsplit("/", 2)[-2] for k in keys if "/events/" in k and "part-dk-" in k] == ["year=2023"]
