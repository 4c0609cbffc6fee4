"""Fixtures shared by every test: one fresh store per backend, the matrix frames."""

from __future__ import annotations

import uuid

import pytest

import dataknobs_pd as dk

# Each backend that joins the contract suite adds one entry: name -> factory(tmp_path) -> URL.
BACKENDS = {
    "memory": lambda tmp: f"memory://test-{uuid.uuid4().hex}",
    "sqlite": lambda tmp: f"sqlite:///{tmp}/store.db",
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request, tmp_path):
    """A new, empty store of each backend."""
    s = dk.connect(BACKENDS[request.param](tmp_path))
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path):
    s = dk.connect(f"sqlite:///{tmp_path}/only.db")
    yield s
    s.close()
