"""The file stores on S3 (moto's server on 127.0.0.1, the real s3fs client): layout, refused credentials,
missing permissions and a missing bucket. The contract suite itself runs on S3 in tests/contract/test_s3.py."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd import StorageError
from dataknobs_pd.testing import dtype_matrix
from tests import s3_server

FORMATS = ["parquet", "csv", "jsonl"]


@pytest.fixture(scope="module")
def s3():
    return s3_server.server()


@pytest.fixture(params=FORMATS)
def saved(request, s3):
    """A store on a fresh prefix holding table "t" (three parts), and what it holds."""
    prefix = uuid.uuid4().hex
    url = f"{request.param}://s3://{s3_server.BUCKET}/{prefix}"
    store = dk.connect(url, storage_options=s3.options())
    df = dtype_matrix(n=30)
    df.dk.save(store, "t", chunksize=10)
    yield store, url, prefix, df
    store.close()


def _table_objects(s3, prefix: str) -> list[str]:
    """The objects of the store, less those of the table's batch log (a table of its own, `t__batches`)."""
    return [k for k in s3.objects(prefix) if not k.startswith(f"{prefix}/t__batches/")]


def test_layout_and_rewrites_on_s3(saved, s3):
    store, url, prefix, df = saved
    fmt = url.split("://")[0]
    keys = _table_objects(s3, prefix)
    manifest_key = f"{prefix}/t/_dk_{fmt}/{1:020d}.json"  # version 1's manifest
    doc = json.loads(s3.client().get_object(Bucket=s3_server.BUCKET, Key=manifest_key)["Body"].read())
    parts = [f"{prefix}/t/{p['file']}" for p in doc["parts"]]
    assert sorted(keys) == sorted([manifest_key, *parts]) and len(parts) == 3  # no temporary objects left
    df.iloc[12:14].assign(i8=np.int8(5)).dk.update_batch(store, "t")  # keys of the middle part only
    second = f"{prefix}/t/_dk_{fmt}/{2:020d}.json"
    doc = json.loads(s3.client().get_object(Bucket=s3_server.BUCKET, Key=second)["Body"].read())
    new = f"{prefix}/t/{doc['parts'][1]['file']}"
    assert [f"{prefix}/t/{p['file']}" for p in doc["parts"]] == [parts[0], new, parts[2]]
    # the replaced part and version 1 stay for readers that started before (the retention, an hour on S3) ...
    assert [r["file"] for r in doc["retired"]] == [parts[1].rsplit("/", 1)[-1]]
    assert sorted(_table_objects(s3, prefix)) == sorted([manifest_key, second, *parts, new])
    assert store.backend.vacuum("t") == []  # ... which vacuum keeps to by default,
    # and a shorter one removes the part (version 1 stays for the store's retention: a writer may still try it)
    assert store.backend.vacuum("t", retention=0) == [parts[1].rsplit("/", 1)[-1]]
    assert sorted(_table_objects(s3, prefix)) == sorted([manifest_key, second, parts[0], new, parts[2]])
    expected = df.copy()
    expected.loc[12:13, "i8"] = np.int8(5)
    assert_frame_equal(dk.load(store, "t"), expected, check_dtype=True)
    if fmt == "parquet":  # with no write in progress (and vacuumed) a plain reader sees the table
        back = pd.read_parquet(f"s3://{s3_server.BUCKET}/{prefix}/t", storage_options=s3.options())
        assert back.sort_values("id", ignore_index=True)["i8"].tolist() == expected["i8"].tolist()
    chunks = list(dk.load(store, "t", chunksize=8, where=[("id", ">", 20)]))
    assert_frame_equal(
        pd.concat(chunks, ignore_index=True), expected[expected["id"] > 20].reset_index(drop=True), check_dtype=True
    )


def test_a_read_that_started_before_a_commit_reads_its_version_whole(s3):
    url = f"parquet://s3://{s3_server.BUCKET}/{uuid.uuid4().hex}"
    reader = dk.connect(url, storage_options=s3.options())
    df = pd.DataFrame({"id": np.arange(30), "v": np.arange(30.0)})
    df.dk.save(reader, "t", chunksize=10)  # three parts, read one after the other
    for retention, survives in ((None, True), (0, False)):
        # another process (a store of its own) rewrites every part while the read is under way
        writer = dk.connect(url, storage_options=s3.options(), retention=retention)
        chunks = dk.load(reader, "t", chunksize=5)
        first = next(chunks)
        before = dk.load(reader, "t")
        before.assign(v=-before["v"]).dk.update_batch(writer, "t")
        if survives:  # the replaced parts stay for the retention (an hour on S3): the read finishes
            assert_frame_equal(pd.concat([first, *chunks], ignore_index=True), before)
        else:  # without it they are gone at once, and so is the read
            with pytest.raises(StorageError, match="not found"):
                list(chunks)
        writer.close()
    assert_frame_equal(dk.load(reader, "t"), df)  # negated twice


def test_wrong_credentials_are_a_clear_error_and_change_nothing(saved, s3):
    store, url, prefix, df = saved
    before = sorted(_table_objects(s3, prefix))
    with pytest.raises(StorageError, match="access denied") as info:
        dk.connect(url, storage_options=s3.options(secret="not-the-secret"))
    assert isinstance(info.value, dk.DataKnobsError) and "storage_options" in str(info.value)
    unknown_key = dict(s3.options(), key="AKIAUNKNOWNUNKNOWN00")
    with pytest.raises(dk.DataKnobsError, match="access denied"):
        dk.connect(url.replace(prefix, prefix + "-x"), storage_options=unknown_key)
    assert sorted(_table_objects(s3, prefix)) == before and not s3.objects(prefix + "-x")
    assert_frame_equal(dk.load(store, "t"), df, check_dtype=True)


def test_a_read_only_user_reads_but_cannot_write_and_nothing_is_lost(saved, s3):
    store, url, prefix, df = saved
    before = sorted(_table_objects(s3, prefix))
    reader = dk.connect(url, storage_options=s3.options("reader"))
    assert_frame_equal(dk.load(reader, "t"), df, check_dtype=True)
    assert reader.tables() == ["t"]
    calls = [
        lambda: dtype_matrix(n=40).iloc[30:].dk.save(reader, "t", if_exists="append"),
        lambda: df.iloc[:3].dk.update_batch(reader, "t"),
        lambda: df.iloc[:3].dk.delete(reader, "t"),
        lambda: df.dk.save(reader, "t", if_exists="replace"),
        lambda: df.dk.save(reader, "new"),
        lambda: reader.drop("t"),
    ]
    for call in calls:
        with pytest.raises(StorageError, match="access denied"):
            call()
    assert sorted(_table_objects(s3, prefix)) == before
    assert_frame_equal(dk.load(store, "t"), df, check_dtype=True)
    assert_frame_equal(dk.load(reader, "t"), df, check_dtype=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_missing_bucket_is_a_clear_error_and_is_not_created(s3, fmt):
    bucket = f"no-such-bucket-{uuid.uuid4().hex[:12]}"
    with pytest.raises(StorageError, match=f"bucket '{bucket}' does not exist"):
        dk.connect(f"{fmt}://s3://{bucket}/prefix", storage_options=s3.options())
    assert bucket not in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]
