"""What is particular to the file stores (parquet://, csv://, jsonl://) on local disk and other fsspec file systems:
layout, exact text forms, convert failures, atomic rewrites (kill -9), rewriting only the touched parts,
transactions, `where` pushdown, streaming reads, table names, errors."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from typing import ClassVar

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd import StorageError
from dataknobs_pd.schema import TableSchema
from dataknobs_pd.testing import dtype_matrix

FORMATS = ["parquet", "csv", "jsonl"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(params=FORMATS)
def fmt(request):
    return request.param


def connect(tmp_path, fmt, **options):
    return dk.connect(f"{fmt}://{tmp_path}/store", **options)


def folder(store, table="t") -> str:
    return store.backend._dir(table)


def manifests(store, table="t") -> list[str]:
    """The table's manifests, oldest first: one per version kept, _dk_<format>/<version>.json."""
    log = f"{folder(store, table)}/_dk_{store.backend.format}"
    return sorted(f"{log}/{n}" for n in os.listdir(log) if n.endswith(".json"))


def manifest(store, table="t") -> dict:
    with open(manifests(store, table)[-1]) as f:
        return json.load(f)


def part_files(store, table="t") -> list[str]:
    return sorted(n for n in os.listdir(folder(store, table)) if n.startswith("part-"))


def listed(store, table="t") -> list[str]:
    return [p["file"] for p in manifest(store, table)["parts"]]


def numbered(n, start=0):
    return pd.DataFrame({"id": np.arange(start, start + n, dtype="int64"), "v": np.arange(n, dtype="float64")})


