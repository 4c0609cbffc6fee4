"""What is particular to delta:// (the contract suite runs in tests/contract/test_delta.py):

- plain Delta readers (deltalake, DuckDB's delta_scan) see natural types; what Delta cannot hold fails its row;
- each call is ONE Delta commit; a CHECK constraint's violations are named row by row before it;
- history and time travel; the version a call created;
- processes upserting overlapping keys at once (locally and on S3 through moto), a reader during commits,
  a writer killed mid-call, commits that never overwrite a log entry on S3.

The multi-process tests fork their workers (_write, _read) from a forkserver that imported this module once.
"""

from __future__ import annotations

import contextlib
import decimal
import json
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd.testing import dtype_matrix
from dataknobs_pd.testing.writes import frame
from dataknobs_pd.types import TypeMapper
from tests import s3_server

DUCKDB = "1.5.5"  # DuckDB's delta extension is built for one DuckDB version; this pair loads offline from PyPI


# -- helpers --------------------------------------------------------------------------------------
def table_uri(store, table: str) -> str:
    return store.backend.loc.uri(table)


def plain(store, table: str, version: int | None = None) -> DeltaTable:
    """The table as a plain deltalake reader opens it."""
    return DeltaTable(table_uri(store, table), version=version, storage_options=store.backend.loc.delta_options or None)


def versions(store, table: str) -> int:
    return plain(store, table).version()


def load_at(store, table: str, version=None, as_of=None) -> pd.DataFrame:
    """What dk.load(store, table, version=..., as_of=...) returns once api.load passes them on."""
    b = store.backend
    schema = b.schema_at(table, version=version, as_of=as_of)
    batches = b.read_version(table, schema, schema.names, [], [], None, 1_000_000, version=version, as_of=as_of)
    return TypeMapper().to_pandas(pa.concat_tables(list(batches)), schema)


@pytest.fixture
def store(tmp_path):
    s = dk.connect(f"delta://{tmp_path}/lake")
    yield s
    s.close()


@pytest.fixture(scope="module")
def s3():
    return s3_server.server()


@pytest.fixture
def s3_store(s3):
    s = dk.connect(f"delta://s3://{s3_server.BUCKET}/{uuid.uuid4().hex}", storage_options=s3.options())
    yield s
    s.close()


# -- natural types for plain readers ------------------------------------------------------------------
KINDS = {
    "id": "int64",
    "i8": "int8",
    "i16": "int16",
    "i32": "int32",
    "i64": "int64",
    "u8": "int16",
    "u16": "int32",
    "u32": "int64",  # widened: every value fits
    "f32": "float",
    "f64": "double",
    "Int64": "int64",
    "boolean": "bool",
    "bool": "bool",
    "str": "string",
    "string": "string",
    "obj_str": "string",
    "obj_str_nan": "string",
    "cat_str": "string",
    "cat_ord": "string",
    "cat_num": "int64",
    "dt_s": "timestamp[us]",
    "dt_ms": "timestamp[us]",
    "dt_us": "timestamp[us]",
    "dt_ns": "timestamp[us]",
    "dt_utc": "timestamp[us, tz=UTC]",
    "dt_ny": "timestamp[us, tz=UTC]",
    "td": "int64",  # seconds... in the unit of the column (here ns)
    "dec": "decimal128(38, 4)",
    "bytes": "binary",
    "date": "date32[day]",
    "json": "string",
    "pa_int": "int64",
    "pa_str": "string",
    "pa_f64": "double",
    "_dk_ns_dt_ns": "int16",
    "_dk_ns_dt_ny": "int16",  # the nanoseconds below the microsecond
}


