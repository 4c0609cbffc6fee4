"""Progress bars for long writes: tqdm.auto (a widget in Jupyter, text in a terminal)."""

from __future__ import annotations

import sys

AUTO_MIN_ROWS = 200_000  # progress=None shows a bar from this many rows on


def _interactive() -> bool:
    try:
        from IPython import get_ipython

        if get_ipython() is not None:
            return True
    except ImportError:
        pass
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """A rows/s bar with the failures so far; does nothing when disabled."""

    def __init__(self, total: int, desc: str, enabled: bool | None):
        if enabled is None:
            enabled = total >= AUTO_MIN_ROWS and _interactive()
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="rows", unit_scale=True, leave=False)

    def update(self, rows: int, failed: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix(failed=failed, refresh=False)
            self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
