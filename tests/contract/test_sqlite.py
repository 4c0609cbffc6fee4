"""The backend contract on SQLite."""

from __future__ import annotations

import pytest

from dataknobs_pd.testing import BackendContract
from tests.stores import opened


class TestSQLite(BackendContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("sqlite", tmp_path)
