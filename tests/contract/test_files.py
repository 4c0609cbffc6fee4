"""The backend contract on the file stores on local disk."""

from __future__ import annotations

import pytest

from dataknobs_pd.testing import BackendContract
from tests.stores import opened


class TestParquet(BackendContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("parquet", tmp_path)


class TestCSV(BackendContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("csv", tmp_path)


class TestJSONL(BackendContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("jsonl", tmp_path)
