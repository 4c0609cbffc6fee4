"""The backend contract on the file stores on S3 (moto's server, tests/s3_server.py)."""

from __future__ import annotations

import pytest

from dataknobs_pd.testing import BackendContract, ParallelLoadContract
from tests.stores import opened


class TestParquetS3(BackendContract, ParallelLoadContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("parquet-s3", tmp_path)


class TestCSVS3(BackendContract, ParallelLoadContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("csv-s3", tmp_path)


class TestJSONLS3(BackendContract, ParallelLoadContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("jsonl-s3", tmp_path)
