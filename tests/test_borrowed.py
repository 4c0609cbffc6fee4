"""Connections the user holds, passed as the store: every form straight to save/load, failed calls,
the user's own open transaction, the connection outliving the store, and what is not accepted."""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import adbc_driver_manager.dbapi
import adbc_driver_postgresql.dbapi
import adbc_driver_sqlite.dbapi
import duckdb
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

import dataknobs_pd as dk
from dataknobs_pd import borrowed
from dataknobs_pd.urls import mask
from tests import pg

FRAME = pd.DataFrame({"id": [1, 2, 3], "v": ["a", "b", "c"]})


def _cursor_rows(conn, sql: str) -> list:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return cur.fetchall()
    finally:
        cur.close()


def _sa_rows(engine, sql: str) -> list:
    with engine.connect() as c:
        return c.execute(sa.text(sql)).fetchall()


def _psycopg_rows(conn, sql: str) -> list:
    return conn.execute(sql).fetchall()


def _pg_changed(conn) -> bool:
    """Whether the user's transaction on an ADBC PostgreSQL connection holds changes (or has failed)."""
    try:
        return _cursor_rows(conn, "SELECT pg_current_xact_id_if_assigned() IS NOT NULL")[0][0]
    except adbc_driver_postgresql.dbapi.Error:
        return True


@dataclass
class Form:
    """A connection as a user holds it: how to open, query and close it, and see its transaction."""

    name: str
    open: Callable  # tmp_path -> (conn, close)
    rows: Callable  # (conn, sql) -> rows, through the user's connection
    in_transaction: Callable | None = None  # conn -> whether the user's connection is inside a transaction
    change: Callable | None = None  # conn -> an uncommitted insert of the user's into t (id 9)
    commit: Callable | None = None

    def __str__(self):
        return self.name


def _sqlite3(path):
    def open_(tmp_path):
        conn = sqlite3.connect(path(tmp_path))
        return conn, conn.close

    return open_


def _engine(url):
    def open_(tmp_path):
        engine = sa.create_engine(url(tmp_path))
        return engine, engine.dispose

    return open_


def _sa_connection(url):
    def open_(tmp_path):
        engine = sa.create_engine(url(tmp_path))
        conn = engine.connect()
        return conn, lambda: (conn.close(), engine.dispose())

    return open_


def _closing(connect):
    def open_(tmp_path):
        conn = connect(tmp_path)
        return conn, conn.close

    return open_


def _pg_sa(tmp_path):
    return pg.new_store_url().replace("postgresql://", "postgresql+psycopg://", 1)


def _sa_dbapi(conn):
    return conn.connection.dbapi_connection


INSERT = "INSERT INTO t (id, v) VALUES (9, 'mine')"

FORMS = [
    Form(
        "sqlite3-file",
        _sqlite3(lambda tmp: tmp / "user.db"),
        lambda c, q: c.execute(q).fetchall(),
        lambda c: c.in_transaction,
        lambda c: c.execute(INSERT),
        lambda c: c.commit(),
    ),
    Form(
        "sqlite3-memory",
        _sqlite3(lambda tmp: ":memory:"),
        lambda c, q: c.execute(q).fetchall(),
        lambda c: c.in_transaction,
        lambda c: c.execute(INSERT),
        lambda c: c.commit(),
    ),
    Form("sqlalchemy-engine-sqlite-file", _engine(lambda tmp: f"sqlite:///{tmp}/user.db"), _sa_rows),
    Form("sqlalchemy-engine-sqlite-memory", _engine(lambda tmp: "sqlite://"), _sa_rows),
    Form(
        "sqlalchemy-connection-sqlite",
        _sa_connection(lambda tmp: f"sqlite:///{tmp}/user.db"),
        lambda c, q: c.execute(sa.text(q)).fetchall(),
        lambda c: _sa_dbapi(c).in_transaction,
        lambda c: c.execute(sa.text(INSERT)),
        lambda c: c.commit(),
    ),
    Form(
        "psycopg",
        _closing(lambda tmp: psycopg.connect(pg.new_store_url())),
        _psycopg_rows,
        lambda c: c.info.transaction_status != 0,
        lambda c: c.execute(INSERT),
        lambda c: c.commit(),
    ),
    Form(
        "adbc-postgresql",
        _closing(lambda tmp: adbc_driver_postgresql.dbapi.connect(pg.new_store_url())),
        _cursor_rows,
        _pg_changed,
        lambda c: _cursor_rows(c, INSERT),
        lambda c: c.commit(),
    ),
    Form(
        "adbc-postgresql-autocommit",
        _closing(lambda tmp: adbc_driver_postgresql.dbapi.connect(pg.new_store_url(), autocommit=True)),
        _cursor_rows,
        _pg_changed,
    ),
    Form("sqlalchemy-engine-postgresql", _engine(_pg_sa), _sa_rows),
    Form(
        "sqlalchemy-connection-postgresql",
        _sa_connection(_pg_sa),
        lambda c, q: c.execute(sa.text(q)).fetchall(),
        lambda c: _sa_dbapi(c).info.transaction_status != 0,
        lambda c: c.execute(sa.text(INSERT)),
        lambda c: c.commit(),
    ),
    Form(
        "duckdb-file",
        _closing(lambda tmp: duckdb.connect(str(tmp / "user.duckdb"))),
        lambda c, q: c.execute(q).fetchall(),
    ),
    Form("duckdb-memory", _closing(lambda tmp: duckdb.connect(":memory:")), lambda c, q: c.execute(q).fetchall()),
    Form("sqlalchemy-engine-duckdb", _engine(lambda tmp: "duckdb:///:memory:"), _sa_rows),
]


