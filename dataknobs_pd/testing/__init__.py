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
dry runs, new columns, keys, quarantine and undo, the capabilities' own contracts, values into columns of other types, random frames written into random column types)
are also available alone. Needs pytest (and hypothesis for PropertyContract).
"""

from __future__ import annotations

import pytest

# The contract's asserts are rewritten by pytest like a test module's: explained when they fail, and kept
# under `python -O` (make test runs the conversion contract so once). Before the parts are imported.
_PARTS = (
    "capabilities",
    "changes",
    "conversions",
    "edges",
    "errors",
    "keys",
    "properties",
    "quarantine",
    "roundtrip",
    "threads",
    "writes",
)
pytest.register_assert_rewrite(*(f"{__name__}.{part}" for part in _PARTS))

from ..backends.capabilities import History, ParallelLoad
from .capabilities import HistoryContract, ParallelLoadContract
from .changes import DryRunContract, NewColumnsContract
from .checks import ChecksContract
from .conversions import ConversionContract
from .edges import EdgeContract
from .errors import ErrorContract
from .frames import dtype_matrix
from .keys import KeyContract
from .properties import PropertyContract
from .quarantine import QuarantineContract
from .roundtrip import RoundTripContract
from .threads import ThreadContract
from .writes import WriteContract

__all__ = [
    "BackendContract",
    "ChecksContract",
    "ConversionContract",
    "DryRunContract",
    "EdgeContract",
    "ErrorContract",
    "HistoryContract",
    "KeyContract",
    "NewColumnsContract",
    "ParallelLoadContract",
    "PropertyContract",
    "QuarantineContract",
    "RoundTripContract",
    "ThreadContract",
    "WriteContract",
    "dtype_matrix",
]


class BackendContract(
    RoundTripContract,
    WriteContract,
    ErrorContract,
    KeyContract,
    EdgeContract,
    ThreadContract,
    DryRunContract,
    NewColumnsContract,
    ConversionContract,
    PropertyContract,
    QuarantineContract,
    ChecksContract,
):
    """Every part of the core contract; subclasses provide the `store` fixture. A store with a capability
    (backends/capabilities.py) runs its contract too: `class TestMine(BackendContract, HistoryContract)`."""

    def test_each_capability_of_the_store_runs_its_contract(self, store):
        had = {
            ParallelLoad: isinstance(store.backend, ParallelLoad) and store.address is not None,
            History: isinstance(store.backend, History),
        }
        contracts = {ParallelLoad: ParallelLoadContract, History: HistoryContract}
        for capability, has in had.items():
            contract = contracts[capability]
            assert not has or isinstance(self, contract), (
                f"{type(store.backend).__name__} has {capability.__name__}: run {contract.__name__} too"
            )
