"""The backend contract on stores over connections the user holds (dataknobs_pd.borrowed).

Each fixture opens the user's connection, hands it to dk.connect, and closes the connection
itself at the end (the package never does). The whole contract runs on each form.
"""

from __future__ import annotations

import sqlite3

import adbc_driver_postgresql.dbapi
import duckdb
import psycopg
import pytest
import sqlalchemy as sa

import dataknobs_pd as dk
from dataknobs_pd.testing import BackendContract
from tests import pg


def borrowed(conn, close):
    """A fixture's body: the Store over the user's `conn`; closed afterwards, then `close()` by the user."""
    store = dk.connect(conn)
    yield store
    store.close()
    close()


class TestSQLite3File(BackendContract):
    @pytest.fixture
    def store(self, tmp_path):
        conn = sqlite3.connect(tmp_path / "user.db", check_same_thread=False)  # the contract shares it with threads
        yield from borrowed(conn, conn.close)


class TestSQLite3InMemory(BackendContract):
    @pytest.fixture
    def store(self):
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        yield from borrowed(conn, conn.close)


class TestADBCPostgreSQL(BackendContract):
    @pytest.fixture
    def store(self):
        conn = adbc_driver_postgresql.dbapi.connect(pg.new_store_url())
        yield from borrowed(conn, conn.close)


class TestPsycopg(BackendContract):
    @pytest.fixture
    def store(self):
        conn = psycopg.connect(pg.new_store_url())
        yield from borrowed(conn, conn.close)


class TestDuckDBFile(BackendContract):
    @pytest.fixture
    def store(self, tmp_path):
        conn = duckdb.connect(str(tmp_path / "user.duckdb"))
        yield from borrowed(conn, conn.close)


class TestDuckDBInMemory(BackendContract):
    @pytest.fixture
    def store(self):
        conn = duckdb.connect(":memory:")
        yield from borrowed(conn, conn.close)


class TestSQLAlchemyEngineSQLite(BackendContract):
    @pytest.fixture
    def store(self, tmp_path):
        engine = sa.create_engine(f"sqlite:///{tmp_path}/user.db")
        yield from borrowed(engine, engine.dispose)


class TestSQLAlchemyConnectionSQLite(BackendContract):
    @pytest.fixture
    def store(self, tmp_path):
        engine = sa.create_engine(f"sqlite:///{tmp_path}/user.db")
        conn = engine.connect()
        yield from borrowed(conn, lambda: (conn.close(), engine.dispose()))


class TestSQLAlchemyEnginePostgreSQL(BackendContract):
    @pytest.fixture
    def store(self):
        engine = sa.create_engine(pg.new_store_url().replace("postgresql://", "postgresql+psycopg://", 1))
        yield from borrowed(engine, engine.dispose)
