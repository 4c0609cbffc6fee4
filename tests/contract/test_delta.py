"""The backend contract on Delta Lake tables, on local disk and on S3 (moto's server, tests/s3_server.py).

On local disk Delta runs the whole contract. On S3 it runs what meets the object store: round trips,
writes by key (each a commit put if absent), the quarantine (its companions), history and the parallel
load; what does not depend on where the files are (conversions, errors, edges, checks) runs on local disk."""

from __future__ import annotations

import pytest

from dataknobs_pd.testing import (
    BackendContract,
    HistoryContract,
    KeyContract,
    ParallelLoadContract,
    QuarantineContract,
    RoundTripContract,
    WriteContract,
)
from tests.stores import opened


class TestDelta(BackendContract, ParallelLoadContract, HistoryContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("delta", tmp_path)


class TestDeltaS3(
    RoundTripContract, WriteContract, KeyContract, QuarantineContract, ParallelLoadContract, HistoryContract
):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("delta-s3", tmp_path)
