"""PostgreSQL at the edges: writers racing to create a table, names it cannot hold or that shadow its
own, threads sharing one Store, passwords in messages, refusals classified. Real server (tests/pg.py).
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
import traceback
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
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


def _run_threads(targets, seconds=120):
    """Start one thread per callable, wait for all (bounded); return the exceptions they raised."""
    errors: list[BaseException] = []

    def guard(fn):
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=guard, args=(fn,), daemon=True) for fn in targets]
    [t.start() for t in threads]
    deadline = time.monotonic() + seconds
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"threads still running after {seconds}s"
    return errors


def _until(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


# -- item 1: writers creating the same table at once ----------------------------------------------


def _create_worker(url, lo, hi, tag, barrier, out):
    import dataknobs_pd as dk  # noqa: F401 - registers the accessor in the spawned process

    df = pd.DataFrame({"id": np.arange(lo, hi, dtype="int64"), "w": tag})
    barrier.wait()
    try:
        res = df.dk.save(url, "fresh", if_exists="upsert", chunksize=5_000)
        out.put((tag, res.total, res.succeeded, res.failed, None))
    except Exception as e:  # noqa: BLE001 - reported to the test
        out.put((tag, len(df), 0, 0, f"{type(e).__name__}: {e}"))


@pytest.mark.parametrize("writers", [2, 4])
def test_processes_creating_the_same_table_at_once_lose_no_row(url, writers):
    rows = 20_000
    ranges = [(i * rows // 2, i * rows // 2 + rows) for i in range(writers)]  # neighbours overlap by half
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(writers), ctx.Queue()
    procs = [
        ctx.Process(target=_create_worker, args=(url, lo, hi, f"w{i}", barrier, out))
        for i, (lo, hi) in enumerate(ranges)
    ]
    [p.start() for p in procs]
    try:
        reports = sorted(out.get(timeout=180) for _ in procs)
    finally:
        [p.join(timeout=30) for p in procs]
        [p.kill() for p in procs if p.is_alive()]
    # every writer waits for the one creating the table, then upserts into it: all succeed
    assert reports == [(f"w{i}", rows, rows, 0, None) for i in range(writers)]
    union = ranges[-1][1]
    assert sql(url, 'SELECT count(*), count(DISTINCT id), min(id), max(id) FROM "fresh"') == [
        (union, union, 0, union - 1)
    ]
    out = dk.load(url, "fresh")
    for lo, hi in ranges:  # each id holds the tag of a writer that sent it
        senders = out["id"].between(lo, hi - 1)
        tags = {f"w{j}" for j, (a, b) in enumerate(ranges) if a < hi and lo < b}
        assert set(out.loc[senders, "w"]) <= tags
    assert set(out.loc[out["id"] < rows // 2, "w"]) == {"w0"}  # sent by the first writer alone


def test_claim_makes_a_second_writer_of_the_table_wait_then_see_it(store):
    backend = store.backend
    schema = dk.TypeMapper().schema(pd.DataFrame({"id": [1], "v": [1.0]}), ["id"])
    data = pa.table({"id": pa.array([1, 2], pa.int64()), "v": pa.array([1.0, 2.0])})
    held, release, seen = threading.Event(), threading.Event(), []

    def first():
        with backend.transaction():
            backend.claim("t")
            assert backend.schema("t") is None
            backend.create("t", schema)
            backend.write("t", data, schema, "insert")
            held.set()
            assert release.wait(30)

    def second():
        assert held.wait(30)
        with backend.transaction():
            backend.claim("t")
            seen.append(backend.schema("t"))
            backend.claim("other")  # another table's claim is not held by `first`: no wait

    threads = [threading.Thread(target=first, daemon=True), threading.Thread(target=second, daemon=True)]
    [t.start() for t in threads]
    assert held.wait(30)
    time.sleep(0.5)
    assert seen == []  # still waiting for the first writer's transaction
    release.set()
    [t.join(30) for t in threads]
    assert not any(t.is_alive() for t in threads)
    assert seen == [schema]  # the first writer's commit is visible as soon as the claim is granted


def test_claims_taken_in_opposite_orders_end_one_call_with_a_concurrent_write_error(store):
    backend = store.backend
    both, errors, done = threading.Barrier(2, timeout=30), [], []

    def claims(first, second):
        def go():
            try:
                with backend.transaction():
                    backend.claim(first)
                    both.wait()
                    backend.claim(second)  # each waits for the other: PostgreSQL ends one of them
                done.append(first)
            except Exception as e:  # noqa: BLE001 - checked below
                errors.append(e)

        return go

    assert _run_threads([claims("a", "b"), claims("b", "a")], seconds=60) == []
    assert len(done) == 1 and len(errors) == 1 and isinstance(errors[0], dk.ConcurrentWriteError), errors
    assert "deadlock" in str(errors[0])


def test_two_creates_racing_without_a_claim_is_a_concurrent_write_error(url):
    """The backstop: a create that loses to another transaction never shows PostgreSQL's catalogue."""
    app = f"dk_{uuid.uuid4().hex[:8]}"
    backend = dk.connect(f"{url}&application_name={app}").backend
    schema = dk.TypeMapper().schema(pd.DataFrame({"id": [1]}), ["id"])
    held, release, errors = threading.Event(), threading.Event(), []

    def first():
        with backend.transaction():
            backend.create("t", schema)
            held.set()
            assert release.wait(30)

    def second():
        assert held.wait(30)
        try:
            with backend.transaction():
                backend.create("t", schema)
        except Exception as e:  # noqa: BLE001 - checked below
            errors.append(e)

    threads = [threading.Thread(target=first, daemon=True), threading.Thread(target=second, daemon=True)]
    [t.start() for t in threads]
    # the second CREATE waits on the first one's catalogue entry, then fails when it commits
    _until(
        lambda: (
            sql(
                url,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                (app,),
            )
            == [(1,)]
        )
    )
    release.set()
    [t.join(30) for t in threads]
    assert len(errors) == 1 and isinstance(errors[0], dk.ConcurrentWriteError), errors
    assert "pg_type" not in str(errors[0]) and "'t'" in str(errors[0])
    dk.connect(f"{url}&application_name={app}").close()


