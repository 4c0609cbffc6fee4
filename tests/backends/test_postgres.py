"""What is particular to PostgreSQL: native types, values it cannot hold, constraints, pooling, faults.

Runs against the real server of tests/pg.py (DK_TEST_POSTGRES_URL); each test gets its own schema.
"""

from __future__ import annotations

import datetime as dt
import decimal
import multiprocessing as mp
import sys
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd import ConnectionLostError
from tests import pg


@pytest.fixture
def url():
    return pg.new_store_url()


@pytest.fixture
def store(url):
    s = dk.connect(url)
    yield s
    s.close()


sql = pg.sql  # a statement on its own admin connection


def test_native_types_not_null_primary_key_and_schema_row(store, url):
    df = pd.DataFrame(
        {
            "id": np.array([1, 2], dtype="int64"),
            "i8": np.array([1, 2], dtype="int8"),
            "u16": np.array([1, 2], dtype="uint16"),
            "u32": np.array([1, 2], dtype="uint32"),
            "u64": np.array([1, 2], dtype="uint64"),
            "f32": np.array([1, 2], dtype="float32"),
            "f": [1.5, None],
            "b": [True, False],
            "s": ["x", None],
            "by": [b"x", None],
            "d": [dt.date(2020, 1, 1), None],
            "dec": [decimal.Decimal("1.25"), None],
            "t": pd.to_datetime(["2020-01-01", None]).as_unit("us"),
            "tz": pd.to_datetime(["2020-01-01", None]).as_unit("ms").tz_localize("Europe/Paris"),
            "td": pd.to_timedelta([1, None], unit="s").as_unit("us"),
            "j": [{"a": 1}, None],
        }
    )
    df.dk.save(store, "t")
    cols = dict(
        sql(
            url,
            "SELECT column_name, format_type(atttypid, atttypmod) || ' ' || is_nullable"
            " FROM information_schema.columns c JOIN pg_attribute a ON a.attrelid = 't'::regclass"
            " AND a.attname = c.column_name WHERE table_schema = current_schema() AND table_name = 't'",
        )
    )
    assert cols == {
        "id": "bigint NO",
        "i8": "smallint NO",
        "u16": "integer NO",
        "u32": "bigint NO",
        "u64": "numeric(20,0) NO",
        "f32": "real YES",
        "f": "double precision YES",
        "b": "boolean NO",
        "s": "text YES",
        "by": "bytea YES",
        "d": "date YES",
        "dec": "numeric(38,2) YES",
        "t": "timestamp without time zone YES",
        "tz": "timestamp with time zone YES",
        "td": "interval YES",
        "j": "json YES",
    }
    assert sql(
        url,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
        " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 't'::regclass AND i.indisprimary",
    ) == [("id",)]
    assert sql(url, 'SELECT name FROM "_dk_schema" ORDER BY name') == [("t",), ("t__batches",)]  # and its log
    assert sql(url, "SELECT reloptions FROM pg_class WHERE oid = 't'::regclass")[0][0] == ["fillfactor=90"]
    assert_frame_equal(dk.load(store, "t"), df)


def test_values_are_natural_for_other_sql_tools(store, url):
    df = pd.DataFrame(
        {
            "id": [1, 2],
            "when": pd.to_datetime(["2020-01-01 12:00", "2021-06-01 00:00"]).tz_localize("UTC"),
            "j": [{"k": "v", "n": [1, 2]}, None],
            "amount": [decimal.Decimal("1.10"), decimal.Decimal(2)],
            "took": pd.to_timedelta(["1 day 2h", "3s"]),
        }
    )
    df.dk.save(store, "t")
    rows = sql(
        url,
        "SELECT j->>'k', (j->'n'->>1)::int, amount::text, took = interval '1 day 2 hours' FROM t"
        " WHERE \"when\" < '2021-01-01'",
    )
    assert rows == [("v", 2, "1.10", True)]
    assert sql(url, "SELECT sum(amount)::text FROM t") == [("3.10",)]


