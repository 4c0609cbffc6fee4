"""The backend contract on Delta Lake tables, on local disk and on S3 (moto's server, tests/s3_server.py)."""

from __future__ import annotations

import pytest

from dataknobs_pd.testing import BackendContract, HistoryContract, ParallelLoadContract
from tests.stores import opened


class TestDelta(BackendContract, ParallelLoadContract, HistoryContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("delta", tmp_path)


class TestDeltaS3(BackendContract, ParallelLoadContract, HistoryContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("delta-s3", tmp_path)