def _kind(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    return str(t)


def test_deltalake_reads_natural_types_and_values(store):
    df = dtype_matrix()
    df.dk.save(store, "m")
    t = plain(store, "m").to_pyarrow_table().sort_by("id")
    assert {f.name: _kind(f.type) for f in t.schema} == KINDS
    assert t.column("i64").to_pylist() == df["i64"].tolist()
    assert t.column("u32").to_pylist() == df["u32"].tolist()
    assert t.column("str").to_pylist() == [None if pd.isna(v) else v for v in df["obj_str"]]
    assert t.column("cat_str").to_pylist() == [None if pd.isna(v) else v for v in df["cat_str"]]
    assert t.column("dec").to_pylist() == df["dec"].tolist()
    assert t.column("date").to_pylist() == df["date"].tolist()
    # timestamps: the same instants, to the microsecond; the ns column's rest in its hidden column
    ny = [None if pd.isna(v) else v.tz_convert("UTC").floor("us").to_pydatetime() for v in df["dt_ny"]]
    assert t.column("dt_ny").to_pylist() == ny
    assert t.column("_dk_ns_dt_ns").to_pylist() == [None if pd.isna(v) else 7 for v in df["dt_ns"]]
    assert t.column("td").to_pylist() == [None if pd.isna(v) else v.value for v in df["td"]]
    lists = pd.DataFrame(
        {
            "id": [1, 2],
            "lst": pd.Series([[1, 2], None], dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
            "st": pd.Series([{"a": 1}, None], dtype=pd.ArrowDtype(pa.struct([("a", pa.int64())]))),
        }
    )
    lists.dk.save(store, "nested")
    n = plain(store, "nested").to_pyarrow_table().sort_by("id")
    assert pa.types.is_list(n.schema.field("lst").type) and pa.types.is_struct(n.schema.field("st").type)
    assert n.column("lst").to_pylist() == [[1, 2], None] and n.column("st").to_pylist() == [{"a": 1}, None]


def test_a_delta_table_of_another_tool_loads_with_natural_dtypes(store, tmp_path):
    uri = table_uri(store, "theirs")
    data = pa.table(
        {
            "k": [3, 1, 2],
            "s": ["c", "a", None],
            "t": pa.array([1, 2, None], pa.timestamp("us")),
            "n": pa.array([7, None, 9], pa.int32()),
            "b": pa.array([True, None, False]),
        }
    )
    write_deltalake(uri, data)
    assert "theirs" in store.tables()
    out = dk.load(store, "theirs").sort_values("k", ignore_index=True)
    assert out["k"].tolist() == [1, 2, 3] and out["k"].dtype == "Int64"  # Delta's columns are nullable
    assert out["t"].dtype == "datetime64[us]"
    # a missing integer or boolean is missing, not int64's minimum or False
    assert out["n"].dtype == "Int32" and out["n"].isna().tolist() == [True, False, False]
    assert out["b"].dtype == "boolean" and out["b"].tolist()[0] is pd.NA


@pytest.fixture(scope="session")
def duckdb_delta():
    """A folder holding DuckDB and its delta extension (wheels from PyPI, kept between runs): DuckDB's
    extension is built for one DuckDB version, so it runs apart from the DuckDB of the project's venv."""
    target = Path(os.environ.get("DK_DUCKDB_DELTA", Path.home() / ".cache" / "dataknobs-pd" / f"duckdb-delta-{DUCKDB}"))
    if not (target / "duckdb_extension_delta").exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(target),
                f"duckdb=={DUCKDB}",
                f"duckdb-extension-delta=={DUCKDB}",
            ],
            check=True,
            timeout=600,
        )
    return target


DUCK_SCRIPT = """
import json, os, sys, duckdb, duckdb_extension_delta
ext = os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "v" + duckdb.__version__,
                   "delta.duckdb_extension")
con = duckdb.connect()
con.execute(f"LOAD '{ext}'")
con.execute("SET TimeZone='UTC'")
rel = f"delta_scan('{sys.argv[1]}')"
types = {name: t for name, t, *_ in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()}
shown = "id, i8, u32, str, cat_str, CAST(dt_ny AS VARCHAR), CAST(dec AS VARCHAR), CAST(date AS VARCHAR), td"
rows = con.execute(f"SELECT {shown} FROM {rel} ORDER BY id").fetchall()
print(json.dumps({"version": duckdb.__version__, "types": types, "rows": rows}, default=str))
"""


def test_duckdb_delta_scan_reads_natural_types(store, tmp_path, duckdb_delta):
    df = dtype_matrix()
    df.dk.save(store, "m")
    df.iloc[:2].assign(i8=np.int8(-1)).dk.update_batch(store, "m")  # a rewrite: files added and removed
    proc = subprocess.run(
        [sys.executable, "-c", DUCK_SCRIPT, table_uri(store, "m").removeprefix("file://")],
        env=dict(os.environ, PYTHONPATH=str(duckdb_delta)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout)
    assert seen["version"] == DUCKDB
    types = seen["types"]
    assert {types[c] for c in ("id", "i64", "u32", "cat_num", "td", "pa_int")} == {"BIGINT"}
    assert (types["i8"], types["u8"], types["u16"]) == ("TINYINT", "SMALLINT", "INTEGER")
    assert {types[c] for c in ("str", "string", "cat_str", "json", "pa_str")} == {"VARCHAR"}
    assert (types["dt_ns"], types["dt_ny"]) == ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE")
    assert (types["dec"], types["date"], types["bytes"], types["bool"]) == ("DECIMAL(38,4)", "DATE", "BLOB", "BOOLEAN")
    rows = seen["rows"]
    assert [r[0] for r in rows] == df["id"].tolist()
    assert [r[1] for r in rows] == [-1, -1] + df["i8"].iloc[2:].tolist()
    assert [r[2] for r in rows] == df["u32"].tolist() and [r[3] for r in rows] == [
        None if pd.isna(v) else v for v in df["obj_str"]
    ]
    assert pd.Timestamp(rows[0][5]) == df["dt_ny"].iloc[0].floor("us")
    assert rows[0][6] == "1.1000" and rows[0][7] == "2020-02-29" and rows[0][8] == df["td"].iloc[0].value


# -- exact or refused ----------------------------------------------------------------------------------
def test_values_delta_cannot_hold_fail_their_row_at_convert(store):
    df = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "u64": np.array([1, 2**63, 2**64 - 1, 5], dtype="uint64"),
            "t": np.array(["2020-01-01", "2020-01-02", "2020-01-03", "12000-01-01"], dtype="datetime64[s]"),
        }
    )
    res = df.dk.save(store, "t")
    assert res.failures["row"].tolist() == [1, 2, 3]
    assert set(res.failures["stage"]) == {"convert"} and set(res.failures["error"]) == {"OutOfRange"}
    assert "'u64'" in res.failures["message"].iloc[0] and "64-bit" in res.failures["message"].iloc[0]
    assert "'t'" in res.failures["message"].iloc[2] and "9999" in res.failures["message"].iloc[2]
    out = dk.load(store, "t")
    assert_frame_equal(out, df.iloc[:1].reset_index(drop=True), check_dtype=True)
    wide = pd.DataFrame({"id": [1, 2], "d": [decimal.Decimal("1.5"), decimal.Decimal("1" * 45 + ".5")]})
    res = wide.dk.save(store, "wide")
    assert res.failures["row"].tolist() == [1] and res.failures["error"].tolist() == ["OutOfRange"]
    assert dk.load(store, "wide")["d"].tolist() == [decimal.Decimal("1.5")]