def test_nanoseconds_survive_and_filter_exactly(store, url):
    base = pd.Timestamp("2021-03-14 01:59:59.000001")
    ts = pd.Series([base + pd.Timedelta(nanoseconds=n) for n in (999, 1, 0, 500)], dtype="datetime64[ns]")
    df = pd.DataFrame(
        {"v": [1, 2, 3, 4], "td": pd.to_timedelta([1, -1, 1001, -1001], unit="ns")}, index=pd.Index(ts, name="t")
    )
    df.dk.save(store, "ns")
    out = dk.load(store, "ns")
    assert_frame_equal(out, df.sort_index())
    # the timestamp column stays a real timestamp (microseconds) and the nanoseconds sit beside it
    assert sql(url, 'SELECT "t", "_dk_ns_t" FROM ns ORDER BY v') == [
        (dt.datetime(2021, 3, 14, 1, 59, 59, 1), 999),
        (dt.datetime(2021, 3, 14, 1, 59, 59, 1), 1),
        (dt.datetime(2021, 3, 14, 1, 59, 59, 1), 0),
        (dt.datetime(2021, 3, 14, 1, 59, 59, 1), 500),
    ]
    pick = dk.load(store, "ns", where=[("t", "==", base + pd.Timedelta(nanoseconds=500))])
    assert pick["v"].tolist() == [4]
    later = dk.load(store, "ns", where=[("t", ">", base + pd.Timedelta(nanoseconds=1))], order_by=[("t", "desc")])
    assert later["v"].tolist() == [1, 4]
    assert dk.load(store, "ns", where=[("td", "<", pd.Timedelta(nanoseconds=0))])["v"].tolist() == [2, 4]
    # two keys within the same microsecond are two keys
    res = df.iloc[:2].assign(v=[10, 20]).dk.update_batch(store, "ns")
    assert res.ok and dk.load(store, "ns")["v"].tolist() == [3, 20, 4, 10]


def test_values_postgres_cannot_hold_fail_their_rows_at_convert(store):
    df = pd.DataFrame(
        {
            "id": range(6),
            "s": ["ok", "nul\x00inside", "ok", "ok", "ok", "ok"],
            "j": [{"a": 1}, None, {"b": float("nan")}, ["x\x00"], {"c": "\\u0000 is text here"}, None],
            "t": np.array(
                ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04", "2020-01-05", "300000-01-01"],
                dtype="datetime64[s]",
            ),
        }
    )
    res = df.dk.save(store, "t")
    f = res.failures.set_index("row")
    assert list(f.index) == [1, 2, 3, 5] and set(f["stage"]) == {"convert"}
    assert "'s'" in f.loc[1, "message"] and "NUL" in f.loc[1, "message"]
    assert "'j'" in f.loc[2, "message"] and "NaN" in f.loc[2, "message"]
    assert "NUL" in f.loc[3, "message"]
    assert f.loc[5, "error"] == "OutOfRange" and "300000-01-01" in f.loc[5, "message"]
    out = dk.load(store, "t")
    assert out["id"].tolist() == [0, 4] and out["j"].tolist() == [{"a": 1}, {"c": "\\u0000 is text here"}]


def test_uint64_keeps_its_whole_range(store):
    df = pd.DataFrame({"u": np.array([0, 2**63, 2**64 - 1], dtype="uint64")})
    assert df.dk.save(store, "t").ok
    assert_frame_equal(dk.load(store, "t"), df)
    assert dk.load(store, "t", where=[("u", ">", 2**63)])["u"].tolist() == [2**64 - 1]


def test_range_filters_on_decimal_date_and_interval(store):
    df = pd.DataFrame(
        {
            "d": pd.Series([decimal.Decimal(x) for x in ("9.5", "10.25", "-3")], dtype=object),
            "day": pd.Series([dt.date(2020, 1, 1), dt.date(2021, 1, 1), dt.date(2019, 1, 1)], dtype=object),
            "took": pd.to_timedelta(["1h", "2 days", "1s"]),
        }
    )
    df.dk.save(store, "t")
    assert dk.load(store, "t", where=[("d", ">", decimal.Decimal("9.9"))])["d"].tolist() == [decimal.Decimal("10.25")]
    assert len(dk.load(store, "t", where=[("day", ">=", dt.date(2020, 1, 1))])) == 2
    assert dk.load(store, "t", where=[("took", ">", pd.Timedelta("1 day"))])["took"].tolist() == [
        pd.Timedelta("2 days")
    ]


