"""Run every benchmark (bench_*.py beside this file) in one go; each prints its ratios.
For example:

    python benchmarks/run.py                 # all, default sizes
    python benchmarks/run.py sqlite failures # some
    python benchmarks/run.py --rows 200000   # smaller
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    first = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, flags = argv[:first], argv[first:]  # the scripts' names, then the flags passed to each (with values)
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    status = 0
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        status |= subprocess.call([sys.executable, str(script), *flags], cwd=HERE)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
