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
dry runs, new columns, keys, values into columns of other types, random frames written into random column types)
are also available alone. Needs pytest (and hypothesis for PropertyContract).
"""

from __future__ import annotations

import pytest

# The contract's asserts are rewritten by pytest like a test module's: explained when they fail, and kept
# under `python -O` (make test runs the conversion contract so once). Before the parts are imported.
_PARTS = ("changes", "conversions", "edges", "errors", "keys", "properties", "roundtrip", "threads", "writes")
pytest.register_assert_rewrite(*(f"{__name__}.{part}" for part in _PARTS))

from .changes import DryRunContract, NewColumnsContract
from .conversions import ConversionContract
from .edges import EdgeContract
from .errors import ErrorContract
from .frames import dtype_matrix
from .keys import KeyContract
from .properties import PropertyContract
from .roundtrip import RoundTripContract
from .threads import ThreadContract
from .writes import WriteContract

__all__ = [
    "BackendContract",
    "ConversionContract",
    "DryRunContract",
    "EdgeContract",
    "ErrorContract",
    "KeyContract",
    "NewColumnsContract",
    "PropertyContract",
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
):
    """Every part of the contract; subclasses provide the `store` fixture."""
