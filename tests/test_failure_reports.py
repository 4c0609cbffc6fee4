"""A failing test is reported, never the end of the run (tests/conftest.py: the garbage collector waits while
pytest makes a report)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A test that fails while the garbage collector runs Python code that raises (here a gc callback; in real
# runs a finalizer of a connection or a process): pytest's unraisable-exception hook formats its traceback,
# which parses source, inside pytest's own parse of the failing test's (long) file.
FAILING = """
import gc


def _noisy(phase, info):
    if phase == "start":
        x = {"a": 1}
        x["b"] + 1


def test_fails_while_the_collector_reports():
    gc.callbacks.append(_noisy)
    assert 1 + 1 == 3
"""


def test_a_failure_is_reported_when_a_finalizer_raises_during_the_report(tmp_path):
    filler = "".join(f"def _f{i}(a, b):\n    return [a + b, {{'k': (a, b)}}, a * b]\n\n\n" for i in range(2000))
    test = tmp_path / "test_noisy.py"
    test.write_text(FAILING + "\n\n" + filler)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", str(test)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert "INTERNALERROR" not in out, out[-3000:]
    assert "1 failed" in out and "assert (1 + 1) == 3" in out, out[-3000:]
    assert done.returncode == 1
