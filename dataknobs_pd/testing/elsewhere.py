"""Another process, for the contract's checks that what a store holds is what a new process sees.

One process, started (spawned: nothing inherited but the import path and the environment) on first use and
kept for the rest of the run, runs `elsewhere(fn, *args)`: a module-level `fn`, its arguments and its result
pickled across. It has its own interpreter, its own connections and its own Stores, as a restarted kernel
or another job would; each `fn` opens the store by its URL and closes it before it returns, so nothing of it
stays open there between checks. Keeping the one process saves each check the seconds of importing pandas,
pyarrow, the backends and pandera again. A process that died is replaced on the next use.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

_pool: list[ProcessPoolExecutor] = []
_lock = threading.Lock()


def elsewhere(fn: Callable, *args: Any) -> Any:
    """fn(*args) run in the other process; its result (or its exception, raised here)."""
    with _lock:
        if not _pool:
            _pool.append(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))
        pool = _pool[0]
    try:
        return pool.submit(fn, *args).result()
    except BrokenProcessPool:
        with _lock:
            if _pool and _pool[0] is pool:
                _pool.clear()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