def test_check_constraint_failures_are_isolated_with_sqlstate_and_constraint_name(store, url):
    pd.DataFrame({"id": [0], "v": [1]}).dk.save(store, "t")
    sql(url, 'ALTER TABLE "t" ADD CONSTRAINT v_not_negative CHECK (v >= 0)')
    n = 1000
    v = np.arange(n)
    bad = [3, 500, 501, 998]
    v[bad] = -1
    res = pd.DataFrame({"id": np.arange(1, n + 1), "v": v}).dk.save(store, "t", if_exists="append", chunksize=256)
    assert res.failures["row"].tolist() == bad
    assert set(res.failures["error"]) == {"CheckConstraint"} and set(res.failures["code"]) == {"23514"}
    assert "v_not_negative" in res.failures["message"].iloc[0]
    ids = dk.load(store, "t", columns=["id"])["id"]
    assert len(ids) == 1 + n - len(bad) and not ids.isin([b + 1 for b in bad]).any()


def test_trigger_refusals_carry_their_sqlstate_and_message(store, url):
    pd.DataFrame({"id": [1, 2], "v": ["a", "b"]}).dk.save(store, "t")
    sql(
        url,
        "CREATE FUNCTION no_x() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN IF NEW.v = 'x' THEN RAISE EXCEPTION 'v may not be x'; END IF; RETURN NEW; END$$",
    )
    sql(url, 'CREATE TRIGGER no_x BEFORE INSERT OR UPDATE ON "t" FOR EACH ROW EXECUTE FUNCTION no_x()')
    res = pd.DataFrame({"id": [1, 2, 3], "v": ["A", "x", "C"]}).dk.save(store, "t", if_exists="upsert")
    assert res.failures["row"].tolist() == [1] and res.failures["code"].tolist() == ["P0001"]
    assert "v may not be x" in res.failures["message"].iloc[0]
    assert dk.load(store, "t")["v"].tolist() == ["A", "b", "C"]


def test_keyless_tables_keep_insertion_order_and_hide_the_sequence(store, url):
    df = pd.DataFrame({"a": [5, 3, 9, 1]})
    df.dk.save(store, "t")
    df.iloc[::-1].dk.save(store, "t", if_exists="append")
    sql(url, 'INSERT INTO "t" (a) VALUES (42)')  # another tool appends too
    out = dk.load(store, "t")
    assert out["a"].tolist() == [5, 3, 9, 1, 1, 9, 3, 5, 42] and list(out.columns) == ["a"]
    assert dk.load(store, "t", limit=2)["a"].tolist() == [5, 3]


def test_tables_lists_the_user_tables_of_the_connection_schema_only(store, url):
    pd.DataFrame({"a": [1]}).dk.save(store, "mine")
    sql(url, 'CREATE TABLE public."elsewhere" (x int)')
    sql(url, 'CREATE TABLE "_dk_internal" (x int)')
    sql(url, 'CREATE TABLE "plain" (x int)')
    assert store.tables() == ["mine", "plain"]
    store.drop("mine")
    assert store.tables() == ["plain"] and sql(url, 'SELECT count(*) FROM "_dk_schema"') == [(0,)]
    sql(url, 'DROP TABLE public."elsewhere"')


def test_awkward_identifiers_are_quoted_and_filter_values_bound(store):
    df = pd.DataFrame({'we"ird col': [1, 2], "select": ["a", "x' OR '1'='1"], "id": [1, 2]})
    df.dk.save(store, 'tab"le; DROP TABLE x')
    out = dk.load(store, 'tab"le; DROP TABLE x', where=[('we"ird col', "==", 2)])
    assert out["select"].tolist() == ["x' OR '1'='1"]
    assert dk.load(store, 'tab"le; DROP TABLE x', where=[("select", "==", "' OR 1=1 --")]).empty


def test_names_postgres_would_cut_or_that_clash_are_refused(store):
    with pytest.raises(dk.DataKnobsError, match="longer than PostgreSQL's 63 bytes"):
        pd.DataFrame({"a" * 64: [1]}).dk.save(store, "t")
    with pytest.raises(dk.DataKnobsError, match="reserved"):
        pd.DataFrame({"_dk_seq": [1]}).dk.save(store, "t")
    assert store.tables() == []