def test_names_equal_but_for_case_are_refused_before_writing(store):
    with pytest.raises(dk.InvalidArgumentError, match="'A'.*case"):
        pd.DataFrame({"a": [1], "A": [2]}).dk.save(store, "t")
    assert store.tables() == []


def test_keyless_tables_keep_insertion_order_across_appends(store):
    pd.DataFrame({"a": [5, 3]}).dk.save(store, "t")
    for chunk in ([9, 1], [4], [8, 0, 2]):
        pd.DataFrame({"a": chunk}).dk.save(store, "t", if_exists="append")
    assert dk.load(store, "t")["a"].tolist() == [5, 3, 9, 1, 4, 8, 0, 2]
    assert len(plain(store, "t").file_uris()) == 4


# -- one commit per call; CHECK constraints -------------------------------------------------------------
def test_each_call_is_one_commit_and_a_refused_call_none(store):
    frame(range(100)).dk.save(store, "t", chunksize=7)
    assert versions(store, "t") == 0
    frame(range(50, 150), v=[1] * 100).dk.save(store, "t", if_exists="upsert", chunksize=9)
    frame(range(0, 200, 3), v=[2] * 67).dk.update_batch(store, "t", chunksize=11)
    frame(range(0, 200, 5)).dk.delete(store, "t", chunksize=13)
    frame(range(200, 210)).dk.save(store, "t", if_exists="append")
    assert versions(store, "t") == 4
    with pytest.raises(dk.BatchError):
        frame([1, 1000]).dk.save(store, "t", if_exists="append", errors="raise")  # 1 exists
    assert versions(store, "t") == 4
    ops = [h["operation"] for h in store.backend.history("t")]
    assert ops == ["insert", "delete", "update", "upsert", "create"]
    expected = set(range(150)) - set(range(0, 200, 5)) | set(range(200, 210))
    assert dk.load(store, "t")["id"].tolist() == sorted(expected)


@pytest.fixture
def checked(store):
    """Table t: ids 0..999, lo = id, hi = id + 10, with CHECK (lo <= hi) and CHECK (hi < 5000)."""
    ids = np.arange(1000)
    pd.DataFrame({"id": ids, "lo": ids, "hi": ids + 10}).dk.save(store, "t")
    plain(store, "t").alter.add_constraint({"lo_le_hi": "lo <= hi"})
    plain(store, "t").alter.add_constraint({"hi_small": "hi < 5000"})
    return store


def test_check_constraint_violations_are_isolated_and_the_rest_is_one_commit(checked):
    store = checked
    before = versions(store, "t")
    ids = np.arange(500, 1500)  # half update existing rows, half insert new ones
    up = pd.DataFrame({"id": ids, "lo": ids, "hi": ids + 20})
    bad = [3, 499, 500, 777]  # rows of `up` (two updates, two inserts)
    up.loc[[3, 500], "lo"] = 10_000  # lo > hi
    up.loc[[499, 777], "hi"] = 6_000  # hi too big
    res = up.dk.save(store, "t", if_exists="upsert")
    assert res.failures["row"].tolist() == bad
    assert set(res.failures["stage"]) == {"write"} and set(res.failures["error"]) == {"CheckConstraint"}
    assert set(res.failures["code"]) == {"DELTA_VIOLATE_CONSTRAINT_WITH_VALUES"}
    assert "lo_le_hi" in res.failures["message"].iloc[0] and "hi_small" in res.failures["message"].iloc[1]
    assert versions(store, "t") == before + 1
    out = dk.load(store, "t").set_index("id")
    assert len(out) == 1000 + 500 - 2
    assert out.loc[503, "hi"] == 513 and out.loc[999, "hi"] == 1009  # refused updates: the rows as they were
    assert 1000 not in out.index and 1277 not in out.index  # refused inserts
    assert out.loc[504, "hi"] == 524 and out.loc[1001, "hi"] == 1021


