"""The backend contract on DuckDB: a file, and an in-memory database."""

from __future__ import annotations

import pytest

from dataknobs_pd.testing import BackendContract
from tests.stores import opened


class TestDuckDB(BackendContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("duckdb", tmp_path)


class TestDuckDBInMemory(BackendContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("duckdb-memory", tmp_path)
