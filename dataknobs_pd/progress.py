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

    def __init__(self, total: int | None, desc: str, enabled: bool | None):
        if enabled is None:
            enabled = (total is None or total >= AUTO_MIN_ROWS) and _interactive()  # None: a stream
        self.bar = None
        self._handle = None  # in Jupyter: the display holding the bar widget, emptied on close
        if enabled:
            from tqdm.auto import tqdm

            options = {"total": total, "desc": desc, "unit": "rows", "unit_scale": True, "leave": False}
            notebook = sys.modules.get("tqdm.notebook")  # imported by tqdm.auto only inside Jupyter
            if notebook is not None and issubclass(tqdm, notebook.tqdm_notebook):
                # tqdm's own leave=False only hides the widget: the notebook would keep an output
                # that reads "model not found" once the kernel is gone. Show it through a display
                # handle instead, and replace it with nothing when the write is done.
                from IPython.display import display

                self.bar = tqdm(display=False, **options)
                self._handle = display(self.bar.container, display_id=True)
            else:
                self.bar = tqdm(**options)

    def update(self, rows: int, failed: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix(failed=failed, refresh=False)
            self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            done = self.bar.total is None or self.bar.n >= self.bar.total
            self.bar.close()  # an unfinished bar (the write raised) stays, red, where tqdm left it
            if self._handle is not None and done:
                self._handle.update({"text/plain": ""}, raw=True)
            self.bar = self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
