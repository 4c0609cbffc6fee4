"""How the tests open a new, empty store of each backend here (the contract modules and the `store` fixture)."""

from __future__ import annotations

import uuid

import dataknobs_pd as dk
from tests import pg, s3_server

# name -> factory(tmp_path) -> URL, or (URL, connect options)
BACKENDS = {
    "memory": lambda tmp: f"memory://test-{uuid.uuid4().hex}",
    "sqlite": lambda tmp: f"sqlite:///{tmp}/store.db",
    "postgresql": pg.new_store_url,  # a new schema in a database of this session (tests/pg.py)
    "parquet": lambda tmp: f"parquet://{tmp}/files",
    "csv": lambda tmp: f"csv://{tmp}/files",
    "jsonl": lambda tmp: f"jsonl://{tmp}/files",
    "duckdb": lambda tmp: f"duckdb:///{tmp}/store.duckdb",
    "duckdb-memory": lambda tmp: "duckdb:///:memory:",  # a new database each connect (closed after each test)
    # a fresh prefix on the moto S3 server of this session (tests/s3_server.py)
    "parquet-s3": lambda tmp: s3_server.store_spec("parquet"),
    "csv-s3": lambda tmp: s3_server.store_spec("csv"),
    "jsonl-s3": lambda tmp: s3_server.store_spec("jsonl"),
    "delta": lambda tmp: f"delta://{tmp}/delta",
    "delta-s3": lambda tmp: s3_server.store_spec("delta"),
}


def opened(name: str, tmp_path):
    """Yield a new, empty store of backend `name`; closed afterwards (a fixture's body)."""
    spec = BACKENDS[name](tmp_path)
    url, options = spec if isinstance(spec, tuple) else (spec, {})
    store = dk.connect(url, **options)
    yield store
    store.close()
