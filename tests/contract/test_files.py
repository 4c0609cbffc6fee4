"""The backend contract on the file stores on local disk."""

from __future__ import annotations

import pytest

from dataknobs_pd.testing import BackendContract, ParallelLoadContract
from tests.stores import opened


class TestParquet(BackendContract, ParallelLoadContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("parquet", tmp_path)


class TestCSV(BackendContract, ParallelLoadContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("csv", tmp_path)


class TestJSONL(BackendContract, ParallelLoadContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("jsonl", tmp_path)
