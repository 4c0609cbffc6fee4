"""The backend contract on the memory store."""

from __future__ import annotations

import pytest

from dataknobs_pd.testing import BackendContract
from dataknobs_pd.testing.changes import DryRunContract, NewColumnsContract
from tests.stores import opened


class TestMemory(BackendContract, DryRunContract, NewColumnsContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("memory", tmp_path)