def test_foreign_table_loads(store, url):
    sql(
        url,
        "CREATE TABLE plain (k int PRIMARY KEY, x float8, s varchar(10), iv interval, n numeric(10,2),"
        " ts timestamptz, d date, j jsonb)",
    )
    sql(
        url,
        "INSERT INTO plain VALUES (2, 1.5, 'b', '1 day 2 hours', 3.25, '2020-01-01 00:00+02', '2020-02-29',"
        " '{\"a\": [1]}'), (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    out = dk.load(store, "plain")
    assert out["k"].tolist() == [1, 2] and str(out["k"].dtype) == "Int32"
    assert out["s"].tolist() == [None, "b"] and out["iv"].iloc[1] == pd.Timedelta("1 day 2 hours")
    assert out["n"].iloc[1] == decimal.Decimal("3.25") and out["d"].iloc[1] == dt.date(2020, 2, 29)
    assert out["ts"].iloc[1] == pd.Timestamp("2019-12-31 22:00", tz="UTC") and out["j"].iloc[1] == {"a": [1]}
    assert "plain" in store.tables()


def _connections(url, app):
    return sql(url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", (app,))[0][0]


def test_pool_reuses_connections_and_close_releases_them(url):
    app = f"dk_{uuid.uuid4().hex[:8]}"
    tagged = f"{url}&application_name={app}"
    s, other = dk.connect(tagged), dk.connect(tagged)
    assert other is not s and other.backend is s.backend  # handles share one pool
    pd.DataFrame({"id": range(100), "v": 1.0}).dk.save(s, "t")

    def work(i):
        for _ in range(5):
            assert len(dk.load(s, "t", where=[("id", ">=", i)])) == 100 - i

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert 1 <= _connections(url, app) <= 4  # idle connections kept for the next call, no more
    s.close()
    assert _connections(url, app) >= 1  # the other handle still holds the pool
    other.close()
    assert _connections(url, app) == 0


def test_a_killed_idle_connection_is_replaced(url):
    app = f"dk_{uuid.uuid4().hex[:8]}"
    with dk.connect(f"{url}&application_name={app}") as s:
        pd.DataFrame({"id": [1, 2]}).dk.save(s, "t")
        sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", (app,))
        assert dk.load(s, "t")["id"].tolist() == [1, 2]
        assert pd.DataFrame({"id": [3]}).dk.save(s, "t", if_exists="append").ok


def test_passwords_are_never_shown(url):
    secret = f"pw{uuid.uuid4().hex[:6]}"
    with_pw = url.replace("postgresql://postgres@", f"postgresql://postgres:{secret}@", 1)  # trust auth ignores it
    with dk.connect(with_pw) as s:
        assert secret not in s.url and secret not in repr(s) and "***" in s.url
        with pytest.raises(dk.TableNotFoundError) as info:
            dk.load(s, "nope")
        assert secret not in str(info.value)
    bad = pg.with_database(with_pw, "no_such_database_here")
    with pytest.raises(dk.DataKnobsError) as info:
        dk.connect(bad)
    assert secret not in str(info.value) and "no_such_database_here" in str(info.value)


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(dk.DataKnobsError, match=r"cannot connect to postgres://u:\*\*\*@127\.0\.0\.1:1/db"):
        dk.connect("postgres://u:hunter2@127.0.0.1:1/db")


def test_missing_schema_in_search_path_is_a_clear_error(url):
    with pytest.raises(dk.DataKnobsError, match="no schema of the search_path"):
        dk.connect(url.replace("search_path%3D", "search_path%3Dnot_there_", 1))


def test_missing_driver_names_the_extra(monkeypatch):
    for module in [m for m in sys.modules if m.startswith("dataknobs_pd.backends.postgres")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql", None)
    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql.dbapi", None)
    with pytest.raises(dk.BackendUnavailableError, match=r"pip install 'dataknobs-pd\[postgres\]'"):
        dk.connect("postgresql://u:pw@127.0.0.1:1/db")


def _frame(ids, v):
    ids = np.asarray(ids, dtype="int64")
    return pd.DataFrame(
        {"id": ids, "v": np.full(len(ids), v, dtype="int64"), "s": pd.Series(ids.astype(str), dtype="str")}
    )


@pytest.mark.parametrize("existing", [False, True], ids=["new-table", "upsert-into-existing"])
def test_connection_killed_mid_save(store, url, monkeypatch, existing):
    """pg_terminate_backend from a second connection while a 300k-row save is running."""
    n = 300_000
    if existing:
        _frame(range(0, n, 3), v=0).dk.save(store, "t")
    backend = store.backend
    real_write = backend.write
    calls, killer = [], []

    def kill_when_busy(pid):
        conn = pg.admin(url)
        try:
            for _ in range(2000):  # until a statement of the save (COPY, UPDATE ...) is seen running
                if pg.execute(conn, "SELECT state FROM pg_stat_activity WHERE pid = $1::int", (pid,)) == [("active",)]:
                    break
                time.sleep(0.0005)
            pg.execute(conn, "SELECT pg_terminate_backend($1::int)", (pid,))
        finally:
            conn.close()

    def write(table, data, schema, mode):
        calls.append(data.num_rows)
        if len(calls) == 5:
            pid = backend.session.current.conn.query("SELECT pg_backend_pid()")[0][0]
            killer.append(threading.Thread(target=kill_when_busy, args=(pid,)))
            killer[0].start()
        if len(calls) == 8:
            killer[0].join()  # the kill has landed, at the latest before this chunk
        return real_write(table, data, schema, mode)

    monkeypatch.setattr(backend, "write", write)
    df = _frame(range(n), v=1)
    with pytest.raises(ConnectionLostError, match="lost the connection") as info:
        df.dk.save(store, "t", if_exists="upsert", chunksize=20_000)
    killer[0].join()
    assert "nothing of this call was written" in str(info.value) and 5 <= len(calls) <= 8
    # nothing of the call is in the table: no chunk half-written
    if existing:
        assert sql(url, 'SELECT count(*), count(DISTINCT id), max(v) FROM "t"') == [(n // 3, n // 3, 0)]
    else:
        assert "t" not in store.tables()
    monkeypatch.setattr(backend, "write", real_write)
    res = df.dk.save(store, "t", if_exists="upsert", chunksize=20_000)  # the same call again, same store
    assert res.ok and res.succeeded == n
    assert sql(url, 'SELECT count(*), count(DISTINCT id), min(v), max(v) FROM "t"') == [(n, n, 1, 1)]


def _upsert_worker(url, ids, v, barrier, out):
    import dataknobs_pd as dk  # noqa: F401 - registers the accessor in the spawned process

    barrier.wait()
    res = _frame(ids, v).dk.save(url, "t", if_exists="upsert", chunksize=2_000)
    out.put((v, res.total, res.succeeded, res.failed))


def test_two_processes_upserting_overlapping_keys(store, url):
    _frame([0], v=0).dk.save(store, "t")
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    jobs = [(list(range(30_000)), 1), (list(range(45_000, 14_999, -1)), 2)]  # overlap 15k..30k, opposite order
    procs = [ctx.Process(target=_upsert_worker, args=(url, ids, v, barrier, out)) for ids, v in jobs]
    [p.start() for p in procs]
    results = sorted(out.get(timeout=120) for _ in procs)
    [p.join(timeout=30) for p in procs]
    assert results == [(1, 30_000, 30_000, 0), (2, 30_001, 30_001, 0)]
    rows = sql(url, 'SELECT count(*), count(DISTINCT id), min(id), max(id) FROM "t"')
    assert rows == [(45_001, 45_001, 0, 45_000)]
    overlap = sql(url, 'SELECT DISTINCT v FROM "t" WHERE id BETWEEN 15000 AND 29999')
    assert len(overlap) == 1  # one writer went first, the other then updated every shared key


def test_threads_write_different_tables_of_one_store(store):
    errors = []

    def work(i):
        try:
            df = _frame(range(i * 1000, i * 1000 + 1000), v=i)
            assert df.dk.save(store, f"t{i}").ok
            assert df.iloc[:10].assign(v=-i).dk.update_batch(store, f"t{i}").ok
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and store.tables() == ["t0", "t1", "t2", "t3"]
    assert (dk.load(store, "t3")["v"] == -3).sum() == 10


def test_pyarrow_types_beyond_the_matrix(store):
    df = pd.DataFrame(
        {
            "d32": pd.Series([dt.date(2020, 1, 1), None, dt.date(1, 1, 1)], dtype=pd.ArrowDtype(pa.date32())),
            "bin": pd.Series([b"\x00", None, b""], dtype=pd.ArrowDtype(pa.binary())),
            "ts": pd.Series([1, None, -1], dtype=pd.ArrowDtype(pa.timestamp("ns", tz="Asia/Tokyo"))),
        }
    )
    assert df.dk.save(store, "t").ok
    assert_frame_equal(dk.load(store, "t"), df)


def test_postgres_scheme_options_and_missing_filter_values(url):
    with pytest.raises(dk.DataKnobsError, match="fillfactor"):
        dk.connect(url, fillfactor=5)
    with dk.connect(url.replace("postgresql://", "postgres://", 1), fillfactor=100) as s:
        pd.DataFrame({"id": [1, 2, 3], "f": [1.0, np.nan, 3.0]}).dk.save(s, "t")
        assert sql(url, "SELECT reloptions FROM pg_class WHERE oid = 't'::regclass") == [(None,)]
        assert dk.load(s, "t", where=[("f", "==", np.nan)])["id"].tolist() == [2]  # NaN means missing: IS NULL
        assert dk.load(s, "t", where=[("f", "in", [np.nan, 1.0])])["id"].tolist() == [1, 2]


# -- appending into a keyed table: the keys there already are found before the COPY -----------------
def _appended(store, url, table, df, seeded, failed):
    """The table holds the seeded rows unchanged and every other row of `df`; `failed` are the clashes."""
    assert sorted(failed) == sorted(seeded)
    got = dk.load(store, table).set_index("id")
    assert len(got) == len(df) and (got.loc[list(seeded), "v"] == 0).all()
    assert (got.drop(index=list(seeded))["v"] == 1).all()
    assert sql(url, f'SELECT count(*) FROM "{table}"') == [(len(df),)]


@pytest.mark.parametrize("chunksize", [None, 700])
def test_append_of_an_integer_key_finds_the_clashes_without_a_failing_copy(store, url, monkeypatch, chunksize):
    n = 5_000
    seeded = np.random.default_rng(3).choice(n, 25, replace=False)
    _frame(seeded, v=0).dk.save(store, "t")
    staged = []
    real = store.backend._insert_around
    monkeypatch.setattr(store.backend, "_insert_around", lambda *a: staged.append(1) or real(*a))
    df = _frame(np.random.default_rng(4).permutation(n), v=1)  # not in key order
    res = df.dk.save(store, "t", if_exists="append", chunksize=chunksize)
    assert res.failed == 25 and set(res.failures["error"]) == {"KeyConflict"}
    _appended(store, url, "t", df, seeded, df["id"].iloc[res.failures["row"]].tolist())
    assert staged == []  # the keys in each chunk's range were read by the index, nothing was staged
    more = _frame(range(n, 2 * n), v=1)  # beyond the table's keys: nothing to look up
    assert more.dk.save(store, "t", if_exists="append", chunksize=chunksize).succeeded == n


def test_append_with_many_keys_in_its_range_stages_them_after_a_clash(store, url):
    """More keys of the table in a chunk's range than the look-up reads: the COPY is tried, a clash makes
    the keys staged, and the next chunks stage theirs first."""
    _frame(range(0, 60_000, 2), v=0).dk.save(store, "t")
    df = _frame(np.r_[np.arange(1, 60_000, 60), [0, 30_000, 59_998]], v=1)
    res = df.dk.save(store, "t", if_exists="append", chunksize=400)
    assert sorted(df["id"].iloc[res.failures["row"]]) == [0, 30_000, 59_998] and res.succeeded == len(df) - 3
    got = dk.load(store, "t").set_index("id")
    assert len(got) == 30_000 + len(df) - 3 and (got.loc[[0, 30_000, 59_998], "v"] == 0).all()


@pytest.mark.parametrize("chunksize", [None, 300])
def test_append_of_a_text_key_into_a_table_with_rows_reports_each_clash(store, url, chunksize):
    def frame(ids, v):
        keys = pd.Series([f"k{i}" for i in ids], dtype="str", name="k")
        return pd.DataFrame({"v": np.full(len(keys), v, dtype="int64")}, index=keys)  # keyed by the index

    frame([5, 900, 1_499], v=0).dk.save(store, "t")
    res = frame(range(1_500), v=1).dk.save(store, "t", if_exists="append", chunksize=chunksize)
    assert sorted(res.failures["key"]) == ["k1499", "k5", "k900"] and res.succeeded == 1_497
    got = dk.load(store, "t")
    assert len(got) == 1_500 and got.loc[["k5", "k900", "k1499"], "v"].tolist() == [0, 0, 0]


def test_appends_in_one_transaction_see_each_others_keys(store, url, monkeypatch):
    """The keys a call learnt of the table before it wrote are forgotten when the next call claims it."""
    _frame([], v=0).dk.save(store, "t")
    staged = []
    real = store.backend._insert_around
    monkeypatch.setattr(store.backend, "_insert_around", lambda *a: staged.append(1) or real(*a))
    with store.backend.transaction():
        assert _frame(range(100), v=0).dk.save(store, "t", if_exists="append").succeeded == 100
        res = _frame(range(50, 150), v=1).dk.save(store, "t", if_exists="append")
        assert res.failed == 50 and res.succeeded == 50
    assert sql(url, 'SELECT count(*), sum(v)::bigint FROM "t"') == [(150, 50)]
    assert staged == []  # the second call read the keys the first one wrote, and copied only its new rows


def test_a_new_table_refused_midway_leaves_nothing(store, url):
    """errors='raise' on a row of the third chunk: neither the table, its key nor its schema row is left."""
    df = _frame(range(3_000), v=1)
    df.loc[2_500, "s"] = "nul\x00inside"
    with pytest.raises(dk.BatchError):
        df.dk.save(store, "t", errors="raise", chunksize=1_000)
    assert "t" not in store.tables() and sql(url, 'SELECT count(*) FROM "_dk_schema"') == [(0,)]
    df.loc[2_500, "s"] = "fixed"
    assert df.dk.save(store, "t", chunksize=1_000).succeeded == 3_000
    assert sql(url, "SELECT conname FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'p'") == [
        ("t_pkey",)
    ]


def test_an_update_of_few_rows_looks_them_up_by_key_and_puts_the_planner_back(store, url):
    """At most a fifth of the table's rows: the UPDATE's join is turned to key look-ups for that statement
    alone; the settings of the transaction are as they were afterwards, and absent keys still fail."""
    _frame(range(1_000), v=0).dk.save(store, "t")
    upd = _frame([*range(0, 1_000, 10), 5_000], v=5)[["id", "v"]]
    with store.backend.transaction():
        c = store.backend.session.current.conn
        c.run("SET LOCAL enable_mergejoin = off")
        res = upd.dk.update_batch(store, "t")
        settings = "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin')"
        assert c.query(settings) == [("on", "off")]
    assert res.succeeded == 100 and res.failures["key"].tolist() == [5_000]
    assert sql(url, 'SELECT count(*) FILTER (WHERE v = 5), sum(v)::bigint FROM "t"') == [(100, 500)]


@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
def test_rows_read_by_a_zoned_key_inside_a_write(store, tz):
    """Dry runs and tracked changes read the rows they change by key inside the call's transaction; a zoned
    key is bound as naive UTC (binding timestamptz made ADBC's driver commit the transaction: 'SAVEPOINT can
    only be used in transaction blocks')."""
    df = pd.DataFrame({"at": pd.date_range("2024-01-01", periods=3, freq="D", tz=tz), "v": [1, 2, 3]})
    df.dk.save(store, "z", key="at")
    change = df.iloc[1:].assign(v=[7, 8])
    dry = change.dk.save(store, "z", if_exists="upsert", key="at", dry_run=True)
    assert dry.ok and dry.changes["action"].tolist() == ["update", "update"]
    tracked = change.dk.update_batch(store, "z", key="at", track_changes=True)
    assert tracked.ok and len(tracked.changes) == 2
    assert dk.load(store, "z")["v"].tolist() == [1, 7, 8]
    assert dk.load(store, "z", where=[("at", "==", df["at"].iloc[2])])["v"].tolist() == [8]
