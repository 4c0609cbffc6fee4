"""Fixtures shared by every test: one fresh store per backend, the matrix frames."""

from __future__ import annotations

import uuid

import pytest

import dataknobs_pd as dk
from tests import pg, s3_server

# Each backend that joins the contract suite adds one entry: name -> factory(tmp_path) -> URL.
BACKENDS = {
    "memory": lambda tmp: f"memory://test-{uuid.uuid4().hex}",
    "sqlite": lambda tmp: f"sqlite:///{tmp}/store.db",
    "postgresql": pg.new_store_url,  # a new schema in a database of this session (tests/pg.py)
    "parquet": lambda tmp: f"parquet://{tmp}/files",
    "csv": lambda tmp: f"csv://{tmp}/files",
    "jsonl": lambda tmp: f"jsonl://{tmp}/files",
    # (URL, connect options): a fresh prefix on the moto S3 server of this session (tests/s3_server.py)
    "parquet-s3": lambda tmp: s3_server.store_spec("parquet"),
    "csv-s3": lambda tmp: s3_server.store_spec("csv"),
    "jsonl-s3": lambda tmp: s3_server.store_spec("jsonl"),
}


def pytest_sessionfinish(session):
    pg.drop_session_database()


@pytest.fixture(params=sorted(BACKENDS))
def store(request, tmp_path):
    """A new, empty store of each backend."""
    spec = BACKENDS[request.param](tmp_path)
    url, options = spec if isinstance(spec, tuple) else (spec, {})  # a factory may add connect options
    s = dk.connect(url, **options)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path):
    s = dk.connect(f"sqlite:///{tmp_path}/only.db")
    yield s
    s.close()
