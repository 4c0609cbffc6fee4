"""The backend contract on PostgreSQL (the server of tests/pg.py)."""

from __future__ import annotations

import pytest

from dataknobs_pd.testing import BackendContract, ParallelLoadContract
from tests.stores import opened


class TestPostgreSQL(BackendContract, ParallelLoadContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("postgresql", tmp_path)
