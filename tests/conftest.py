"""Fixtures shared by the tests: one fresh store per backend, and the test database's clean-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

import dataknobs_pd as dk
from tests import pg
from tests.stores import BACKENDS, opened

# Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (default "ci"). "ci": derandomized, no examples
# database, few enough examples that the backend contract's property (PropertyContract) adds seconds per
# store (and at most its property_seconds), and no shrinking (up to 5 minutes per failing test, on each of
# some 25 stores; the failing example is small and shown whole). Derandomized means the same examples for
# the same code and the same modules imported: hypothesis also draws constants it finds in the local
# modules loaded so far. "long": many more, in random order, shrunk, failures kept under .hypothesis/
# (git ignores it) and tried first on the next run:
#     HYPOTHESIS_PROFILE=long pytest tests/contract -k property
settings.register_profile(
    "ci",
    max_examples=50,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
)
settings.register_profile(
    "long",
    max_examples=600,
    deadline=None,
    database=DirectoryBasedExampleDatabase(Path(__file__).resolve().parent.parent / ".hypothesis" / "examples"),
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
