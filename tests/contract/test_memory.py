"""The backend contract on the memory store."""

from __future__ import annotations

import pytest

from dataknobs_pd.testing import BackendContract
from tests.stores import opened


class TestMemory(BackendContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield from opened("memory", tmp_path)