def test_check_constraint_on_a_column_the_update_leaves_alone(checked):
    store = checked
    # lo alone changes; the stored hi (id + 10) decides
    res = pd.DataFrame({"id": [1, 2, 3], "lo": [5, 50, 13]}).dk.update_batch(store, "t")
    assert res.failures["key"].tolist() == [2] and res.failures["error"].tolist() == ["CheckConstraint"]
    out = dk.load(store, "t").set_index("id")
    assert (out.loc[1, "lo"], out.loc[2, "lo"], out.loc[3, "lo"]) == (5, 2, 13)
    with pytest.raises(dk.BatchError):
        pd.DataFrame({"id": [4, 5], "lo": [0, 99]}).dk.update_batch(store, "t", errors="raise")
    assert dk.load(store, "t").set_index("id").loc[4, "lo"] == 4


def test_many_bad_rows_cost_few_checks(checked):
    store = checked
    n = 4_000  # hi < 5000 holds for all
    up = pd.DataFrame({"id": np.arange(n), "lo": np.arange(n), "hi": np.arange(n) + 1})
    bad = np.arange(0, n, 97)
    up.loc[bad, "lo"] = 10**6
    t = time.perf_counter()
    res = up.dk.save(store, "t", if_exists="upsert")
    assert res.failures["row"].tolist() == bad.tolist()
    assert time.perf_counter() - t < 20  # each row evaluated once, not once per halving
    assert versions(store, "t") == 3  # created, two constraints added, this call


# -- new columns: Delta's schema grows in the call's one commit; files written before lack them ----------------
def files_of(store, table: str) -> set[str]:
    return set(pa.table(plain(store, table).get_add_actions(flatten=True)).column("path").to_pylist())


def file_columns(store, table: str, path: str) -> list[str]:
    return pq.read_schema(f"{table_uri(store, table).removeprefix('file://')}/{path}").names


def test_new_columns_ride_in_the_calls_one_commit_with_exact_dtypes(store):
    frame(range(10)).dk.save(store, "t")
    frame(range(10, 20)).dk.save(store, "t", if_exists="append")
    untouched = files_of(store, "t")
    ns = pd.Series(
        pd.to_datetime(["2020-01-01 00:00:00.000000001", None, "2021-06-01 12:00:00.000000999"]).tz_localize(
            "Europe/Paris"
        )
    )
    new = frame([20, 21, 22]).assign(
        i=pd.array([1, None, 3], dtype="Int64"),
        b=pd.array([True, None, False], dtype="boolean"),
        s=pd.array(["x", None, "z"], dtype="string"),
        c=pd.Categorical(["p", "q", "p"]),
        ns=ns,
    )
    res = new.dk.save(store, "t", if_exists="append", new_columns="add")
    assert res.ok and list(res.added) == ["i", "b", "s", "c", "ns"] and res.version == 2
    assert versions(store, "t") == 2 and store.backend.history("t")[0]["operation"] == "insert"
    assert files_of(store, "t") > untouched  # an append: the files written before are kept as they are
    assert all("i" not in file_columns(store, "t", p) for p in untouched)
    assert {"i", "b", "s", "c", "ns", "_dk_ns_ns"} <= set(pa.schema(plain(store, "t").schema().to_arrow()).names)
    out = dk.load(store, "t")
    assert_frame_equal(out.iloc[20:].reset_index(drop=True), new.assign(c=new["c"].astype(out["c"].dtype)))
    assert out.iloc[:20][["i", "b", "s", "c", "ns"]].isna().all().all()
    assert {c: str(out[c].dtype) for c in ["i", "b", "s", "ns"]} == {
        "i": "Int64",
        "b": "boolean",
        "s": "string",
        "ns": "datetime64[ns, Europe/Paris]",
    }
    assert list(load_at(store, "t", version=1).columns) == ["id", "v"]  # earlier versions keep their schema


def test_new_columns_with_updates_are_one_merge_that_keeps_constraints_and_other_files(checked):
    store = checked
    frame(range(5000, 5010)).assign(lo=0, hi=1).drop(columns="v").dk.save(store, "t", if_exists="append")
    before, untouched = versions(store, "t"), files_of(store, "t")
    up = pd.DataFrame({"id": [1, 2, 3], "lo": [1, 99, 3], "note": pd.array(["a", "b", None], dtype="string")})
    res = up.dk.update_batch(store, "t", new_columns="add")
    assert res.failures["key"].tolist() == [2] and res.failures["error"].tolist() == ["CheckConstraint"]
    assert res.added == {"note": "string"} and versions(store, "t") == before + 1
    assert store.backend.history("t")[0]["operation"] == "update"
    assert "delta.constraints.lo_le_hi" in plain(store, "t").metadata().configuration
    kept = untouched & files_of(store, "t")  # the file of ids 5000-5009 is not rewritten, and lacks the column
    assert len(kept) == 1 and "note" not in file_columns(store, "t", kept.pop())
    out = dk.load(store, "t").set_index("id")
    assert out.loc[[1, 2, 3], "note"].tolist() == ["a", pd.NA, pd.NA] and out["note"].dtype == "string"
    assert out.loc[[1, 2, 3], "lo"].tolist() == [1, 2, 3] and out.loc[5005, "hi"] == 1 and len(out) == 1010
    with pytest.raises(dk.BatchError):
        pd.DataFrame({"id": [4, 4000], "lo": [0, 0], "x": [1.5, 2.5]}).dk.update_batch(
            store, "t", new_columns="add", errors="raise"
        )
    assert versions(store, "t") == before + 1 and "x" not in pa.schema(plain(store, "t").schema().to_arrow()).names