# -- layout ----------------------------------------------------------------------------------------
def test_one_folder_per_table_with_a_manifest_and_parts(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    df = dtype_matrix()
    df.dk.save(store, "t")
    names = sorted(os.listdir(folder(store)))
    assert names == [f"_dk_{fmt}", part_files(store)[0]] and names[1].endswith(f".{fmt}")
    assert [os.path.basename(p) for p in manifests(store)] == [f"{1:020d}.json"]
    m = manifest(store)
    assert (m["format"], m["table"], m["version"]) == (fmt, "t", 1)
    assert m["parts"] == [{"file": names[1], "rows": len(df), "bytes": os.path.getsize(f"{folder(store)}/{names[1]}")}]
    assert TableSchema.from_json(json.dumps(m["schema"])) == store.schema("t")  # the sidecar: the dk schema
    assert store.tables() == ["t"]


def test_parquet_parts_carry_the_dk_schema_and_read_with_plain_pyarrow(tmp_path):
    store = connect(tmp_path, "parquet")
    df = dtype_matrix()
    df.dk.save(store, "t")
    path = f"{folder(store)}/{part_files(store)[0]}"
    meta = pq.read_schema(path).metadata
    assert TableSchema.from_json(meta[b"dataknobs_pd.schema"]) == store.schema("t")
    table = pq.read_table(path)
    assert table.column("str").to_pylist()[:3] == ["plain", None, ""]
    assert table.column("id").to_pylist() == df["id"].tolist()


def test_csv_and_jsonl_use_natural_text_forms(tmp_path):
    df = pd.DataFrame(
        {
            "id": [1, 2],
            "when": pd.to_datetime(["2021-03-14 01:59:59", None]).as_unit("s"),
            "ny": pd.to_datetime(["2020-01-01 00:00", "2020-07-01 00:00"])
            .as_unit("us")
            .tz_localize("America/New_York"),
            "raw": pd.Series([b"\x00\x01", None], dtype=object),
            "dec": pd.Series([decimal.Decimal("1.10"), None], dtype=object),
            "f": [float("inf"), float("nan")],
            "s": pd.Series(["", None], dtype="string"),
            "j": pd.Series([{"a": [1, 2]}, None], dtype=object),
            "day": pd.Series([dt.date(2020, 2, 29), None], dtype=object),
            "td": pd.to_timedelta([90, None], unit="s").as_unit("ms"),
        }
    )
    csv = connect(tmp_path / "c", "csv")
    df.dk.save(csv, "t")
    with open(f"{folder(csv)}/{part_files(csv)[0]}", encoding="utf-8") as f:
        text = f.read()
    assert text.splitlines()[0] == '"id","when","ny","raw","dec","f","s","j","day","td"'
    assert text.splitlines()[1] == (
        '1,"2021-03-14 01:59:59","2020-01-01 05:00:00.000000Z","AAE=",1.10,inf,"","{""a"": [1, 2]}",2020-02-29,"90000"'
    )
    assert text.splitlines()[2] == '2,,"2020-07-01 04:00:00.000000Z",,,,,,,'  # NaN is a missing float
    back = pd.read_csv(io.StringIO(text))  # other tools read it
    assert back["id"].tolist() == [1, 2] and back["dec"].iloc[0] == 1.1

    jsonl = connect(tmp_path / "j", "jsonl")
    df.dk.save(jsonl, "t")
    with open(f"{folder(jsonl)}/{part_files(jsonl)[0]}", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]  # strict JSON, one object per line
    assert rows[0] == {
        "id": 1,
        "when": "2021-03-14 01:59:59",
        "ny": "2020-01-01 05:00:00.000000Z",
        "raw": "AAE=",
        "dec": "1.10",
        "f": "Infinity",
        "s": "",
        "j": {"a": [1, 2]},
        "day": "2020-02-29",
        "td": "90000",
    }
    assert rows[1]["s"] is None and rows[1]["f"] is None and rows[1]["j"] is None
    for store in (csv, jsonl):
        assert_frame_equal(dk.load(store, "t"), df, check_dtype=True)


# -- exact values ------------------------------------------------------------------------------------
def hard_frame() -> pd.DataFrame:
    strings = [
        "",
        None,
        "\r",
        "a\r\nb",
        "nul\x00x",
        "NA",
        "null",
        "None",
        "nan",
        " ",
        "\\N",
        '"',
        "'",
        ",;\t|",
        "😀 ünï 日本",
        "x" * 100_000,
        '{"not": "json"}',
        "=1+1",
    ]
    n = len(strings)

    def pick(values):
        return [values[i % len(values)] for i in range(n)]

    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="uint64") * (2**63 // n) + 2**63,  # beyond int64
            "s": pd.Series(strings, dtype="string"),
            "obj": pd.Series(strings, dtype=object),
            "f64": np.array(
                pick([5e-324, -0.0, 1.7976931348623157e308, -np.inf, 0.1 + 0.2, 1e22, np.nan]), dtype="float64"
            ),
            "f32": np.array(
                pick([np.finfo("float32").tiny, np.finfo("float32").max, -0.0, 1 / 3, np.nan]), dtype="float32"
            ),
            "u64": np.array(pick([0, 2**64 - 1, 2**63]), dtype="uint64"),
            "i64": np.array(pick([-(2**63), 2**63 - 1]), dtype="int64"),
            "dec": pd.Series(pick([decimal.Decimal("1" * 50 + ".5"), decimal.Decimal("-0.5"), None]), dtype=object),
            "bytes": pd.Series(pick([bytes(range(256)), b"", None, b'\n,"']), dtype=object),
            "ts_ns": pd.Series(
                pick(
                    [
                        pd.Timestamp("1677-09-21 00:12:43.145224193"),
                        pd.Timestamp("2262-04-11 23:47:16.854775807"),
                        pd.NaT,
                    ]
                )
            ).astype("datetime64[ns]"),
            "kolkata": pd.Series(
                pick([pd.Timestamp("2021-01-01 10:00", tz="Asia/Kolkata"), pd.NaT]),
                dtype="datetime64[us, Asia/Kolkata]",
            ),
            "old_ny": pd.Series(
                pick([pd.Timestamp("1850-06-01 12:00", tz="America/New_York")]), dtype="datetime64[s, America/New_York]"
            ),  # before 1883: an offset of -4:56:02
            "td": pd.Series(
                pick([pd.Timedelta(-1), pd.Timedelta(days=-3, nanoseconds=5), pd.NaT]), dtype="timedelta64[ns]"
            ),
            "cat": pd.Categorical(pick(['q"uote', "com,ma", None, "new\nline"])),
            "lst": pd.Series(pick([[1, 2], [], None, [3]]), dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
            "st": pd.Series(
                pick([{"a": 1, "b": "x"}, None]),
                dtype=pd.ArrowDtype(pa.struct([("a", pa.int64()), ("b", pa.string())])),
            ),
            "dic": pd.Series(pick(["lo", "hi", None]), dtype=pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string()))),
            "json": pd.Series(pick([{"k": [1.5, None, "x"]}, "just a string", 7, None]), dtype=object),
            'odd, "name"\n': pick([1, 2]),
        }
    )