# -- item 3: internal names never collide with the user's ----------------------------------------


def test_user_table_named_like_the_stage_or_a_catalogue_is_the_users(store, url):
    """Tables are named through the store's schema: neither pg_temp nor pg_catalog stands in for them."""
    backend = store.backend
    df = pd.DataFrame({"id": [1, 2], "v": [1.0, 2.0]})
    for name in ("pg_class", "pg_type", "pg_temp", "pg_catalog.pg_class"):
        assert df.dk.save(store, name).ok
        assert df.assign(v=9.0).dk.save(store, name, if_exists="upsert").ok
        assert df.iloc[:1].assign(v=5.0).dk.update_batch(store, name).ok
        assert dk.load(store, name)["v"].tolist() == [5.0, 9.0]
        assert name in store.tables()
        store.drop(name)
    # the stage's own name, written through the backend (the public API refuses the _dk_ prefix)
    schema = dk.TypeMapper().schema(df, ["id"])
    data = pa.table({"id": pa.array([2, 3], pa.int64()), "v": pa.array([20.0, 30.0])})
    with backend.transaction():
        backend.create("_dk_stage", schema)
        backend.write(
            "_dk_stage", pa.table({"id": pa.array([1, 2], pa.int64()), "v": pa.array([1.0, 2.0])}), schema, "insert"
        )
    with backend.transaction():
        assert backend.write("_dk_stage", data, schema, "upsert") is None  # no row left out
    assert sql(url, 'SELECT id, v FROM "_dk_stage" ORDER BY id') == [(1, 1.0), (2, 20.0), (3, 30.0)]


def test_a_table_made_elsewhere_with_columns_named_like_the_hidden_ones(store, url):
    sql(url, 'CREATE TABLE f (id int PRIMARY KEY, "_dk_row" int, "_dk_seq" int, v int)')
    sql(url, "INSERT INTO f VALUES (1, 10, 100, 1)")
    out = dk.load(store, "f")
    assert list(out.columns) == ["id", "_dk_row", "_dk_seq", "v"]  # none of the table's columns hidden
    res = pd.DataFrame({"id": [1, 2], "v": [7, 8]}).dk.save(store, "f", if_exists="upsert")
    assert res.ok
    assert sql(url, 'SELECT id, "_dk_row", "_dk_seq", v FROM f ORDER BY id') == [(1, 10, 100, 7), (2, None, None, 8)]
    # data carrying a column named like the stage's row number is refused by name, not by PostgreSQL
    backend = store.backend
    schema = backend.schema("f")
    data = pa.table({"id": pa.array([1], pa.int32()), "_dk_row": pa.array([5], pa.int32())})
    with pytest.raises(dk.InvalidArgumentError, match="_dk_row.*'f'|'f'.*_dk_row"), backend.transaction():
        backend.write("f", data, schema, "upsert")


