"""The backend contract on PostgreSQL (the server of tests/pg.py)."""

from __future__ import annotations

import pytest

from dataknobs_pd.testing import BackendContract
from dataknobs_pd.testing.changes import DryRunContract, NewColumnsContract
from tests.stores import opened


class TestPostgreSQL(BackendContract, DryRunContract, NewColumnsContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("postgresql", tmp_path)
