"""The backend contract on stores over connections the user holds (dataknobs_pd.borrowed).

Each fixture opens the user's connection, hands it to dk.connect, and closes the connection
itself at the end (the package never does). The whole contract runs on the two forms the store works
through the user's own connection (a sqlite3 file, an ADBC PostgreSQL connection, taken in turns). The
other forms become a store the contract runs whole elsewhere (psycopg and a SQLAlchemy engine: the same
database through connections of the store's own; duckdb: a cursor of the user's; the others: the sqlite3
connection inside them): on them runs what meets the handing over (round trips, writes and their
transactions, threads sharing the store).
"""

from __future__ import annotations

import sqlite3

import adbc_driver_postgresql.dbapi
import duckdb
import psycopg
import pytest
import sqlalchemy as sa

import dataknobs_pd as dk
from dataknobs_pd.testing import BackendContract, RoundTripContract, ThreadContract, WriteContract
from tests import pg


class HandedOver(RoundTripContract, WriteContract, ThreadContract):
    """The contract's parts that meet a connection handed over to a store."""


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


class TestSQLite3InMemory(HandedOver):
    @pytest.fixture
    def store(self):
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        yield from borrowed(conn, conn.close)


class TestADBCPostgreSQL(BackendContract):
    @pytest.fixture
    def store(self):
        conn = adbc_driver_postgresql.dbapi.connect(pg.new_store_url())
        yield from borrowed(conn, conn.close)


class TestPsycopg(HandedOver):
    @pytest.fixture
    def store(self):
        conn = psycopg.connect(pg.new_store_url())
        yield from borrowed(conn, conn.close)


class TestDuckDBFile(HandedOver):
    @pytest.fixture
    def store(self, tmp_path):
        conn = duckdb.connect(str(tmp_path / "user.duckdb"))
        yield from borrowed(conn, conn.close)


class TestDuckDBInMemory(HandedOver):
    @pytest.fixture
    def store(self):
        conn = duckdb.connect(":memory:")
        yield from borrowed(conn, conn.close)


class TestSQLAlchemyEngineSQLite(HandedOver):
    @pytest.fixture
    def store(self, tmp_path):
        engine = sa.create_engine(f"sqlite:///{tmp_path}/user.db")
        yield from borrowed(engine, engine.dispose)


class TestSQLAlchemyConnectionSQLite(HandedOver):
    @pytest.fixture
    def store(self, tmp_path):
        engine = sa.create_engine(f"sqlite:///{tmp_path}/user.db")
        conn = engine.connect()
        yield from borrowed(conn, lambda: (conn.close(), engine.dispose()))


class TestSQLAlchemyEnginePostgreSQL(HandedOver):
    @pytest.fixture
    def store(self):
        engine = sa.create_engine(pg.new_store_url().replace("postgresql://", "postgresql+psycopg://", 1))
        yield from borrowed(engine, engine.dispose)