@pytest.fixture(params=FORMS, ids=str)
def held(request, tmp_path):
    """(form, the user's connection); the user closes it at the end."""
    form = request.param
    conn, close = form.open(tmp_path)
    yield form, conn
    close()


def _count(form, conn) -> int:
    n = form.rows(conn, "SELECT COUNT(*) FROM t")[0][0]
    if isinstance(conn, (psycopg.Connection, sa.Connection, adbc_driver_manager.dbapi.Connection)):
        conn.rollback()  # the driver began a transaction for the query: its snapshot would stay
    return n


def test_the_connection_itself_is_the_store(held):
    form, conn = held
    assert FRAME.dk.save(conn, "t").ok
    pd.testing.assert_frame_equal(dk.load(conn, "t"), FRAME)
    assert _count(form, conn) == 3  # the user's connection sees it
    FRAME.assign(v=["x", "y", "z"]).iloc[:2].dk.update_batch(conn, "t")
    assert dk.delete(FRAME.iloc[[2]], conn, "t").ok
    assert list(dk.load(conn, "t", order_by="id")["v"]) == ["x", "y"]
    store = dk.connect(conn)
    assert store is dk.connect(conn)  # one store per connection while it lives
    assert store.tables() == ["t"]
    assert "://" in store.url and store.url.split("://")[0] in ("sqlite", "postgresql", "duckdb")


def test_a_failed_call_leaves_the_connection_usable_and_idle(held):
    form, conn = held
    FRAME.dk.save(conn, "t")
    with pytest.raises(dk.BatchError):
        FRAME.dk.save(conn, "t", if_exists="append", errors="raise")  # every key is there already
    with pytest.raises(dk.TableNotFoundError):
        dk.load(conn, "no_such_table")
    with pytest.raises(dk.InvalidArgumentError):
        dk.load(conn, "t", where=[("nope", "==", 1)])
    if form.in_transaction is not None:
        assert not form.in_transaction(conn)
    assert _count(form, conn) == 3
    assert FRAME.assign(id=[4, 5, 6]).dk.save(conn, "t", if_exists="append").ok
    assert _count(form, conn) == 6


@pytest.mark.parametrize("form", [f for f in FORMS if f.change], ids=str)
def test_uncommitted_changes_of_the_user_are_refused_and_kept(form, tmp_path):
    conn, close = form.open(tmp_path)
    try:
        FRAME.dk.save(conn, "t")
        form.change(conn)
        with pytest.raises(dk.InvalidArgumentError, match="commit or roll"):
            FRAME.dk.save(conn, "t", if_exists="upsert")
        assert form.in_transaction(conn)  # still the user's, still open
        form.commit(conn)
        assert _count(form, conn) == 4
        assert FRAME.dk.save(conn, "t", if_exists="upsert").ok  # committed: writes go again
    finally:
        close()