# -- item 13: names PostgreSQL cannot hold --------------------------------------------------------


def test_names_postgres_cannot_hold_are_refused_before_any_query(store):
    backend = store.backend
    for name, why in (("a\x00b", "NUL"), ("x" * 64, "63 bytes"), ("€" * 22, "63 bytes")):
        for call in (
            backend.schema,
            backend.claim,
            backend.drop,
            lambda n: list(backend.read(n, None, [], [], [], None, 10)),
        ):
            with pytest.raises(dk.InvalidArgumentError, match=why) as info:
                call(name)
            assert repr(name)[:20] in str(info.value)
    schema = dk.TypeMapper().schema(pd.DataFrame({"id": [1], "a\x00b": [1]}), ["id"])
    with pytest.raises(dk.InvalidArgumentError, match="NUL.*'t'|'t'.*NUL"):
        backend.create("t", schema)
    with pytest.raises(dk.InvalidArgumentError, match="'ctid'.*system column"):
        pd.DataFrame({"id": [1], "ctid": [1]}).dk.save(store, "t")
    for frame in (
        pd.DataFrame({"c" * 64: [1]}),
        pd.DataFrame({"t" + "n" * 60: pd.to_datetime(["2020-01-01"]).as_unit("ns")}),
    ):  # its companion
        with pytest.raises(dk.InvalidArgumentError, match="63 bytes"):
            frame.dk.save(store, "t")
    assert store.tables() == []


def test_a_name_one_byte_too_long_never_reaches_the_table_it_would_be_cut_to(store):
    df = pd.DataFrame({"id": [1, 2], "v": [1.0, 2.0]})
    df.dk.save(store, "y" * 63)
    df.dk.save(store, "€" * 21)  # 63 bytes
    for name in ("y" * 64, "€" * 21 + "z"):
        with pytest.raises(dk.InvalidArgumentError, match="63 bytes"):
            dk.load(store, name)
        with pytest.raises(dk.InvalidArgumentError, match="63 bytes"):
            df.assign(v=0.0).dk.save(store, name, if_exists="upsert")
    assert_frame_equal(dk.load(store, "y" * 63), df)
    assert_frame_equal(dk.load(store, "€" * 21), df)


@pytest.mark.parametrize(
    "name",
    [
        'it\'s "q"',
        "t; DROP TABLE keep; --",
        "-- c",
        "two\nlines",
        "naïve ☃ 日本 😀",
        "a/b",
        "../x",
        " padded ",
        "a.b",
        "public.keep",
        "%s $1 ?",
        "l" * 63,
    ],
)
def test_hostile_names_round_trip(store, name):
    pd.DataFrame({"id": [1], "v": ["k"]}).dk.save(store, "keep")
    df = pd.DataFrame({"id": [1, 2, 3], name[:60]: [1.5, 2.5, None]}, index=pd.Index([7, 8, 9], name=name[:50] + "i"))
    assert df.dk.save(store, name, key="id").ok
    assert df.assign(**{name[:60]: 0.0}).dk.save(store, name, if_exists="upsert").ok
    assert df.iloc[:1].dk.update_batch(store, name).ok
    out = dk.load(store, name, where=[(name[:60], ">=", 0)], order_by=[(name[:60], "desc"), "id"])
    assert out["id"].tolist() == [1, 2, 3] and out.index.name == name[:50] + "i"
    assert name in store.tables()
    assert df.iloc[2:].dk.delete(store, name).ok
    store.drop(name)
    assert store.tables() == ["keep"] and dk.load(store, "keep")["v"].tolist() == ["k"]


# -- item 10: threads sharing one Store ----------------------------------------------------------