def test_deletes_and_upserts_beside_new_columns_in_one_transaction(store):
    from dataknobs_pd.schema import Column

    frame(range(10)).dk.save(store, "t")
    b = store.backend
    with b.transaction():
        b.add_columns("t", [Column("x", "int64", pa.int64(), True, {"name": "Int64"})])
        grown = b.schema("t")
        assert b.delete("t", pa.table({"id": pa.array([1, 2, 77], pa.int64())}), grown).tolist() == [True, True, False]
        b.write(
            "t",
            pa.table(
                {
                    "id": pa.array([3, 50], pa.int64()),
                    "v": pa.array([-3, -50], pa.int64()),
                    "x": pa.array([30, 500], pa.int64()),
                }
            ),
            grown,
            "upsert",
        )
    assert versions(store, "t") == 1
    out = dk.load(store, "t")
    assert out["id"].tolist() == [0, 3, 4, 5, 6, 7, 8, 9, 50]
    assert out["x"].tolist() == [pd.NA, 30] + [pd.NA] * 6 + [500] and out["v"].tolist()[::8] == [0, -50]


def test_the_merge_of_new_columns_matches_whole_keys_and_keeps_nested_values(store):
    ts = pd.to_datetime(["2020-01-01 00:00:00.000000001", "2020-01-01 00:00:00.000000002"]).as_unit("ns")
    lists = pd.ArrowDtype(pa.list_(pa.int64()))
    df = pd.DataFrame({"k": ["a", "b"], "t": ts, "lst": pd.Series([[1, 2], None], dtype=lists), "v": [1, 2]})
    df.dk.save(store, "n", key=["k", "t"])
    up = pd.DataFrame(
        {
            "k": ["b", "a"],
            "t": [ts[1], ts[0] + pd.Timedelta(8, "ns")],  # a key apart by 8 ns: new
            "lst": pd.Series([[9], [7]], dtype=lists),
            "v": [20, 70],
            'say "q"': ["x", "y"],
        }
    )
    assert up.dk.save(store, "n", key=["k", "t"], if_exists="upsert", new_columns="add").ok
    out = dk.load(store, "n")
    assert out["t"].tolist() == [ts[0], ts[0] + pd.Timedelta(8, "ns"), ts[1]]
    assert out["lst"].tolist()[1:] == [[7], [9]] and out["v"].tolist() == [1, 70, 20]
    assert out['say "q"'].tolist()[1:] == ["y", "x"] and pd.isna(out['say "q"'].iloc[0])


def test_stream_adding_a_column_after_earlier_frames_updated_rows(store):
    frame(range(10)).dk.save(store, "t")
    frames = [frame([1, 2], v=[-1, -2]), frame([3, 11], v=[-3, -11]).assign(x=pd.array([30, 110], dtype="Int64"))]
    res = dk.save(iter(frames), store, "t", if_exists="upsert", new_columns="add")
    assert res.ok and res.added == {"x": "Int64"} and versions(store, "t") == 1
    out = dk.load(store, "t").set_index("id")
    assert out.loc[[1, 2, 3, 11], "v"].tolist() == [-1, -2, -3, -11]
    assert out.loc[[1, 2, 3, 11], "x"].tolist() == [pd.NA, pd.NA, 30, 110]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_dry_runs_and_refused_calls_leave_no_commit_behind(where, store, s3_store, s3):
    st = store if where == "local" else s3_store
    prefix = st.url.split(f"{s3_server.BUCKET}/", 1)[-1]

    def files() -> list[str]:
        if where == "s3":
            return sorted(s3.objects(prefix))
        return (
            sorted(str(p) for p in Path(st.backend.loc.root).rglob("*")) if Path(st.backend.loc.root).exists() else []
        )

    res = frame([1, 2]).dk.save(st, "new", dry_run=True)
    assert res.committed is False and res.changes["action"].tolist() == ["insert", "insert"]
    assert st.tables() == [] and files() == []
    frame(range(3)).dk.save(st, "t")
    before = (files(), pa.schema(plain(st, "t").schema().to_arrow()), st.backend.history("t"))
    new = frame([1, 5]).assign(x=[1.5, 2.5])
    for call in (
        lambda: new.dk.save(st, "t", if_exists="upsert", new_columns="add", dry_run=True),
        lambda: new.dk.update_batch(st, "t", new_columns="add", dry_run=True),
        lambda: new.dk.update_batch(st, "t", new_columns="add", errors="raise"),
    ):
        with contextlib.suppress(dk.BatchError):
            assert call().added == {"x": "float64"}
        assert (files(), pa.schema(plain(st, "t").schema().to_arrow()), st.backend.history("t")) == before


