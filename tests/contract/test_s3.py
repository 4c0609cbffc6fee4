"""The backend contract on the file stores on S3 (moto's server, tests/s3_server.py).

Parquet on S3 runs the whole contract. CSV and JSON lines differ from it only in how a part is encoded,
which the whole contract checks on local disk (test_files.py); on S3 they run the contract's round trips,
writes by key and the quarantine, where a format meets the object store (parts, manifests, companions),
and leave the rest to those two runs."""

from __future__ import annotations

import pytest

from dataknobs_pd.testing import (
    BackendContract,
    KeyContract,
    ParallelLoadContract,
    QuarantineContract,
    RoundTripContract,
    WriteContract,
)
from tests.stores import opened


class TestParquetS3(BackendContract, ParallelLoadContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("parquet-s3", tmp_path)


class TestCSVS3(RoundTripContract, WriteContract, KeyContract, QuarantineContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("csv-s3", tmp_path)


class TestJSONLS3(RoundTripContract, WriteContract, KeyContract, QuarantineContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("jsonl-s3", tmp_path)
