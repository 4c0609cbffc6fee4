"""Fixtures shared by the tests: one fresh store per backend, and the test database's clean-up."""

from __future__ import annotations

import pytest

import dataknobs_pd as dk
from tests import pg
from tests.stores import BACKENDS, opened


def pytest_sessionfinish(session):
    pg.drop_session_database()


@pytest.fixture(params=sorted(BACKENDS))
def store(request, tmp_path):
    """A new, empty store of each backend (the contract classes in tests/contract/ bring their own)."""
    yield from opened(request.param, tmp_path)


@pytest.fixture
def sqlite_store(tmp_path):
    s = dk.connect(f"sqlite:///{tmp_path}/only.db")
    yield s
    s.close()
