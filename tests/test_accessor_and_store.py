"""The accessor (thin, stateless) and Store (pooled per URL, masked, closable)."""

from __future__ import annotations

import pandas as pd
import pytest

import dataknobs_pd as dk
from dataknobs_pd.accessor import DkAccessor


def test_accessor_is_registered_and_keeps_no_state():
    df = pd.DataFrame({"a": [1]})
    acc = df.dk
    assert isinstance(acc, DkAccessor)
    assert set(vars(acc)) == {"_df"}
    assert pd.DataFrame.dk is DkAccessor


def test_load_through_the_accessor_class(tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    df = pd.DataFrame({"id": [1, 2], "s": ["x", "y"]})
    df.dk.save(url, "t")
    pd.testing.assert_frame_equal(pd.DataFrame.dk.load(url, "t"), df)
    pd.testing.assert_frame_equal(df.dk.load(url, "t", columns=["s"]), df[["s"]])


def test_accessor_sees_the_current_frame_after_changes(tmp_path):
    url = f"memory://{tmp_path.name}"
    df = pd.DataFrame({"id": [1]})
    df.dk.save(url, "a")
    df["v"] = [5]  # pandas 3 builds a new accessor per access; no stale frame may be kept
    df.dk.save(url, "b")
    assert list(dk.load(url, "b").columns) == ["id", "v"]


def test_handles_share_a_backend_and_close_releases_only_their_own(tmp_path):
    url = f"sqlite:///{tmp_path}/p.db"
    a, b = dk.connect(url), dk.connect(f"sqlite:///{tmp_path}/./p.db")
    assert a is not b and a.backend is b.backend  # one file, however its path is spelled: one connection
    pd.DataFrame({"id": [1]}).dk.save(a, "t")
    a.close()
    assert a.closed and not b.closed
    with pytest.raises(dk.InvalidArgumentError, match="was closed"):
        dk.load(a, "t")
    with dk.connect(url) as c:
        assert c.backend is b.backend
    assert dk.load(b, "t")["id"].tolist() == [1]  # the with-block released its handle only
    b.close()
    with dk.connect(url) as d:  # the last holder closed the file: a new connection
        assert dk.load(d, "t")["id"].tolist() == [1]


def test_memory_stores_are_shared_by_name():
    pd.DataFrame({"x": [1]}).dk.save("memory://shared-name", "t")
    with dk.connect("memory://shared-name") as s:
        assert s.tables() == ["t"]
    assert "t" not in dk.connect("memory://other-name").tables()


def test_store_tables_and_drop(store):
    pd.DataFrame({"x": [1]}).dk.save(store, "b")
    pd.DataFrame({"x": [1]}).dk.save(store, "a")
    assert store.tables() == ["a", "b"]
    store.drop("a")
    assert store.tables() == ["b"]
    assert store.scheme in repr(store)


def test_url_masks_password():
    s = dk.connect("memory://user:secret@x")
    assert "secret" not in s.url and "***" in s.url


def test_result_renderings(store):
    res = pd.DataFrame({"id": [1, 1, 2]}).dk.save(store, "t")
    html = res._repr_html_()
    assert "DuplicateKey" in html and "<table" in html and "1</b> failed" in html
    from dataknobs_pd.widgets.report import render_text

    text = render_text(res)
    assert "validate" in text and "DuplicateKey" in text
    assert res.summary().to_dict("records") == [{"stage": "validate", "error": "DuplicateKey", "rows": 1}]


def test_progress_bar_counts_rows(store, capsys):
    pd.DataFrame({"id": range(1000)}).dk.save(store, "t", progress=True, chunksize=100)
    err = capsys.readouterr().err
    assert "save t" in err and "rows/s" in err and "1.00k" in err
    pd.DataFrame({"id": range(1000, 2000)}).dk.save(store, "t", if_exists="append", progress=False)
    assert capsys.readouterr().err == ""


def test_progress_counts_rows_and_failures():
    from dataknobs_pd.progress import Progress

    with Progress(1000, "x", True) as p:
        p.update(600, failed=2)
        p.update(400, failed=5)
        assert p.bar.n == 1000 and p.bar.postfix == "failed=5"
    assert Progress(10**9, "x", False).bar is None