# -- history and time travel ---------------------------------------------------------------------------
def test_history_and_time_travel(store):
    v0 = frame([1, 2, 3])
    v0.dk.save(store, "t")
    time.sleep(0.05)
    between = pd.Timestamp.now(tz="UTC")
    time.sleep(0.05)
    frame([2, 4], v=[-2, -4]).dk.save(store, "t", if_exists="upsert")
    assert store.backend.last_version("t") == 1
    frame([1]).dk.delete(store, "t")
    pd.DataFrame({"id": [7], "v": [7], "c": pd.Categorical(["x"])}).dk.save(store, "t", if_exists="replace")
    hist = pd.DataFrame(store.backend.history("t"))
    assert hist["version"].tolist() == [3, 2, 1, 0]
    assert hist["operation"].tolist() == ["replace", "delete", "upsert", "create"]
    assert hist["rows"].tolist() == [1, 1, 2, 3]
    assert (hist["inserted"].tolist(), hist["updated"].tolist(), hist["deleted"].tolist()) == (
        [1, 0, 1, 3],
        [0, 0, 1, 0],
        [0, 1, 0, 0],
    )
    assert hist["timestamp"].is_monotonic_decreasing and str(hist["timestamp"].dt.tz) == "UTC"
    assert_frame_equal(load_at(store, "t", version=0), v0)
    assert load_at(store, "t", version=1)["v"].tolist() == [10, -2, 30, -4]
    assert load_at(store, "t", version=2)["id"].tolist() == [2, 3, 4]
    assert_frame_equal(load_at(store, "t", as_of=between), v0)
    assert_frame_equal(load_at(store, "t", as_of=between.tz_convert(None)), v0)  # naive means UTC
    assert list(load_at(store, "t", version=3).columns) == ["id", "v", "c"]  # each version with its own schema
    assert_frame_equal(load_at(store, "t"), dk.load(store, "t"))
    with pytest.raises(dk.InvalidArgumentError, match="versions up to 3"):
        load_at(store, "t", version=9)
    with pytest.raises(dk.InvalidArgumentError, match="did not exist yet"):
        load_at(store, "t", as_of="2001-01-01")
    with pytest.raises(dk.InvalidArgumentError, match="version"):
        load_at(store, "t", version=-1)
    with pytest.raises(dk.TableNotFoundError):
        store.backend.history("nope")


# -- filters are pushed down to files -------------------------------------------------------------------
def test_where_skips_files_by_their_statistics(store):
    from dataknobs_pd.backends.delta.reading import Snapshot, _files, _pushdown

    for lo in range(0, 500, 100):
        frame(range(lo, lo + 100)).dk.save(store, "t", if_exists="append" if lo else "fail")
    schema = store.schema("t")
    snap = Snapshot(plain(store, "t"), store.backend.loc)
    where = [[("id", ">=", 250), ("id", "<", 320)]]
    kept = _files(snap, _pushdown(where, schema), [("id", True)], schema)
    assert len(snap.fragments()) == 5 and len(kept) == 2
    assert dk.load(store, "t", where=where)["id"].tolist() == list(range(250, 320))


# -- processes at once -----------------------------------------------------------------------------------
ROWS = 20_000
_FORKS = multiprocessing.get_context("forkserver")
# The workers are forked from one process that has imported this module (and s3fs) once: several workers each
# importing pandas, pyarrow, deltalake and s3fs took seconds on two cores; a fork takes milliseconds.
_FORKS.set_forkserver_preload([__name__, "s3fs"])


def _start(out: Path, what: str, *args) -> multiprocessing.Process:
    """A worker process running _write or _read(*args); it leaves its report in `out`."""
    proc = _FORKS.Process(target=_work, args=(str(out), what, *args), daemon=True)
    proc.start()
    return proc


def _finish(proc: multiprocessing.Process, out: Path) -> dict:
    proc.join(300)
    assert proc.exitcode == 0, f"worker exited with {proc.exitcode} (its traceback is in the captured stderr)"
    return json.loads(out.read_text())


def _go(go: Path, procs: list[multiprocessing.Process]) -> None:
    """Once every worker has opened the store and waits (it says so in a file beside `go`), let them go."""
    deadline = time.monotonic() + 120
    while len(list(go.parent.glob(f"{go.name}.*.ready"))) < len(procs):
        assert all(p.exitcode is None for p in procs), [p.exitcode for p in procs]
        assert time.monotonic() < deadline, "the workers never got ready"
        time.sleep(0.01)
    go.touch()