def test_the_connection_outlives_its_stores(held):
    form, conn = held
    store = dk.connect(conn)
    FRAME.dk.save(store, "t")
    store.close()
    assert _count(form, conn) == 3
    with pytest.raises(dk.InvalidArgumentError, match="was closed"):
        dk.load(store, "t")
    assert len(dk.load(dk.connect(conn), "t")) == 3  # a new store over the same connection
    store = dk.connect(conn)
    del store
    gc.collect()
    assert id(conn) not in borrowed._STORES  # what the package opened is released with the store
    assert _count(form, conn) == 3
    assert len(dk.load(conn, "t")) == 3
    chunks = dk.load(conn, "t", chunksize=2)  # reads on after the call's store is gone
    gc.collect()
    assert [len(c) for c in chunks] == [2, 1]
    assert _count(form, conn) == 3


def test_the_users_settings_stay():
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.row_factory, conn.text_factory = _as_dict, bytes
    FRAME.dk.save(conn, "t")
    FRAME.assign(v="new").dk.save(conn, "t", if_exists="upsert")
    pd.testing.assert_frame_equal(dk.load(conn, "t"), FRAME.assign(v="new"))
    assert conn.isolation_level == ""  # the default, back after each call
    assert (conn.row_factory, conn.text_factory) == (_as_dict, bytes)
    assert conn.execute("PRAGMA foreign_keys").fetchone() == {"foreign_keys": 0}
    assert conn.execute("SELECT name FROM sqlite_temp_master").fetchall() == []  # no stage left behind
    assert conn.execute("SELECT v FROM t WHERE id = 1").fetchone() == {"v": b"new"}
    conn.execute(INSERT)  # the user's own transaction, as sqlite3 begins it
    assert conn.in_transaction
    conn.rollback()
    assert conn.execute("SELECT COUNT(*) AS n FROM t").fetchone() == {"n": 3}
    conn.close()


def _as_dict(cursor, row):
    return {d[0]: v for d, v in zip(cursor.description, row)}


def test_what_is_not_a_store_is_named():
    with pytest.raises(dk.InvalidArgumentError, match=r"sqlite3\.Connection.*SQLAlchemy.*ADBC.*psycopg.*duckdb"):
        dk.connect(object())
    with pytest.raises(dk.InvalidArgumentError, match="builtins.int is not a store"):
        FRAME.dk.save(42, "t")
    conn = sqlite3.connect(":memory:")
    with pytest.raises(dk.InvalidArgumentError, match="options"):
        dk.connect(conn, timeout=5)
    conn.close()
    with pytest.raises(dk.StorageError, match="closed"):
        dk.load(conn, "t")


def test_an_adbc_sqlite_connection_is_refused_saying_why(tmp_path):
    """ADBC's driver carries its own SQLite: opening its file through sqlite3 too would put two copies of
    SQLite on one file in this process."""
    adbc = adbc_driver_sqlite.dbapi.connect(str(tmp_path / "user.db"))
    with pytest.raises(dk.InvalidArgumentError, match=r"own copy of SQLite.*sqlite3\.Connection"):
        dk.connect(adbc)
    with pytest.raises(dk.InvalidArgumentError, match="own copy of SQLite"):
        FRAME.dk.save(adbc, "t")
    adbc.close()


def test_a_psycopg_connections_parameters_make_the_url_and_its_password_is_masked():
    url = borrowed._pg_url({"user": "u", "host": "h", "port": "5", "dbname": "d", "options": "-cx=1"}, "s3cr/t@x")
    assert url == "postgresql://u:s3cr%2Ft%40x@h:5/d?options=-cx%3D1"
    assert mask(url) == "postgresql://u:***@h:5/d?options=-cx%3D1"
    assert (
        borrowed._pg_url({"host": "/run/pg", "port": "5", "dbname": "d"}, None)
        == "postgresql:///d?host=%2Frun%2Fpg&port=5"
    )


def test_a_dask_load_of_a_lent_in_memory_database_reads_that_database():
    import dataknobs_pd.dask as dkd

    conn = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        df = pd.DataFrame({"id": range(100), "v": [i * 2.0 for i in range(100)]})
        df.dk.save(conn, "t")
        back = dkd.load(conn, "t", npartitions=3).compute()
        pd.testing.assert_frame_equal(back.sort_values("id").reset_index(drop=True), df)
    finally:
        conn.close()
