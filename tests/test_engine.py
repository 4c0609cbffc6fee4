"""The batch engine against a deliberately faulty backend: exact accounting, savepoint rollback of a
chunk that failed half-way, k*log2(n) writes for k bad rows; and an outside backend registered
through the entry-point group running the shipped contract suite."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pandas as pd
import pytest

import dataknobs_pd as dk
from dataknobs_pd.backends.memory import MemoryBackend
from dataknobs_pd.errors import WriteError


class FaultyBackend(MemoryBackend):
    """Memory store that refuses any chunk holding a value of `v` in BAD, after writing it half-way."""

    BAD: set = set()
    writes = 0

    def write(self, table, data, schema, mode):
        if table == "t":  # the writes of the table itself (not of its batch log)
            type(self).writes += 1
        existed = super().write(table, data, schema, mode)  # written... then refused: the savepoint must undo it
        bad = set(data.column("v").to_pylist()) & self.BAD if "v" in data.column_names else set()
        if bad:
            raise WriteError(f"refused v={sorted(bad)[0]}", "CheckConstraint", "FAULTY")
        return existed


@pytest.fixture
def faulty(monkeypatch):
    from dataknobs_pd import backends

    monkeypatch.setitem(backends.BUILTIN, "faulty", (f"{__name__}:FaultyBackend", None, "test"))
    FaultyBackend.writes = 0
    with dk.connect(f"faulty://{uuid.uuid4().hex}") as s:  # a new memory space each test
        yield s


@pytest.mark.parametrize("bad_rows", [[0], [511, 512], [3, 700, 1023], list(range(0, 1024, 128))])
def test_only_the_refused_rows_fail_in_about_k_log_n_writes(faulty, bad_rows):
    n = 1024
    df = pd.DataFrame({"id": np.arange(n), "v": np.arange(n) * 10})
    FaultyBackend.BAD = {int(df["v"][i]) for i in bad_rows}
    res = df.dk.save(faulty, "t", chunksize=n)
    assert res.failed == len(bad_rows) and res.succeeded == n - len(bad_rows)
    assert res.failures["row"].tolist() == bad_rows
    assert set(res.failures["error"]) == {"CheckConstraint"} and set(res.failures["code"]) == {"FAULTY"}
    assert set(res.failures["stage"]) == {"write"}
    out = dk.load(faulty, "t")
    assert out["id"].tolist() == sorted(set(range(n)) - set(bad_rows))  # nothing of a refused half stayed
    k = len(bad_rows)
    assert FaultyBackend.writes <= 1 + 2 * k * math.ceil(math.log2(n)), FaultyBackend.writes


def test_failures_across_chunks_are_counted_once(faulty):
    df = pd.DataFrame({"id": np.arange(100), "v": np.arange(100)})
    FaultyBackend.BAD = {9, 10, 11, 55}
    res = df.dk.save(faulty, "t", chunksize=10)
    assert res.failures["row"].tolist() == [9, 10, 11, 55]
    assert res.succeeded + res.failed == res.total == 100
    assert len(dk.load(faulty, "t")) == 96


def test_raise_writes_nothing_even_after_good_chunks(faulty):
    pd.DataFrame({"id": [1000], "v": [-1]}).dk.save(faulty, "t")
    df = pd.DataFrame({"id": np.arange(50), "v": np.arange(50)})
    FaultyBackend.BAD = {49}
    with pytest.raises(dk.BatchError) as info:
        df.dk.save(faulty, "t", if_exists="append", errors="raise", chunksize=7)
    assert info.value.result.failures["row"].tolist() == [49]
    assert dk.load(faulty, "t")["id"].tolist() == [1000]


def test_every_row_refused(faulty):
    df = pd.DataFrame({"id": np.arange(16), "v": np.arange(16)})
    FaultyBackend.BAD = set(range(16))
    res = df.dk.save(faulty, "t")
    assert res.failed == 16 and res.succeeded == 0
    assert dk.load(faulty, "t").empty


def test_outside_backend_from_an_entry_point_runs_the_contract(tmp_path):
    pkg = tmp_path / "toystore"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent('''
        from dataknobs_pd.backends.memory import MemoryBackend

        class ToyBackend(MemoryBackend):
            """An outside store: the memory store under another scheme."""
    ''')
    )
    info = tmp_path / "toystore-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toystore\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dataknobs_pd.backends]\ntoy = toystore:ToyBackend\n")
    (tmp_path / "test_toy.py").write_text(
        textwrap.dedent("""
        import uuid
        import pytest
        from hypothesis import settings
        import dataknobs_pd as dk
        from dataknobs_pd.backends import registry
        from dataknobs_pd.testing import BackendContract
        # the same examples every run, as the suite's own profile (tests/conftest.py) draws them
        settings.register_profile("toy", max_examples=50, derandomize=True, database=None, deadline=None)
        settings.load_profile("toy")

        def test_registered():
            assert registry()["toy"][0] == "toystore:ToyBackend"
            assert "toystore" in registry()["toy"][2]

        class TestToy(BackendContract):
            @pytest.fixture
            def store(self):
                with dk.connect(f"toy://{uuid.uuid4().hex}") as s:
                    yield s
    """)
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", str(tmp_path / "test_toy.py")],
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    passed = int(out.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed > 100  # the whole contract ran on the outside backend


@pytest.mark.parametrize(
    "values, null, dup",
    [
        (np.arange(5), [], []),  # strictly increasing: the fast path, nothing to report
        (np.array([1, 2, 2, 3], dtype="uint16"), [], [2]),  # sorted, not strictly: a repeat
        (np.array([5, 1, 5, 0]), [], [2]),  # unsorted
        (pd.array([1, None, 2, 2], dtype="Int64"), [1], [3]),  # nullable: never the fast path
        (np.array([7]), [], []),
    ],
)
def test_invalid_rows_finds_null_and_repeated_keys(values, null, dup):
    from dataknobs_pd.keys import invalid_rows

    got = invalid_rows(pd.DataFrame({"id": values}))
    assert [g.tolist() for g in got] == [null, dup]
