"""Fixtures shared by the tests: one fresh store per backend, and the test database's clean-up."""

from __future__ import annotations

import contextlib
import gc
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


_IGNORE_TIMEZONE = os.environ.get("PYARROW_IGNORE_TIMEZONE")


def pytest_collection_finish(session):
    """Test modules that import pandera (for validate=) set PYARROW_IGNORE_TIMEZONE=1 as they are collected,
    which changes how pyarrow reads aware datetimes in the whole process: the tests run in the environment
    they were started in (tests/test_zones.py runs its filters both ways)."""
    if _IGNORE_TIMEZONE is None:
        os.environ.pop("PYARROW_IGNORE_TIMEZONE", None)


def pytest_sessionfinish(session):
    pg.drop_session_database()


# A failure is reported, never the end of the run. To show a failing line pytest parses the whole source
# file around it (ast.parse). On CPython 3.11 (3.11.7 here; CPython's gh-106905) the AST builder keeps its
# recursion count in one place for the whole interpreter, so a second ast.parse that starts while the first
# one is building its tree spoils the first: "SystemError: AST constructor recursion depth mismatch", raised
# out of pytest's reporting as an INTERNALERROR that ends the run with no summary. The second parse comes
# from the garbage collector, which runs in the middle of the first one's allocations: a finalizer (__del__,
# a weakref callback, a gc callback) that raises is handed to pytest's unraisable-exception hook, which
# formats its traceback with the traceback module, and that parses the failing line to place its carets.
# So the collector waits while a report is made: nothing else runs Python code in the middle of a parse.
@contextlib.contextmanager
def _collector_paused():
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    with _collector_paused():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    with _collector_paused():
        return (yield)


@pytest.fixture(params=sorted(BACKENDS))
def store(request, tmp_path):
    """A new, empty store of each backend (the contract classes in tests/contract/ bring their own)."""
    yield from opened(request.param, tmp_path)


@pytest.fixture
def sqlite_store(tmp_path):
    s = dk.connect(f"sqlite:///{tmp_path}/only.db")
    yield s
    s.close()