def _race(url: str, options: dict, go: Path, writers: int = 2) -> None:
    frame(range(ROWS // 2), v=[-1] * (ROWS // 2)).dk.save(dk.connect(url, **options), "t")
    ranges = [(i * ROWS // 2, i * ROWS // 2 + ROWS) for i in range(writers)]
    outs = [go.parent / f"writer{i}.json" for i in range(writers + 1)]
    procs = [_start(outs[i], "write", url, options, "t", lo, hi, i, str(go)) for i, (lo, hi) in enumerate(ranges)]
    reader = _start(outs[-1], "read", url, options, "t", str(go))
    _go(go, procs + [reader])
    reports = [_finish(p, out) for p, out in zip(procs, outs)]
    Path(f"{go}.stop").touch()  # the reader has read all along the writers' commits
    seen = _finish(reader, outs[-1])
    store = dk.connect(url, **options)
    out = dk.load(store, "t")
    assert out["id"].is_unique and out["id"].is_monotonic_increasing
    written = set(range(ROWS // 2))
    for (lo, hi), rep in zip(ranges, reports):
        if "error" in rep:  # a writer that lost every race says so and wrote nothing
            assert rep["error"] == "ConcurrentWriteError", rep
            continue
        assert (rep["succeeded"], rep["failed"]) == (hi - lo, 0), rep
        written |= set(range(lo, hi))
    assert any("error" not in r for r in reports), reports
    assert set(out["id"]) == written  # every row written once, nothing unreported
    winners = {i for i, r in enumerate(reports) if "error" not in r}
    for i, (lo, hi) in enumerate(ranges):  # each row holds the value of one writer that wrote it
        if i in winners:
            assert set(out.loc[out["id"].between(lo, hi - 1), "v"]) <= winners
    commits = [h for h in store.backend.history("t") if h["operation"] == "upsert"]
    assert len(commits) == len(winners)  # one commit per successful call, whatever the retries
    assert not seen["problems"], seen["problems"][:3]
    assert seen["loads"] > 0 and seen["counts"] == sorted(seen["counts"])  # versions only grow
    # whole versions only: each count is that of the first rows plus the rows of some set of writers
    possible = {
        len(set(range(ROWS // 2)).union(*(range(lo, hi) for i, (lo, hi) in enumerate(ranges) if m >> i & 1)))
        for m in range(2**writers)
    }
    assert set(seen["counts"]) <= possible, (set(seen["counts"]), possible)
    store.close()


def test_four_processes_upserting_overlapping_keys(tmp_path):
    _race(f"delta://{tmp_path}/lake", {}, tmp_path / "go", writers=4)


def test_two_processes_upserting_overlapping_keys_on_s3(tmp_path, s3):
    _race(f"delta://s3://{s3_server.BUCKET}/{uuid.uuid4().hex}", {"storage_options": s3.options()}, tmp_path / "go")


def test_a_writer_killed_mid_call_leaves_a_whole_version(tmp_path):
    url = f"delta://{tmp_path}/lake"
    n = 300_000
    frame(range(n), v=[0] * n).dk.save(url, "t")
    took = None
    for tag, share in enumerate((None, 0.2, 0.5, 0.8, 0.95), start=1):  # the first call, whole, times a call
        go = tmp_path / f"go{tag}"
        proc = _start(tmp_path / f"w{tag}.json", "write", url, {}, "t", 0, n, tag, str(go))
        _go(go, [proc])
        if took is None:
            took = _finish(proc, tmp_path / f"w{tag}.json")["seconds"]
            continue
        time.sleep(share * took)
        proc.kill()
        proc.join(30)
        out = dk.load(url, "t")
        assert out["id"].tolist() == list(range(n))
        assert out["v"].nunique() == 1  # all of one version: the old values or the new ones


def test_commits_on_s3_never_overwrite_a_log_entry(s3_store, s3):
    frame([1]).dk.save(s3_store, "t")
    stale = plain(s3_store, "t")  # version 0, read before the entry below is put there
    prefix = table_uri(s3_store, "t").split(f"{s3_server.BUCKET}/", 1)[1]
    entry = json.dumps({"commitInfo": {"timestamp": int(time.time() * 1000), "operation": "MANUAL"}}) + "\n"
    s3.client().put_object(Bucket=s3_server.BUCKET, Key=f"{prefix}/_delta_log/{1:020d}.json", Body=entry.encode())
    write_deltalake(stale, pa.table({"id": [2], "v": [20]}), mode="append")  # delta-rs: put-if-absent
    body = s3.client().get_object(Bucket=s3_server.BUCKET, Key=f"{prefix}/_delta_log/{1:020d}.json")["Body"].read()
    assert b"MANUAL" in body and plain(s3_store, "t").version() == 2
    # moto refuses a second conditional put of the same key, as S3 does
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3.client().put_object(
            Bucket=s3_server.BUCKET, Key=f"{prefix}/_delta_log/{1:020d}.json", Body=b"x", IfNoneMatch="*"
        )


def test_s3_read_only_user_reads_and_writes_nothing(s3_store, s3):
    df = dtype_matrix(n=12)
    df.dk.save(s3_store, "t")
    df.iloc[:3].assign(i8=np.int8(1)).dk.update_batch(s3_store, "t")
    url = s3_store.url
    prefix = url.split(f"{s3_server.BUCKET}/", 1)[1]
    before = sorted(s3.objects(prefix))
    reader = dk.connect(url, storage_options=s3.options("reader"))
    expected = dk.load(s3_store, "t")
    assert_frame_equal(dk.load(reader, "t"), expected)
    for call in (
        lambda: df.dk.save(reader, "t", if_exists="upsert"),
        lambda: df.iloc[:3].dk.delete(reader, "t"),
        lambda: dtype_matrix(n=20).iloc[12:].dk.save(reader, "t", if_exists="append"),
        lambda: df.dk.save(reader, "new"),
        lambda: reader.drop("t"),
    ):
        with pytest.raises(dk.StorageError, match="access denied"):
            call()
    assert sorted(s3.objects(prefix)) == before
    assert_frame_equal(dk.load(reader, "t"), expected)
    with pytest.raises(dk.StorageError, match="does not exist"):
        dk.connect(f"delta://s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x", storage_options=s3.options())


# -- the worker processes -------------------------------------------------------------------------------
def _wait(go: str) -> None:
    Path(f"{go}.{os.getpid()}.ready").touch()
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("never told to go")
        time.sleep(0.001)


def _write(url: str, options: dict, table: str, lo: int, hi: int, tag: int, go: str) -> dict:
    store = dk.connect(url, **options)
    df = frame(range(lo, hi), v=[tag] * (hi - lo))
    _wait(go)
    start = time.perf_counter()
    try:
        res = df.dk.save(store, table, if_exists="upsert")
    except dk.DataKnobsError as e:
        return {"error": type(e).__name__, "message": str(e)}
    return {"succeeded": res.succeeded, "failed": res.failed, "seconds": time.perf_counter() - start}


def _read(url: str, options: dict, table: str, go: str) -> dict:
    """Load the table again and again until told to stop (at least once, at most for a minute)."""
    store = dk.connect(url, **options)
    _wait(go)
    counts, problems = [], []
    end = time.monotonic() + 60
    while time.monotonic() < end and not (counts and os.path.exists(f"{go}.stop")):
        try:
            out = dk.load(store, table)
        except dk.DataKnobsError as e:
            problems.append(f"{type(e).__name__}: {e}")
            continue
        if not out["id"].is_unique or not out["id"].is_monotonic_increasing:
            problems.append("ids not unique or not in key order")
        counts.append(len(out))
    return {"counts": counts, "problems": problems, "loads": len(counts)}


def _work(out: str, what: str, *args) -> None:
    """A worker's body: _write or _read, its report left in the file `out`."""
    # A forked worker ends with os._exit: delta-rs and Arrow threads torn down with the interpreter abort
    # the process now and then ("terminate called without an active exception", delta-io/delta-rs#2184).
    result = _write(*args) if what == "write" else _read(*args)
    Path(out).write_text(json.dumps(result))


def test_time_travel_and_history_through_the_public_api(tmp_path):
    url = f"delta://{tmp_path}/tt"
    v0 = pd.DataFrame({"id": [1, 2, 3], "v": [1.0, 2.0, 3.0]})
    r0 = v0.dk.save(url, "t")
    r1 = pd.DataFrame({"id": [2], "v": [20.0]}).dk.update_batch(url, "t")
    assert (r0.version, r1.version) == (0, 1) and "(version 1)" in str(r1)
    assert_frame_equal(dk.load(url, "t", version=0), v0)
    assert dk.load(url, "t")["v"].tolist() == [1.0, 20.0, 3.0]
    hist = dk.connect(url).history("t")
    assert hist["version"].tolist() == [1, 0]
    when = pd.Timestamp(hist["timestamp"].iloc[1])
    assert_frame_equal(dk.load(url, "t", as_of=when), v0)
    assert dk.load(url, "t", version=1, where=[("id", ">=", 2)], columns=["v"])["v"].tolist() == [20.0, 3.0]
    with pytest.raises(dk.InvalidArgumentError, match="versions up to 1"):
        dk.load(url, "t", version=7)


@pytest.mark.parametrize("url", ["memory://nohistory", "sqlite:///{tmp}/n.db", "parquet://{tmp}/p"])
def test_stores_without_history_say_so(tmp_path, url):
    url = url.format(tmp=tmp_path)
    pd.DataFrame({"id": [1]}).dk.save(url, "t", if_exists="replace")
    for call in (
        lambda: dk.load(url, "t", version=0),
        lambda: dk.load(url, "t", as_of="2020-01-01"),
        lambda: dk.connect(url).history("t"),
    ):
        with pytest.raises(dk.InvalidArgumentError, match="keeps no history.*delta://"):
            call()


def test_text_holding_line_separators_is_written_by_every_kind_of_commit(store):
    # a commit of files written apart reads its staged log as JSON lines: \x85 and \u2028 in a value (in the
    # statistics delta-rs writes) once cut a line in two there
    odd = ["\x85", "x\u2028y", "z\rq", "a\u2029b"]
    pd.DataFrame({"id": [0], "c0": ["a"]}).dk.save(store, "t")
    assert pd.DataFrame({"id": range(4), "c0": odd}).dk.save(store, "t", if_exists="upsert").ok
    pd.DataFrame({"c0": odd}).dk.save(store, "k")  # a keyless table, kept in order by its files
    assert pd.DataFrame({"c0": odd}).dk.save(store, "k", if_exists="append").ok
    assert dk.load(store, "t")["c0"].tolist() == odd
    assert dk.load(store, "k")["c0"].tolist() == odd + odd