def test_hard_values_round_trip_exactly(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    df = hard_frame()
    res = df.dk.save(store, "t")
    assert res.ok, res.failures
    out = dk.load(store, "t")
    assert_frame_equal(out, df, check_dtype=True)
    for col in ("f64", "f32"):  # the sign of zero too, which assert_frame_equal does not see
        assert (np.signbit(out[col].to_numpy()) == np.signbit(df[col].to_numpy())).all()
    assert out["s"].iloc[0] == "" and out["s"].isna().iloc[1]


def test_values_a_format_cannot_hold_are_convert_failures(tmp_path, fmt):
    far = np.array(["2020-01-01", "10000-01-01", "2021-01-01", "-20000-01-01"], dtype="datetime64[s]")
    if fmt == "parquet":  # Parquet keeps seconds as milliseconds: 2**62 s does not fit
        far = np.array([0, 2**62, 1, -(2**62)], dtype="datetime64[s]")
    df = pd.DataFrame({"id": [1, 2, 3, 4], "when": pd.Series(far)})
    store = connect(tmp_path, fmt)
    res = df.dk.save(store, "t")
    assert res.failures["row"].tolist() == [1, 3]
    assert set(res.failures["stage"]) == {"convert"} and set(res.failures["error"]) == {"OutOfRange"}
    assert "'when'" in res.failures["message"].iloc[0] and fmt in res.failures["message"].iloc[0].lower()
    assert_frame_equal(dk.load(store, "t"), df.iloc[[0, 2]].reset_index(drop=True))


# -- atomic rewrites ---------------------------------------------------------------------------------
_WRITER = textwrap.dedent("""
    import sys
    import numpy as np, pandas as pd
    import dataknobs_pd as dk
    url, op, n, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"id": np.arange(n, dtype="int64"), "v": rng.normal(size=n)})
    if op == "save":
        df["s"] = pd.Series(rng.choice(["a", "bb", "ccc"], n), dtype="string")
        df.dk.save(url, "t", if_exists="replace", chunksize=chunk, progress=False)
    else:
        df.dk.update_batch(url, "t", chunksize=chunk, progress=False)
    print("committed", flush=True)
""")


def _kill_mid_write(store, op: str, n: int, chunk: int, parts_before_kill: int = 2) -> subprocess.Popen:
    """Run `op` of a large frame in another process and kill -9 it once it has written some new parts."""
    before = set(part_files(store))
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, store.url, op, str(n), str(chunk)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while len(set(part_files(store)) - before) < parts_before_kill:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the writer wrote no parts"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert b"committed" not in proc.stdout.read()
    return proc


@pytest.mark.parametrize(
    "fmt, n, chunk", [("parquet", 1_500_000, 50_000), ("csv", 600_000, 40_000), ("jsonl", 300_000, 20_000)]
)
def test_kill_9_in_the_middle_of_a_large_save_leaves_the_old_table_whole(tmp_path, fmt, n, chunk):
    store = connect(tmp_path, fmt)
    old = dtype_matrix(n=50)
    old.dk.save(store, "t")
    before = manifest(store)
    _kill_mid_write(store, "save", n=n, chunk=chunk)  # killed after 2 of its 15+ parts
    assert manifest(store) == before  # the table is the old version ...
    assert_frame_equal(dk.load(store, "t"), old, check_dtype=True)  # ... whole
    orphans = set(part_files(store)) - set(listed(store))
    assert orphans  # the killed writer's parts: written, never listed
    numbered(10).dk.save(store, "t", if_exists="replace")  # the next replace sweeps them
    assert part_files(store) == listed(store) and len(listed(store)) == 1
    assert not [n for n in os.listdir(folder(store)) if ".tmp-" in n]


def test_kill_9_in_the_middle_of_an_update_batch_leaves_the_old_table_whole(tmp_path):
    store = connect(tmp_path, "parquet")
    old = numbered(1_000_000)
    old.dk.save(store, "t", chunksize=50_000)  # 20 parts, each rewritten by one chunk of the update
    _kill_mid_write(store, "update", n=1_000_000, chunk=50_000, parts_before_kill=1)
    assert_frame_equal(dk.load(store, "t"), old)


# -- rewriting only what must change -------------------------------------------------------------------
def test_writes_rewrite_only_the_parts_they_touch(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    numbered(30).dk.save(store, "t", chunksize=10)  # parts: ids 0-9, 10-19, 20-29
    p0, p1, p2 = listed(store)
    stamp = {p: os.stat(f"{folder(store)}/{p}").st_mtime_ns for p in (p0, p1, p2)}

    pd.DataFrame({"id": [12, 15], "v": [-1.0, -2.0]}).dk.update_batch(store, "t")
    now = listed(store)
    assert now[0] == p0 and now[2] == p2 and now[1] not in (p0, p1, p2)  # only the middle part is new
    assert all(os.stat(f"{folder(store)}/{p}").st_mtime_ns == stamp[p] for p in (p0, p2))

    numbered(5, start=100).dk.save(store, "t", if_exists="append")  # new keys: one new part, none rewritten
    appended = listed(store)
    assert appended[:3] == now and len(appended) == 4

    pd.DataFrame({"id": [25]}).dk.delete(store, "t")
    after = listed(store)
    assert after[:2] == appended[:2] and after[3] == appended[3] and after[2] not in appended
    pd.DataFrame({"id": list(range(10))}).dk.delete(store, "t")  # a part left empty is dropped
    assert len(listed(store)) == 3 and p0 not in listed(store)
    assert part_files(store) == sorted(listed(store))  # the replaced files are gone

    expected = numbered(30).set_index("id")
    expected.loc[[12, 15], "v"] = [-1.0, -2.0]
    expected = pd.concat([expected.drop(index=[25, *range(10)]), numbered(5, start=100).set_index("id")])
    assert_frame_equal(dk.load(store, "t"), expected.reset_index())


def test_overlapping_parts_come_back_in_key_order(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    rng = np.random.default_rng(3)
    ids = rng.permutation(2000)
    for lo in range(0, 2000, 500):  # four appends of random keys: the parts' key ranges overlap
        numbered(500).assign(id=ids[lo : lo + 500]).dk.save(store, "t", if_exists="append")
    full = dk.load(store, "t")
    assert full["id"].tolist() == list(range(2000))
    chunks = list(dk.load(store, "t", chunksize=333))
    assert [len(c) for c in chunks] == [333] * 6 + [2]
    assert pd.concat(chunks)["id"].tolist() == list(range(2000))
    some = dk.load(store, "t", where=[("id", ">=", 1500)], limit=7)
    assert some["id"].tolist() == list(range(1500, 1507))


@pytest.mark.parametrize("shuffled", [False, True])
def test_frames_in_key_order_or_not_load_in_key_order_merging_only_overlapping_parts(
    tmp_path, fmt, shuffled, monkeypatch
):
    """Fast paths: a frame already in key order is not sorted, and parts whose key ranges do not overlap are
    read one after the other, not merged; a frame out of order is sorted per part and its parts merged."""
    from dataknobs_pd.backends import keyed
    from dataknobs_pd.backends.files import parts, reading

    sorts, merges = [], []
    sort_indices, merge = keyed.pc.sort_indices, parts.merge
    monkeypatch.setattr(keyed.pc, "sort_indices", lambda *a, **k: sorts.append(1) or sort_indices(*a, **k))
    monkeypatch.setattr(reading.parts_, "merge", lambda *a, **k: merges.append(1) or merge(*a, **k))
    df = numbered(1000).assign(v=lambda d: d["id"] * 0.5, s=lambda d: "k" + d["id"].astype(str))
    if shuffled:
        df = df.sample(frac=1, random_state=7).reset_index(drop=True)
    store = connect(tmp_path, fmt)
    df.dk.save(store, "t", chunksize=300)  # four parts
    assert len(part_files(store)) == 4
    expected = df.sort_values("id", ignore_index=True)
    for out in (dk.load(store, "t"), pd.concat(dk.load(store, "t", chunksize=128), ignore_index=True)):
        assert_frame_equal(out, expected)
    assert bool(sorts) == shuffled and bool(merges) == shuffled
    # a later append of keys past the last part's: still no merge; one inside the range: a merge
    sorts.clear(), merges.clear()
    numbered(10, start=5000).dk.save(store, "t", if_exists="append")
    assert dk.load(store, "t")["id"].tolist() == [*range(1000), *range(5000, 5010)]
    assert bool(merges) == shuffled
    numbered(3, start=2000).assign(id=[10_000, -1, 2000]).dk.save(store, "t", if_exists="append")
    ids = dk.load(store, "t")["id"].tolist()
    assert ids == [-1, *range(1000), 2000, *range(5000, 5010), 10_000] and merges


def test_many_small_writes_are_compacted(tmp_path, monkeypatch):
    from dataknobs_pd.backends.files import writing

    monkeypatch.setattr(writing, "_MAX_PARTS", 6)
    rng = np.random.default_rng(5)
    keyed, plain = connect(tmp_path / "k", "parquet"), connect(tmp_path / "p", "jsonl")
    ids = rng.permutation(200)
    for i in range(20):  # twenty appends of ten rows: keys all over the range; and rows without a key
        numbered(10).assign(id=ids[10 * i : 10 * i + 10]).dk.save(keyed, "t", if_exists="append")
        pd.DataFrame({"n": np.arange(10 * i, 10 * i + 10)}).dk.save(plain, "t", if_exists="append")
        assert len(listed(keyed)) <= 6 and len(listed(plain)) <= 6
    assert dk.load(keyed, "t")["id"].tolist() == list(range(200))
    assert dk.load(plain, "t")["n"].tolist() == list(range(200))  # insertion order kept
    assert part_files(keyed) == sorted(listed(keyed)) and part_files(plain) == sorted(listed(plain))


# -- transactions --------------------------------------------------------------------------------------
def test_a_failed_all_or_nothing_call_leaves_no_file_behind(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    numbered(10).dk.save(store, "t")
    files, before = sorted(os.listdir(folder(store))), manifest(store)
    with pytest.raises(dk.BatchError):
        numbered(20, start=5).dk.save(store, "t", if_exists="append", errors="raise", chunksize=4)
    with pytest.raises(dk.BatchError):
        pd.DataFrame({"id": [1, 1], "v": [0.0, 0.0]}).dk.save(store, "t", if_exists="replace", errors="raise")
    assert sorted(os.listdir(folder(store))) == files and manifest(store) == before
    assert_frame_equal(dk.load(store, "t"), numbered(10))


def test_a_savepoint_that_raises_leaves_no_trace(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    numbered(3).dk.save(store, "t")
    b, schema = store.backend, store.schema("t")
    rows = pa.table({"id": pa.array([7, 8], pa.int64()), "v": pa.array([7.0, 8.0])})
    with b.transaction():
        with pytest.raises(RuntimeError), b.savepoint():
            assert b.write("t", rows, schema, "insert") is None  # no key existed
            b.delete("t", pa.table({"id": pa.array([0], pa.int64())}), schema)
            raise RuntimeError("undo")
        assert b.write("t", rows.slice(0, 1), schema, "insert") is None
    assert dk.load(store, "t")["id"].tolist() == [0, 1, 2, 7]
    assert part_files(store) == sorted(listed(store))


def test_readers_see_nothing_until_the_transaction_commits(tmp_path):
    store = connect(tmp_path, "parquet")
    numbered(3).dk.save(store, "t")
    b, schema = store.backend, store.schema("t")
    seen = {}
    with b.transaction():
        b.write("t", pa.table({"id": pa.array([9], pa.int64()), "v": pa.array([9.0])}), schema, "insert")
        reader = threading.Thread(target=lambda: seen.setdefault("ids", dk.load(store, "t")["id"].tolist()))
        reader.start()
        reader.join()
    assert seen["ids"] == [0, 1, 2]
    assert dk.load(store, "t")["id"].tolist() == [0, 1, 2, 9]


def test_a_writer_in_another_process_is_detected_not_overwritten(tmp_path):
    a = connect(tmp_path, "parquet")
    b = connect(tmp_path, "parquet", fsync=False)  # other options: another backend instance, like another process
    numbered(3).dk.save(a, "t")
    schema = a.schema("t")
    with pytest.raises(StorageError, match="changed by another writer"), a.backend.transaction():
        a.backend.write("t", pa.table({"id": pa.array([5], pa.int64()), "v": pa.array([5.0])}), schema, "insert")
        numbered(1, start=100).dk.save(b, "t", if_exists="append")
    assert dk.load(a, "t")["id"].tolist() == [0, 1, 2, 100]
    assert part_files(a) == sorted(listed(a))


# -- commits: a new manifest per version, written put-if-absent; retired parts kept for earlier readers ---
def test_a_manifest_is_written_once_and_never_overwritten(tmp_path):
    store = connect(tmp_path, "parquet")
    s = store.backend.storage
    path = f"{tmp_path}/m.json"
    assert s.put_new(path, b"first") is True
    assert s.put_new(path, b"second") is False
    with open(path, "rb") as f:
        assert f.read() == b"first"
    assert os.listdir(tmp_path) == ["m.json"]  # no temporary file left


def test_without_a_lock_file_one_of_two_commits_of_a_version_wins(tmp_path, monkeypatch):
    from dataknobs_pd.backends.files.storage import Storage

    monkeypatch.setattr(Storage, "lock", lambda self, table, timeout: None)  # as on Windows, or two hosts
    stores = [connect(tmp_path, "parquet", lock_timeout=600 + i) for i in range(3)]  # three backends
    numbered(0).dk.save(stores[0], "t")
    schema = stores[0].schema("t")
    both = threading.Barrier(3)
    outcome = {}

    def commit(i):
        b = stores[i].backend
        try:
            with b.transaction():  # each has read version 1 and written its part before any commits
                b.write("t", pa.table({"id": pa.array([i], pa.int64()), "v": pa.array([float(i)])}), schema, "insert")
                both.wait()
            outcome[i] = "committed"
        except dk.ConcurrentWriteError:
            outcome[i] = "lost"

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcome.values()) == ["committed", "lost", "lost"]
    winner = next(i for i, o in outcome.items() if o == "committed")
    assert dk.load(stores[0], "t")["id"].tolist() == [winner]
    assert part_files(stores[0]) == sorted(listed(stores[0]))  # the losers' parts are gone


def test_plain_read_parquet_sees_the_table_when_no_write_is_in_progress(tmp_path):
    store = connect(tmp_path, "parquet")
    numbered(30).dk.save(store, "t", chunksize=10)
    pd.DataFrame({"id": [12, 15], "v": [-1.0, -2.0]}).dk.update_batch(store, "t")
    numbered(20, start=25).dk.save(store, "t", if_exists="upsert")
    pd.DataFrame({"id": [0, 26]}).dk.delete(store, "t")
    store.backend.vacuum("t")
    back = pd.read_parquet(folder(store)).sort_values("id", ignore_index=True)
    assert_frame_equal(back, dk.load(store, "t"))


def test_retired_parts_stay_for_the_retention_then_go(tmp_path):
    store = connect(tmp_path, "parquet", retention=3600)
    numbered(30).dk.save(store, "t", chunksize=10)
    p1 = listed(store)[1]
    pd.DataFrame({"id": [12], "v": [-1.0]}).dk.update_batch(store, "t")
    assert [r["file"] for r in manifest(store)["retired"]] == [p1]  # replaced, kept for earlier readers
    assert p1 in part_files(store) and len(manifests(store)) == 2  # and version 1 too
    assert store.backend.vacuum("t") == []  # not yet an hour old
    assert sorted(store.backend.vacuum("t", retention=0)) == sorted([p1, f"_dk_parquet/{1:020d}.json"])
    assert part_files(store) == sorted(listed(store)) and len(manifests(store)) == 1
    expected = numbered(30)
    expected.loc[12, "v"] = -1.0
    assert_frame_equal(dk.load(store, "t"), expected)


def test_vacuum_removes_what_a_crashed_writer_left(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    numbered(5).dk.save(store, "t")
    stray = f"part-{'0' * 20}.{fmt}"
    with open(f"{folder(store)}/{stray}", "w") as f:  # a part written by a writer killed before its commit
        f.write("x")
    assert store.backend.vacuum("t") == [stray]  # locally the table's lock keeps running writers out
    assert part_files(store) == sorted(listed(store))
    assert_frame_equal(dk.load(store, "t"), numbered(5))


def test_a_table_of_an_earlier_release_is_read_and_moved_to_numbered_manifests(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    numbered(10).dk.save(store, "t", chunksize=5)
    old = {k: v for k, v in manifest(store).items() if k not in ("committed", "retired")}
    old.update(dataknobs_pd=1, version=7)
    shutil.rmtree(f"{folder(store)}/_dk_{fmt}")  # as 1.0.0rc1 left it: one manifest, _dk_<format>.json
    with open(f"{folder(store)}/_dk_{fmt}.json", "w") as f:
        json.dump(old, f)
    earlier = connect(tmp_path, fmt, fsync=False)  # a store that has not seen the table yet
    assert earlier.tables() == ["t"]
    assert_frame_equal(dk.load(earlier, "t"), numbered(10))
    numbered(3, start=10).dk.save(earlier, "t", if_exists="append")
    assert not os.path.exists(f"{folder(store)}/_dk_{fmt}.json")  # moved on to the numbered manifests
    assert [os.path.basename(p) for p in manifests(store)] == [f"{8:020d}.json"]
    assert_frame_equal(dk.load(store, "t"), pd.concat([numbered(10), numbered(3, start=10)], ignore_index=True))


# -- reading: pushdown and streaming -------------------------------------------------------------------
class _Counted(io.RawIOBase):
    def __init__(self, f, stats):
        self.f, self.stats = f, stats

    def readable(self):
        return True

    def seekable(self):
        return True

    def read(self, n=-1):
        b = self.f.read(n)
        self.stats["bytes"] += len(b)
        return b

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def seek(self, pos, whence=0):
        return self.f.seek(pos, whence)

    def tell(self):
        return self.f.tell()

    def close(self):
        self.f.close()
        super().close()


class CountingFS(LocalFileSystem):
    """The local disk under another protocol, counting the files opened for reading and the bytes read."""

    protocol = ("countfile",)
    stats: ClassVar[dict] = {"bytes": 0, "opened": 0}

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        return super()._strip_protocol(path.removeprefix("countfile://"))

    def _open(self, path, mode="rb", **kwargs):
        if mode == "rb" and "/part-" in path:  # the data, not the manifest
            self.stats["opened"] += 1
            return _Counted(open(self._strip_protocol(path), "rb"), self.stats)
        return super()._open(path, mode, **kwargs)


@pytest.fixture
def counting(tmp_path):
    fsspec.register_implementation("countfile", CountingFS, clobber=True)

    def reset():
        CountingFS.stats.update(bytes=0, opened=0)
        return CountingFS.stats

    yield (lambda fmt, **o: dk.connect(f"{fmt}://countfile://{tmp_path}/store", **o)), reset


def test_where_is_pushed_down_to_parts_and_row_groups(counting):
    open_store, reset = counting
    store = open_store("parquet", row_group_rows=5_000)
    n = 200_000
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "t": pd.date_range("2020-01-01", periods=n, freq="min"),
            "x": np.random.default_rng(0).normal(size=n),
        }
    )
    df.dk.save(store, "t", chunksize=50_000)  # 4 parts of 10 row groups
    stats = reset()
    assert len(dk.load(store, "t")) == n
    full = stats["bytes"]
    assert stats["opened"] == 4

    stats = reset()
    out = dk.load(store, "t", where=[("id", "in", [123_456, 123_457])])
    assert out["id"].tolist() == [123_456, 123_457]
    assert stats["opened"] == 1  # the manifest's key ranges rule out three parts
    assert stats["bytes"] < full / 15  # and the statistics all row groups but one of the fourth

    stats = reset()
    cut = pd.Timestamp("2020-05-01")
    out = dk.load(store, "t", where=[("t", ">=", cut)], columns=["x"])
    assert_frame_equal(out, df.loc[df["t"] >= cut, ["x"]].reset_index(drop=True))
    assert stats["bytes"] < full / 4  # the row groups before `cut` are skipped


def test_chunked_reads_stream_without_reading_the_whole_table(counting):
    open_store, reset = counting
    store = open_store("parquet", row_group_rows=10_000)
    n = 400_000  # parts of ~1 MB: reading a footer costs 64 KB, whatever the file's size
    pd.DataFrame({"id": np.arange(n), "x": np.arange(n) * 0.5}).dk.save(store, "t", chunksize=100_000)
    rng = np.random.default_rng(1)
    pd.DataFrame({"id": rng.permutation(np.arange(n, 2 * n)), "x": rng.normal(size=n)}).dk.save(
        store, "u", chunksize=100_000
    )
    for table in ("t", "u"):  # sorted, disjoint parts; and overlapping ones that are merged
        stats = reset()
        full = sum(len(c) for c in dk.load(store, table, chunksize=n))
        total = stats["bytes"]
        stats = reset()
        frames = dk.load(store, table, chunksize=1_000)
        first = next(frames)
        assert len(first) == 1_000 and first["id"].is_monotonic_increasing
        assert stats["bytes"] < total / 4, (table, stats["bytes"], total)
        frames.close()
        assert full == n


# -- other file systems, names, errors -------------------------------------------------------------------
def test_any_fsspec_file_system(fmt):
    url = f"{fmt}://memory://dk-{uuid.uuid4().hex}"
    store = dk.connect(url)
    df = dtype_matrix(n=20)
    df.dk.save(store, "m", chunksize=7)
    assert df.iloc[:5].assign(i8=np.int8(1)).dk.update_batch(store, "m").ok
    pd.DataFrame({"id": df["id"].iloc[-3:]}).dk.delete(store, "m")
    expected = df.iloc[:-3].copy()
    expected.loc[:4, "i8"] = np.int8(1)
    assert_frame_equal(dk.load(store, "m"), expected, check_dtype=True)
    assert store.tables() == ["m"]
    store.drop("m")
    assert store.tables() == [] and not [
        p for p in fsspec.filesystem("memory").find(url.split("://", 1)[1]) if "part-" in p
    ]


NAMES = ["../escape", "a/b", "..", ".", ".hidden", "sp ace", "ünï", "semi;colon", "per%cent", "back\\slash", "UPPER"]


def test_odd_table_names_stay_inside_the_folder(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    for i, name in enumerate(NAMES):
        numbered(2, start=i).dk.save(store, name)
    assert store.tables() == sorted(NAMES)
    for i, name in enumerate(NAMES):
        assert dk.load(store, name)["id"].tolist() == [i, i + 1]
    assert os.listdir(tmp_path) == ["store"]  # nothing outside the store's folder
    folders = sorted(os.listdir(f"{tmp_path}/store"))
    assert all(os.path.isdir(f"{tmp_path}/store/{n}") for n in folders) and "_dk_locks" in folders
    store.drop("../escape")
    # the table and its batch log go
    assert "../escape" not in store.tables() and len(os.listdir(f"{tmp_path}/store")) == len(folders) - 2


def test_a_too_long_table_name_is_refused_before_writing(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    with pytest.raises(dk.DataKnobsError, match="too long"):
        numbered(2).dk.save(store, "é" * 150)
    assert not os.path.exists(f"{tmp_path}/store")


def test_drop_and_replace_remove_the_old_files(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    numbered(30).dk.save(store, "t", chunksize=10)
    old = set(listed(store))
    numbered(5).dk.save(store, "t", if_exists="replace")
    assert not old & set(os.listdir(folder(store))) and len(listed(store)) == 1
    store.drop("t")
    assert not os.path.exists(folder(store)) and store.tables() == []


def test_a_table_of_another_format_is_not_touched(tmp_path):
    pq_store, csv_store = connect(tmp_path, "parquet"), connect(tmp_path, "csv")
    numbered(3).dk.save(pq_store, "t")
    assert csv_store.tables() == []
    with pytest.raises(StorageError, match="stored as parquet"):
        numbered(3).dk.save(csv_store, "t")
    assert_frame_equal(dk.load(pq_store, "t"), numbered(3))


def test_errors_name_the_option_or_the_path(tmp_path):
    with pytest.raises(dk.DataKnobsError, match="unknown option.*'storage_option'"):
        dk.connect(f"parquet://{tmp_path}/s", storage_option={})
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StorageError, match="is a file, not a folder"):
        dk.connect(f"csv://{tmp_path}/afile")
    with pytest.raises(dk.DataKnobsError, match="names no folder"):
        dk.connect("jsonl://")
    missing = next(p for p, mod in [("gcs", "gcsfs"), ("abfs", "adlfs"), ("sftp", "paramiko")] if not _importable(mod))
    with pytest.raises(dk.BackendUnavailableError, match=f"{missing}://"):
        dk.connect(f"parquet://{missing}://bucket/x")


def test_s3_without_s3fs_names_the_extra(monkeypatch):
    from fsspec.registry import _registry

    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if s3fs were not installed: importing it fails
    monkeypatch.delitem(_registry, "s3", raising=False)  # and fsspec has not imported it yet
    with pytest.raises(dk.BackendUnavailableError, match=r"pip install 'dataknobs-pd\[s3\]'"):
        dk.connect(f"parquet://s3://bucket/{uuid.uuid4().hex}")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# -- categories crossing as dictionaries ---------------------------------------------------------------------
def category_frame(n: int = 12) -> pd.DataFrame:
    """Category columns of text and of ints: ordered or not, in no sorted order, with unused ones, and NaN."""
    s = np.array(["b", None, "é", "b", "c,", None], dtype=object)
    i = np.array([30, 10, np.nan, 30, 10, 10])
    return pd.DataFrame(
        {
            "row": np.arange(n),
            "s": pd.Categorical(np.resize(s, n), categories=["é", "c,", "b", "a"], ordered=True),
            "u": pd.Categorical(np.resize(s, n)[::-1], categories=["z", "b", "é", "c,"]),
            "i": pd.Categorical(np.resize(i, n), categories=[30, 20, 10]),
            "x": np.arange(n) * 0.5,
        }
    )


def save_as_engine(store, df: pd.DataFrame, table: str = "t", mode: str = "insert", key=None) -> None:
    """Save `df` (the engine hands a store with `accepts_dictionary` its categories as dictionaries)."""
    res = df.dk.save(store, table, key=key, if_exists={"insert": "append", "upsert": "upsert"}[mode])
    assert res.failed == 0, res.failures


def test_only_file_stores_take_categories_as_dictionaries(tmp_path):
    assert dk.connect(f"parquet://{tmp_path}/p").backend.accepts_dictionary
    assert not dk.connect("memory://dict").backend.accepts_dictionary
    assert not dk.connect(f"sqlite:///{tmp_path}/s.db").backend.accepts_dictionary


def test_categories_written_as_dictionaries_round_trip_exactly(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    df = category_frame()
    save_as_engine(store, df)
    assert_frame_equal(dk.load(store, "t"), df, check_categorical=True)
    df.dk.save(store, "t", if_exists="append")  # a part written without dictionaries beside it
    both = pd.concat([df, df], ignore_index=True)
    assert_frame_equal(dk.load(store, "t"), both, check_categorical=True)
    save_as_engine(store, df.iloc[:5])
    assert_frame_equal(dk.load(store, "t"), pd.concat([both, df.iloc[:5]], ignore_index=True))


def test_parquet_parts_hold_categories_as_pyarrow_writes_them(tmp_path):
    store = connect(tmp_path, "parquet")
    df = category_frame()
    save_as_engine(store, df)
    path = f"{folder(store)}/{part_files(store)[0]}"
    pq.write_table(pa.Table.from_pandas(df), f"{tmp_path}/raw.parquet")  # what a pyarrow user writes
    raw = pq.read_schema(f"{tmp_path}/raw.parquet")
    assert all(pq.read_schema(path).field(c).type == raw.field(c).type for c in ("s", "u", "i"))
    assert pa.types.is_dictionary(raw.field("s").type)
    plain = pq.read_table(path).to_pandas()  # another reader sees a category
    assert isinstance(plain["s"].dtype, pd.CategoricalDtype)
    assert plain["s"].astype(object).equals(df["s"].astype(object))
    assert plain["i"].tolist()[:2] == [30, 10]
    assert TableSchema.from_json(pq.read_schema(path).metadata[b"dataknobs_pd.schema"]) == store.schema("t")
    assert store.schema("t") == dk.TypeMapper().schema(df)  # the dk schema does not change


@pytest.mark.parametrize("row_group_rows", [None, 4])
def test_dictionary_categories_load_in_chunks_with_where_and_order(tmp_path, fmt, row_group_rows):
    # row groups are Parquet's: the text formats run the same checks without the option
    store = connect(tmp_path, fmt, **({"row_group_rows": row_group_rows} if fmt == "parquet" else {}))
    df = category_frame(40)
    save_as_engine(store, df.iloc[:25])
    save_as_engine(store, df.iloc[25:])
    chunks = list(dk.load(store, "t", chunksize=7))
    assert [len(c) for c in chunks] == [7] * 5 + [5]
    assert_frame_equal(pd.concat(chunks), df)
    for where in ([("s", "==", "b")], [("s", "in", ["é", "c,"])], [("i", ">=", 20)], [("x", "<", 4.0)]):
        col, op, value = where[0]
        want = df[df[col].isin(value if op == "in" else [value])] if op in ("==", "in") else df
        if op == ">=":
            want = df[df[col].astype(float) >= value]
        elif op == "<":
            want = df[df[col] < value]
        got = dk.load(store, "t", where=where)
        assert_frame_equal(got, want.reset_index(drop=True), check_categorical=True)
        parts = dk.load(store, "t", where=where, chunksize=3, columns=["u", "s"])
        assert_frame_equal(pd.concat(parts), want[["u", "s"]].reset_index(drop=True))
    ordered = dk.load(store, "t", order_by=["u", "row"])
    assert_frame_equal(
        ordered,
        df.sort_values(["u", "row"], key=lambda c: c.astype(object) if c.name == "u" else c).reset_index(drop=True),
    )


def test_updates_and_key_reads_of_a_table_with_dictionary_parts(tmp_path, fmt):
    store = connect(tmp_path, fmt)
    df = category_frame()
    save_as_engine(store, df, key=["row"])
    change = df.iloc[[1, 3]].assign(s=pd.Categorical(["a", "é"], categories=df["s"].cat.categories, ordered=True))
    save_as_engine(store, change, mode="upsert", key=["row"])
    want = df.copy()
    want.loc[[1, 3], "s"] = ["a", "é"]
    assert_frame_equal(dk.load(store, "t"), want)
    res = change.assign(x=-1.0).dk.update_batch(store, "t", key="row", track_changes=True)
    assert set(res.changes["action"]) == {"update"}
