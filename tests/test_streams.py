"""A stream of pandas frames through one call: one report, rows counted across the stream, keys
repeated across frames failing at validate, all or nothing with errors="raise"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk


@pytest.fixture(params=["memory", "sqlite", "parquet"])
def url(request, tmp_path):
    return {
        "memory": f"memory://streams-{tmp_path.name}",
        "sqlite": f"sqlite:///{tmp_path}/s.db",
        "parquet": f"parquet://{tmp_path}/p",
    }[request.param]


def test_a_csv_read_in_chunks_is_one_call(url, tmp_path):
    df = pd.DataFrame({"id": np.arange(10_000), "x": np.arange(10_000) * 0.5, "s": ["a", "b"] * 5_000})
    df.to_csv(tmp_path / "in.csv", index=False)
    res = dk.save(pd.read_csv(tmp_path / "in.csv", chunksize=1_500), url, "t")
    assert (res.total, res.succeeded, res.failed) == (10_000, 10_000, 0)
    assert_frame_equal(dk.load(url, "t"), pd.read_csv(tmp_path / "in.csv"))


def test_keys_repeated_across_frames_fail_at_validate_with_whole_stream_positions(url):
    frames = [
        pd.DataFrame({"id": [1, 2, 3], "v": [1, 2, 3]}),
        pd.DataFrame({"id": [4, 2, 5], "v": [4, 20, 5]}, index=[10, 11, 12]),
        pd.DataFrame({"id": [6, 5, 1, None], "v": [6, 50, 10, 0]}, index=[20, 21, 22, 23]),
    ]
    res = dk.save(iter(frames), url, "t", if_exists="upsert")
    assert (res.total, res.succeeded, res.failed) == (10, 6, 4)
    f = res.failures
    assert f["row"].tolist() == [4, 7, 8, 9]
    assert f["index"].tolist() == [11, 21, 22, 23]
    assert f["error"].tolist() == ["DuplicateKey", "DuplicateKey", "DuplicateKey", "NullKey"]
    assert "repeats row 1 of this input" in f["message"].iloc[0]
    assert "repeats row 5 of this input" in f["message"].iloc[1]
    assert "repeats row 0 of this input" in f["message"].iloc[2]
    failed = res.failed_rows()
    assert failed.index.tolist() == [11, 21, 22, 23] and failed["v"].tolist() == [20, 50, 10, 0]
    out = dk.load(url, "t")
    assert out["id"].tolist() == [1, 2, 3, 4, 5, 6] and out["v"].tolist() == [1, 2, 3, 4, 5, 6]


def test_raise_is_all_or_nothing_across_the_stream(url):
    pd.DataFrame({"id": [100], "v": [0]}).dk.save(url, "t")
    frames = (pd.DataFrame({"id": [i, i + 1], "v": [i, i]}) for i in range(0, 20, 2))  # ids 0..19, then a clash
    with pytest.raises(dk.BatchError) as info:
        dk.save(_then(frames, pd.DataFrame({"id": [100], "v": [1]})), url, "t", if_exists="append", errors="raise")
    assert info.value.result.failures["row"].tolist() == [20]
    assert dk.load(url, "t")["id"].tolist() == [100]


def test_update_batch_over_a_stream(url):
    pd.DataFrame({"id": np.arange(6), "v": np.zeros(6, dtype="int64"), "w": list("abcdef")}).dk.save(url, "t")
    frames = [pd.DataFrame({"id": [0, 1], "v": [10, 11]}), pd.DataFrame({"id": [9, 5], "v": [99, 15]})]
    res = dk.update_batch(frames, url, "t")
    assert res.failures["row"].tolist() == [2] and res.failures["error"].tolist() == ["MissingKey"]
    out = dk.load(url, "t")
    assert out["v"].tolist() == [10, 11, 0, 0, 0, 15] and out["w"].tolist() == list("abcdef")


def test_later_frames_may_bring_new_categories(url):
    cat = pd.CategoricalDtype(["a"])
    frames = [
        pd.DataFrame({"id": [1], "c": pd.Series(["a"], dtype=cat)}),
        pd.DataFrame({"id": [2], "c": pd.Series(["b"], dtype=pd.CategoricalDtype(["b"]))}),
    ]
    dk.save(frames, url, "t")
    out = dk.load(url, "t")
    assert out["c"].tolist() == ["a", "b"] and list(out["c"].cat.categories) == ["a", "b"]


def test_a_bad_frame_in_the_middle_rolls_the_call_back(url):
    pd.DataFrame({"id": [100], "v": [0]}).dk.save(url, "t")

    def frames():
        yield pd.DataFrame({"id": [1], "v": [1]})
        yield pd.DataFrame({"id": [2], "v": [2], "extra": [0]})

    with pytest.raises(dk.SchemaMismatchError, match="'extra'"):
        dk.save(frames(), url, "t", if_exists="append")
    with pytest.raises(dk.InvalidArgumentError, match="item 1.*str"):
        dk.save(iter([pd.DataFrame({"id": [3], "v": [3]}), "oops"]), url, "t", if_exists="append")
    assert dk.load(url, "t")["id"].tolist() == [100]


def test_empty_and_wrong_inputs_are_clear(url):
    with pytest.raises(dk.InvalidArgumentError, match="no frames"):
        dk.save(iter([]), url, "t")
    with pytest.raises(dk.InvalidArgumentError, match="DataFrame"):
        dk.save("not frames", url, "t")


def _then(frames, last):
    yield from frames
    yield last


@pytest.mark.parametrize(
    "keys",
    [
        [np.arange(0, 10), np.arange(20, 30), np.r_[5, 40]],  # ascending, then back into the first range
        [np.arange(20, 30), np.arange(0, 10), np.r_[25, 9, 99]],  # descending, then into both
        [
            pd.date_range("2024", periods=5, freq="D"),
            pd.date_range("2025", periods=3, freq="D"),
            [pd.Timestamp("2024-01-02")],
        ],
        [np.array(["b", "c"]), np.array(["x", "y"]), np.array(["c", "z"])],  # text keys: always looked up
    ],
)
def test_key_set_finds_a_key_of_any_earlier_frame(keys):
    from dataknobs_pd.keys import KeySet

    seen, row, found = KeySet(), 0, []
    firsts: dict = {}
    for k in keys:
        kf = pd.DataFrame({"id": k})
        earlier = seen.add(kf, np.arange(row, row + len(kf)))
        found += [(v, e) for v, e in zip(kf["id"], earlier) if e >= 0]
        expected = [firsts.get(v, -1) for v in kf["id"]]
        assert earlier.tolist() == expected
        for i, v in enumerate(kf["id"]):
            firsts.setdefault(v, row + i)
        row += len(kf)
    assert found, "each case repeats a key of an earlier frame"