def test_threads_sharing_one_store_write_and_read_one_table(store):
    base = 4_000
    pd.DataFrame({"id": np.arange(base, dtype="int64"), "v": np.zeros(base, dtype="int64")}).dk.save(store, "t")
    writers, rounds, new = 4, 5, 500
    reads: list[list[int]] = [[], []]
    stop = threading.Event()

    def write(i):
        def go():
            shared = pd.DataFrame({"id": np.arange(0, 20, dtype="int64"), "v": -1})  # the same rows by all
            fresh = pd.DataFrame({"id": np.arange(0, 1_000, dtype="int64"), "v": 1})
            for r in range(rounds):
                ids = np.arange(base + (i * rounds + r) * new, base + (i * rounds + r + 1) * new, dtype="int64")
                res = pd.DataFrame({"id": ids, "v": i}).dk.save(store, "t", if_exists="upsert", chunksize=200)
                assert (res.succeeded, res.failed) == (new, 0)
                mine = np.arange(100 + i * 100 + r * 20, 100 + i * 100 + (r + 1) * 20, dtype="int64")
                res = pd.DataFrame({"id": mine, "v": 100 + i}).dk.update_batch(store, "t")
                assert (res.succeeded, res.failed) == (20, 0)
                assert shared.dk.update_batch(store, "t").ok
                res = fresh.dk.save(store, f"fresh{r}", if_exists="upsert")  # every thread creates it at once
                assert (res.succeeded, res.failed) == (1_000, 0)

        return go

    def read(seen):
        while not stop.is_set():
            out = dk.load(store, "t", columns=["v"])
            assert out.index.is_unique and len(out) >= base
            seen.append(len(out))
            store.tables()

    readers = [threading.Thread(target=read, args=(seen,), daemon=True) for seen in reads]
    [t.start() for t in readers]
    try:
        errors = _run_threads([write(i) for i in range(writers)])
    finally:
        stop.set()
        [t.join(30) for t in readers]
    assert not errors, "".join(traceback.format_exception(errors[0]))
    assert all(seen and seen == sorted(seen) for seen in reads)  # whole committed states, never shrinking
    out = dk.load(store, "t")
    expected = np.zeros(base + writers * rounds * new, dtype="int64")
    expected[:20] = -1
    for i in range(writers):
        expected[100 + i * 100 : 100 + i * 100 + rounds * 20] = 100 + i
        expected[base + i * rounds * new : base + (i + 1) * rounds * new] = i
    assert out["id"].tolist() == list(range(len(expected)))
    assert out["v"].tolist() == expected.tolist()
    for r in range(rounds):
        assert dk.load(store, f"fresh{r}")["v"].tolist() == [1] * 1_000


# -- item 8: passwords that hold "/" or "@" ------------------------------------------------------

PASSWORDS = ["s3c/r3t", "s3c@r3t", "p4ss@w0rd/x9y@z8w", "hun7er2%2F"]


def _parts(password: str) -> set[str]:
    """The password and the pieces a parser splitting it at "/" or "@" would show."""
    return {password} | {p for p in password.replace("@", "/").split("/") if len(p) >= 3}


def _shown(e: BaseException) -> str:
    """Everything a user may see of an error: its message, repr and the whole traceback with causes."""
    return str(e) + repr(e) + "".join(traceback.format_exception(e))


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_with_slash_or_at_is_never_shown_when_connecting_fails(password):
    with pytest.raises(dk.StorageError, match="cannot connect") as info:
        dk.connect(f"postgresql://u:{password}@127.0.0.1:1/db")
    shown = _shown(info.value)
    assert "127.0.0.1" in shown and "port 1" in shown  # libpq read the host and port that were meant
    for part in _parts(password):
        assert part not in shown, part


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_with_slash_or_at_connects_and_stays_hidden(url, password):
    with_pw = url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@", 1)  # trust auth ignores it
    with dk.connect(with_pw) as s:
        pd.DataFrame({"id": [1]}).dk.save(s, "t")
        with pytest.raises(dk.TableNotFoundError) as info:
            dk.load(s, "nope")
        assert password not in _shown(info.value) and password not in s.url
    head, tail = with_pw.split("?", 1)
    with pytest.raises(dk.StorageError) as info:
        dk.connect(head.rsplit("/", 1)[0] + "/no_such_database_here?" + tail)
    assert "no_such_database_here" in str(info.value)
    for part in _parts(password):
        assert part not in _shown(info.value), part


# -- item 6: refusals are StorageErrors ----------------------------------------------------------


