"""The backend contract: the tests every store must pass, shipped so that outside backends run them too.

Subclass `BackendContract` in a test module and give it one fixture, `store`, that opens a new,
empty store of your backend (and closes it afterwards); pytest then runs the whole contract on it:

    import pytest
    import dataknobs_pd as dk
    from dataknobs_pd.testing import BackendContract

    class TestMyStore(BackendContract):
        @pytest.fixture
        def store(self, tmp_path):
            with dk.connect(f"mystore://{tmp_path}") as s:
                yield s

The parts (round trips of every dtype, write modes and accounting, errors, hostile names, threads,
dry runs, new columns)
are also available alone. Needs pytest.
"""

from __future__ import annotations

from .changes import DryRunContract, NewColumnsContract
from .edges import EdgeContract
from .errors import ErrorContract
from .frames import dtype_matrix
from .roundtrip import RoundTripContract
from .threads import ThreadContract
from .writes import WriteContract

__all__ = [
    "BackendContract",
    "DryRunContract",
    "EdgeContract",
    "ErrorContract",
    "NewColumnsContract",
    "RoundTripContract",
    "ThreadContract",
    "WriteContract",
    "dtype_matrix",
]


class BackendContract(
    RoundTripContract, WriteContract, ErrorContract, EdgeContract, ThreadContract, DryRunContract, NewColumnsContract
):
    """Every part of the contract; subclasses provide the `store` fixture."""