def test_refusals_of_the_server_are_storage_errors(url):
    with pytest.raises(dk.StorageError, match="cannot connect"):
        dk.connect("postgresql://u:pw@127.0.0.1:1/db")
    with pytest.raises(dk.StorageError, match="no schema of the search_path"):
        dk.connect(url.replace("search_path%3D", "search_path%3Dnot_there_", 1))
    with pytest.raises(dk.InvalidArgumentError, match="fillfactor"):
        dk.connect(url, fillfactor=5)
    schema = url.split("search_path%3D", 1)[1]
    role = f"dk_guest_{uuid.uuid4().hex[:8]}"
    with dk.connect(url) as owner:
        pd.DataFrame({"id": [1]}).dk.save(owner, "t")
    sql(url, f'CREATE ROLE "{role}" LOGIN')
    try:
        guest = url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
        with pytest.raises(dk.StorageError, match="no schema of the search_path"):  # no USAGE on the schema
            dk.connect(guest)
        sql(url, f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        sql(url, f'GRANT SELECT ON "{schema}"."_dk_schema" TO "{role}"')
        with dk.connect(guest) as s:  # may read the catalogue, not the table
            with pytest.raises(dk.StorageError, match="permission denied.*42501|42501.*permission denied"):
                dk.load(s, "t")
            with pytest.raises(dk.StorageError, match="42501"):
                pd.DataFrame({"id": [2]}).dk.save(s, "t", if_exists="append")
    finally:
        sql(url, f'DROP OWNED BY "{role}"')
        sql(url, f'DROP ROLE "{role}"')


# -- values at the edges of what PostgreSQL's types hold -----------------------------------------------------
@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_intervals_beyond_292_years_read_back_exactly(store, unit):
    days = np.array([400 * 365 * 86400, -400 * 365 * 86400, 1], dtype="timedelta64[s]")
    df = pd.DataFrame({"d": days.astype(f"timedelta64[{unit}]")})
    df.dk.save(store, "far")
    assert_frame_equal(dk.load(store, "far"), df)
    assert_frame_equal(dk.load(store, "far", where=[("d", ">", np.timedelta64(1, "D"))]), df.iloc[[0]])


@pytest.mark.parametrize("kind", ["timedelta64[ns]", "datetime64[ns]"])
def test_nanoseconds_at_the_bottom_of_int64_read_back_exactly(store, kind):
    low = -(2**63) + 1
    values = np.array([low, low + 999, -(2**63) + 1000, 2**63 - 1, 0], dtype="int64").view(kind)
    df = pd.DataFrame({"v": values})
    df.dk.save(store, "low")
    assert_frame_equal(dk.load(store, "low"), df)


def test_a_value_that_cannot_be_read_is_not_a_lost_connection(store, url):
    pd.DataFrame({"d": pd.Series([pd.Timedelta(days=1)])}).dk.save(store, "iv")
    sql(url, "ALTER TABLE iv ALTER COLUMN d TYPE interval USING interval '178000000 years'")
    with pytest.raises(dk.DataKnobsError) as e:
        dk.load(store, "iv")
    assert not isinstance(e.value, dk.ConnectionLostError)


def test_json_floats_read_back_as_floats(store):
    values = [{"x": -4.226211761111753e16}, {"y": [1e300, 2.0, -0.0, 1.5e3, 3]}, [1e-300, {"z": 5e20}], None]
    df = pd.DataFrame({"j": pd.Series(values, dtype=object)})
    df.dk.save(store, "js")
    out = dk.load(store, "js")
    assert out["j"].tolist() == values
    assert [type(v) for v in out["j"][0].values()] == [float]
    assert [type(v) for v in out["j"][1]["y"]] == [float, float, float, float, int]


def test_json_columns_of_tables_made_with_jsonb_still_load_and_take_rows(store, url):
    df = pd.DataFrame({"k": [1, 2], "j": pd.Series([{"a": 1}, [1, 2]], dtype=object)}).set_index("k")
    df.dk.save(store, "old")
    sql(url, "ALTER TABLE old ALTER COLUMN j TYPE jsonb")
    assert_frame_equal(dk.load(store, "old"), df)
    more = pd.DataFrame({"k": [3], "j": pd.Series([{"b": [1.5]}], dtype=object)}).set_index("k")
    more.dk.save(store, "old", if_exists="append")
    more.assign(j=[{"c": 2}]).dk.save(store, "old", if_exists="upsert")
    out = dk.load(store, "old")
    assert out["j"].tolist() == [{"a": 1}, [1, 2], {"c": 2}]
    assert dk.load(store, "old", order_by="j")["j"].tolist() == [[1, 2], {"a": 1}, {"c": 2}]
