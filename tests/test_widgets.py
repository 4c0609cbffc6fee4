"""The batch report: the widget's structure and behaviour, and the static HTML and text renderings.

The results come from real writes (SQLite, the memory store) of real data: the Palmer penguins and the
hand-typed batch that notebooks/03-batch-failures.ipynb uses. The large case builds a BatchResult with a
million failures directly, as the batch engine does, to check that the report pages it lazily.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk
from dataknobs_pd.failures import RowFailure
from dataknobs_pd.result import BatchResult
from dataknobs_pd.widgets import BatchReport  # needs ipywidgets: the notebook extra, in dev
from dataknobs_pd.widgets.report import fmt_seconds, render_html, render_text
from dataknobs_pd.widgets.widget import live_widget

BATCH = Path(__file__).resolve().parent.parent / "notebooks" / "data" / "penguins-2009-remeasured.csv"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _plain(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


@pytest.fixture(scope="module")
def penguins():
    import palmerpenguins  # the demo extra, in dev

    df = palmerpenguins.load_penguins()
    df.insert(0, "id", np.arange(1, len(df) + 1))
    return df


@pytest.fixture
def store(tmp_path, penguins):
    with dk.connect(f"sqlite:///{tmp_path}/penguins.db") as s:
        penguins.dk.save(s, "penguins")
        yield s


@pytest.fixture
def dirty(store):
    """The hand-typed batch: 125 rows, 20 fail (11 convert, 5 missing, 2 duplicate keys, 2 null keys)."""
    batch = pd.read_csv(BATCH, dtype={"id": "Int64"})
    return batch.dk.update_batch(store, "penguins")


@pytest.fixture(scope="module")
def huge():
    """A million failures over a million-row frame, as the batch engine would report them."""
    n = 1_000_000
    frame = pd.DataFrame({"id": np.arange(1, n + 1), "value": np.arange(n) * 0.5, "tag": ["a", "b"] * (n // 2)})
    failures = {
        i: RowFailure("missing", "MissingKey", f"key id={i + 1} is not in the table")
        if i % 4
        else RowFailure("convert", "OutOfRange", f"column 'value': {i * 0.5} is too large")
        for i in range(n)
    }
    return BatchResult(
        operation="update_batch",
        table="big",
        url="memory://big",
        frame=frame,
        key=["id"],
        failures=failures,
        elapsed=2.0,
    )


# -- the summary -------------------------------------------------------------------------------------
def test_header_counts_status_and_store(dirty):
    w = BatchReport(dirty)
    text = _plain(w.header.value)
    assert dirty.total == 125 and dirty.succeeded == 105 and dirty.failed == 20
    assert "20 rows failed" in text and "update_batch → penguins" in text
    assert "125 rows · 105 updated · 20 failed" in text and "rows/s" in text and "elapsed" in text
    assert dirty.url in w.header.value
    assert "dk-stat-failed dk-nonzero" in w.header.value  # the one number in colour


def test_failures_grouped_by_stage_and_error(dirty):
    w = BatchReport(dirty)
    rows = re.findall(
        r"<tr><td>(\w+)</td><td><strong>(\w+)</strong></td><td class='dk-num'>([\d,]+)</td>", w.groups.value
    )
    assert rows == [
        ("convert", "TypeConversion", "11"),
        ("missing", "MissingKey", "5"),
        ("validate", "DuplicateKey", "2"),
        ("validate", "NullKey", "2"),
    ]
    assert "the value cannot become the column&#x27;s type" in w.groups.value  # what each error means
    assert [label for label, _ in w.stage.options] == ["All stages (20)", "convert (11)", "missing (5)", "validate (4)"]
    w.stage.value = "validate"
    assert [label for label, _ in w.error.options] == ["All errors (4)", "DuplicateKey (2)", "NullKey (2)"]


def test_ok_and_rolled_back_results(store, penguins):
    ok = penguins.loc[:9, ["id", "body_mass_g"]].dk.update_batch(store, "penguins")
    w = BatchReport(ok)
    assert w.children == (w.header,) and "All rows written" in w.header.value
    assert "failures by stage" not in render_html(ok)
    with pytest.raises(dk.BatchError) as caught:
        pd.read_csv(BATCH, dtype={"id": "Int64"}).dk.update_batch(store, "penguins", errors="raise")
    rolled = caught.value.result
    assert "Rolled back: nothing written" in BatchReport(rolled).header.value
    assert "105 valid" in _plain(render_html(rolled))


# -- the failing rows: values, filters, pages --------------------------------------------------------
def test_page_shows_failures_with_the_offending_values(dirty):
    w = BatchReport(dirty)
    table = w.table.value
    assert table.count("<tr>") == 2 + 10  # two header rows, one page of ten
    first = dirty.failures.iloc[0]
    bad = dirty.failed_rows().loc[first["index"]]
    assert first["error"] == "TypeConversion" and "flipper_length_mm" in first["message"]
    assert f"<mark>{bad['flipper_length_mm']}</mark>" in table  # the value that failed, marked
    assert "bill_depth_mm" in table and "sex" in table  # the rest of the input row beside it
    assert "<th>index</th>" not in table  # a default RangeIndex says nothing the row number does not


def test_filter_by_stage_error_and_text(dirty):
    w = BatchReport(dirty)
    w.stage.value = "convert"
    assert len(w.positions()) == 11 and set(w.current_page()["stage"]) == {"convert"}
    assert "of <b>11</b> matching (20 in all)" in w.position.value
    w.stage.value = ""
    w.error.value = "NullKey"
    assert list(w.current_page()["error"]) == ["NullKey", "NullKey"]
    w.error.value = ""
    w.search.value = "KG"  # any case; in the message
    assert len(w.positions()) == 1 and "3.90kg" in w.current_page()["message"].iloc[0]
    w.search.value = "345"  # a key
    assert list(w.current_page()["key"]) == [345]
    w.search.value = "duplicatekey"  # an error class
    assert len(w.positions()) == 2
    w.search.value = "no such thing"
    assert len(w.positions()) == 0 and "No failing row matches" in w.table.value
    assert w.copy_button.disabled and w.next_button.disabled


def test_paging(dirty):
    w = BatchReport(dirty)
    assert "Rows <b>1–10</b> of <b>20</b>" in w.position.value and w.pages == 2
    assert w.prev_button.disabled and w.first_button.disabled and not w.next_button.disabled
    w.next_button.click()
    assert "Rows <b>11–20</b>" in w.position.value and w.next_button.disabled and not w.prev_button.disabled
    assert list(w.current_page()["row"]) == list(dirty.failures["row"].iloc[10:20])
    w.size.value = 25
    assert w.page == 0 and w.pages == 1 and w.table.value.count("<tr>") == 2 + 20
    w.size.value = 10
    w.last_button.click()
    w.stage.value = "missing"  # a new filter starts at its first page
    assert w.page == 0 and "Rows <b>1–5</b> of <b>5</b> matching" in w.position.value


def test_a_million_failures_stay_responsive(huge):
    t0 = time.perf_counter()
    w = BatchReport(huge, page_size=25)
    built = time.perf_counter() - t0
    assert built < 5, f"building the widget took {built:.1f}s"
    assert w.table.value.count("<tr>") == 2 + 25  # one page, never the million
    assert "1,000,000" in w.header.value and "of <b>1,000,000</b>" in w.position.value
    assert "page 1 of 40,000" in w.position.value
    t0 = time.perf_counter()
    w.last_button.click()
    w.prev_button.click()
    assert time.perf_counter() - t0 < 0.5
    assert "Rows <b>999,951–999,975</b>" in w.position.value
    assert w.current_page()["row"].tolist() == list(range(999_950, 999_975))
    t0 = time.perf_counter()
    w.stage.value = "convert"
    w.search.value = "499998.0 is"
    assert time.perf_counter() - t0 < 5
    assert w.current_page()["row"].tolist() == [999_996]
    t0 = time.perf_counter()
    html, text = render_html(huge), render_text(huge)
    assert time.perf_counter() - t0 < 3
    assert html.count("<tr>") < 40 and "first 20 of 1,000,000" in html and "999,980 more" in text


# -- the rows back as a DataFrame ----------------------------------------------------------------------
def test_copy_button_hands_back_the_failed_rows(dirty):
    w = BatchReport(dirty)
    assert w.copy_button.description == "Copy all 20 rows"
    w.copy_button.click()
    assert_frame_equal(w.copied, dirty.failed_rows())  # same rows, index and dtypes
    w.stage.value = "convert"
    assert w.copy_button.description == "Copy 11 matching rows"
    w.copy_button.click()
    expected = dirty.failed_rows().loc[dirty.failures.loc[dirty.failures["stage"] == "convert", "index"]]
    assert_frame_equal(w.copied, expected)
    assert_frame_equal(w.selected_rows(), expected)


def test_copy_button_assigns_a_notebook_variable(dirty):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.user_ns["res"] = dirty
        w = BatchReport(dirty)
        assert "failed = res.failed_rows()" in w.code_hint.value  # the name the result has in the notebook
        w.variable.value = "to_fix"
        w.error.value = "MissingKey"
        w.copy_button.click()
        assert_frame_equal(shell.user_ns["to_fix"], dirty.failed_rows().tail(5))
        assert "to_fix</code> holds 5 rows × 6 columns" in w.copy_status.value
        w.variable.value = "not a name"
        w.copy_button.click()
        assert "not a valid Python name" in w.copy_status.value
    finally:
        InteractiveShell.clear_instance()


# -- static renderings and the display hooks ---------------------------------------------------------------
def test_html_and_text_renderings(dirty):
    html = render_html(dirty)
    assert "<b>125</b> rows" in html and "<b>20</b> failed" in html and "failing rows (all 20)" in html
    assert html.count("<mark>") >= 20 and "res.failed_rows()" in html
    text = render_text(dirty)
    assert text.splitlines()[0] == str(dirty) and "update_batch 'penguins': 125 rows, 105 updated, 20 failed" in text
    assert re.search(r"convert\s+TypeConversion\s+11", text) and re.search(r"validate\s+NullKey\s+2", text)
    assert dirty._repr_html_() == html


def test_values_and_messages_are_escaped(tmp_path):
    df = pd.DataFrame({"id": [1, 1, 1], "note": ["first", "<script>alert(1)</script>", "a & b"]})
    res = df.dk.save(f"sqlite:///{tmp_path}/x.db", "t")
    for html in (render_html(res), BatchReport(res).table.value):
        assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "a &amp; b" in html


def test_password_is_never_shown(tmp_path):
    url = "memory://analyst:s3cret-pw@warehouse"
    df = pd.DataFrame({"id": [1, 2, 2], "x": [1.0, 2.0, 3.0]})
    res = df.dk.save(url, "t")
    assert res.failed == 1 and "***" in res.url
    w = BatchReport(res)
    shown = [
        render_html(res),
        render_text(res),
        str(res),
        repr(res),
        *res._repr_mimebundle_().values(),
        *(c.value for c in w.children if hasattr(c, "value")),
    ]
    assert not [s for s in shown if "s3cret" in str(s)]


def test_outside_a_kernel_the_bundle_is_static(dirty, monkeypatch):
    bundle = dirty._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"} and live_widget(dirty) is None
    assert bundle["text/plain"] == render_text(dirty)


def test_formatting_of_durations():
    assert [fmt_seconds(s) for s in (0.0004, 0.0123, 3.8412, 125)] == ["<1 ms", "12 ms", "3.84 s", "2 min 5 s"]


# -- the Changes view (a dry run, track_changes=True) ----------------------------------------------------
def test_dry_run_report_shows_the_diff_and_how_to_commit(tmp_path):
    url = f"sqlite:///{tmp_path}/d.db"
    pd.DataFrame({"id": np.arange(100), "v": np.zeros(100), "s": "x"}).dk.save(url, "t")
    new = pd.DataFrame({"id": np.arange(50, 150), "v": np.arange(100) * 1.0, "s": "x"})
    res = new.dk.update_batch(url, "t", dry_run=True)
    w = BatchReport(res)
    assert "Dry run: nothing written" in w.header.value and ".commit()</code>" in w.header.value
    assert [label for label, _ in w.views.options] == ["Failures (50)", "Changes (50)"]
    assert w.changes_view.layout.display == "none"
    w.views.value = "changes"
    assert w.changes_view.layout.display is None
    cv = w.changes_view
    assert cv.action.value == "update" and [label for label, _ in cv.action.options] == [
        "All actions (50)",
        "update (49)",
        "unchanged (1)",
    ]
    page = cv.children[2].value
    assert page.count("<tr>") == 1 + 10 and "<del>0.0</del> → <ins>1.0</ins>" in page
    cv.search.value = "99"
    assert cv.children[2].value.count("<tr>") == 2 and "<ins>49.0</ins>" in cv.children[2].value
    assert "49 update, 1 unchanged" in render_text(res) and "changed rows (first 20 of 49)" in render_html(res)
    assert dk.load(url, "t")["v"].sum() == 0  # the dry run wrote nothing
    assert res.commit().succeeded == 50 and dk.load(url, "t")["v"].sum() == sum(range(50))


def test_a_million_changes_stay_responsive():
    n = 1_000_000
    frame = pd.DataFrame({"id": np.arange(n), "v": np.arange(n) * 0.5})
    changes = pd.DataFrame(
        {
            "row": np.arange(n),
            "index": pd.Series(np.arange(n), dtype=object),
            "key": pd.Series(np.arange(n), dtype=object),
            "action": np.where(np.arange(n) % 3, "update", "insert"),
            "changed": [["v"]] * n,
            "before": [{"v": 0.0}] * n,
            "after": [{"v": 1.0}] * n,
        }
    )
    res = BatchResult(
        operation="save",
        table="big",
        url="memory://big",
        frame=frame,
        key=["id"],
        failures={},
        elapsed=1.0,
        changes=changes,
        dry_run=True,
        committed=False,
    )
    t0 = time.perf_counter()
    w = BatchReport(res)
    cv = w.changes_view
    assert time.perf_counter() - t0 < 5
    assert cv.children[2].value.count("<tr>") == 1 + 10 and "of <b>666,666</b>" in cv.children[3].children[2].value
    t0 = time.perf_counter()
    cv.next_button.click()
    cv.action.value = "insert"
    assert time.perf_counter() - t0 < 2
    assert "of <b>333,334</b>" in cv.children[3].children[2].value
    t0 = time.perf_counter()
    html = render_html(res)
    assert time.perf_counter() - t0 < 3 and html.count("<tr>") < 40


# -- quarantine and undo: the batch id, what is still owed, what was put back ---------------------------
@pytest.fixture
def quarantined(store):
    """The hand-typed batch sent with quarantine=True: its 20 failed rows are kept in the store."""
    batch = pd.read_csv(BATCH, dtype={"id": "Int64"})
    return batch, batch.dk.update_batch(store, "penguins", quarantine=True)


def test_a_call_names_its_batch_id_and_what_it_quarantined(quarantined):
    _, res = quarantined
    assert res.batch_id and res.quarantined == 20
    w = BatchReport(res)
    head = _plain(w.header.value)
    assert f"batch {res.batch_id}" in head and "20 failed · 20 quarantined" in head
    assert "dk.undo and dk.quarantined take it" in w.header.value  # what the id is for, in its tooltip
    html, text = render_html(res), render_text(res)
    assert f"batch {res.batch_id}" in _plain(html) and "<b>20</b> quarantined" in html
    assert text.splitlines()[:3] == [str(res), f"store: {res.url}", f"batch: {res.batch_id}"]
    assert "20 rows failed" in head  # the rest of the head as before
    plain = BatchReport(pd.DataFrame({"id": [1]}).dk.save(f"{res.url}", "other"))
    assert "quarantined" not in _plain(plain.header.value)  # no count where nothing was quarantined


def test_quarantine_report_reads_what_is_still_owed(quarantined, tmp_path):
    batch, res = quarantined
    with dk.connect(f"sqlite:///{tmp_path}/penguins.db") as again:  # another handle, as after a restart
        q = dk.quarantined(again, "penguins")
    assert q.operation == "quarantined" and q.failed == 20
    w = BatchReport(q)
    head = _plain(w.header.value)
    assert "20 rows still owed" in head and "quarantine of penguins" in head
    assert "20 still owed · 1 call" in head and "rows/s" not in head and "written" not in head
    assert re.findall(r"<strong>(\w+)</strong></td><td class='dk-num'>(\d+)", w.groups.value) == [
        ("TypeConversion", "11"),
        ("MissingKey", "5"),
        ("DuplicateKey", "2"),
        ("NullKey", "2"),
    ]
    assert "quarantined rows" in " ".join(c.value for c in w.children if hasattr(c, "value"))
    table = w.table.value
    assert "<th>batch</th>" in table and table.count(res.batch_id) == 10  # the call of each row on the page
    first = q.failures.iloc[0]
    bad = batch.loc[first["index"], "flipper_length_mm"]
    assert first["error"] == "TypeConversion" and f"<mark>{bad}</mark>" in table  # the value as it was sent
    html, text = render_html(q), render_text(q)
    assert "<th>batch</th>" in html and "quarantined rows (all 20)" in html and "20 rows still owed" in html
    assert text.splitlines()[0] == "quarantine of 'penguins': 20 rows still owed, from 1 call"
    assert "quarantined rows (all 20):" in text and re.search(rf"{res.batch_id}\s+15\s+15\s+116\s+convert", text)
    one = dk.quarantined(q.url, "penguins", batch_id=res.batch_id)
    assert f"batch {res.batch_id}" in _plain(render_html(one)) and f"batch: {res.batch_id}" in render_text(one)


def test_quarantine_report_hands_back_the_rows_as_sent(quarantined, store):
    batch, res = quarantined
    batch.iloc[[15, 16]].dk.update_batch(store, "penguins", quarantine=True)  # the same rows, failing again
    q = dk.quarantined(store, "penguins")
    assert q.failed == 22 and list(q.failures["row"].iloc[-2:]) == [0, 1]  # row numbers of two calls repeat
    w = BatchReport(q)
    assert "1 failed · 2 calls" not in w.header.value and "22 still owed · 2 calls" in _plain(w.header.value)
    w.copy_button.click()
    assert_frame_equal(w.copied, q.failed_rows())  # one row per failure, the batch's dtypes and index
    assert w.copied.dtypes.equals(batch.dtypes) and list(w.copied.index[-2:]) == [15, 16]
    assert "as they were sent" in w.copy_status.value
    w.search.value = q.failures["batch_id"].iloc[-1][-8:]  # the second call, by its batch id
    assert len(w.positions()) == 2
    w.copy_button.click()
    assert_frame_equal(w.copied, batch.iloc[[15, 16]])
    w.search.value = ""
    w.stage.value = "convert"  # filtered: the rows beside their failures still match, call by call
    w.copy_button.click()
    convert = np.flatnonzero(q.failures["stage"] == "convert")
    assert len(convert) == 13 and len(w.copied) == 13
    assert_frame_equal(w.copied, q.failed_rows().iloc[convert])
    w.size.value = 25
    cells = re.findall(
        r"<td class='dk-batch-id dk-val dk-mute'>([^<]+)</td><td class='dk-num'>(\d+)</td>", w.table.value
    )
    assert [(b, int(r)) for b, r in cells] == list(
        q.failures.iloc[convert][["batch_id", "row"]].itertuples(index=False, name=None)
    )
    # fixed and written again: their keys leave the quarantine, and its report says what is left
    fixed = w.copied.drop_duplicates("id").copy()

    def grams(text):
        text = str(text).replace(",", "").replace(" ", "")
        return float(text[:-2]) * 1000 if text.endswith("kg") else float(text.removesuffix("g"))

    fixed["body_mass_g"] = fixed["body_mass_g"].map(grams)
    fixed["bill_length_mm"] = pd.to_numeric(fixed["bill_length_mm"].str.replace(",", "."))
    fixed["flipper_length_mm"] = pd.to_numeric(fixed["flipper_length_mm"], errors="coerce")
    assert fixed.dk.update_batch(store, "penguins").ok
    left = dk.quarantined(store, "penguins")
    assert left.failed == 8 and "8 rows still owed" in render_html(left)  # and the repeat of 117, written now
    assert set(left.failures["stage"]) == {"missing", "validate"}


def test_an_empty_quarantine_reads_as_nothing_owed(store):
    q = dk.quarantined(store, "penguins")
    w = BatchReport(q)
    assert w.children == (w.header,) and "Nothing owed" in w.header.value
    assert "the quarantine of &#x27;penguins&#x27; is empty" in render_html(q).lower()
    assert render_text(q).splitlines()[0] == "quarantine of 'penguins': nothing owed"


def test_undo_report_says_what_it_put_back(store, penguins):
    heavier = penguins.loc[:4, ["id", "body_mass_g"]].assign(body_mass_g=lambda d: d["body_mass_g"] * 1000)
    wrong = heavier.dk.update_batch(store, "penguins", undoable=True)
    penguins.loc[[0], ["id", "sex"]].assign(sex="female").dk.update_batch(store, "penguins")  # untouched columns
    penguins.loc[[1], ["id", "body_mass_g"]].assign(body_mass_g=1.0).dk.update_batch(store, "penguins")  # since
    u = dk.undo(store, "penguins", wrong.batch_id)
    assert u.operation == "undo" and u.total == 5 and u.succeeded == 4 and u.failed == 1
    w = BatchReport(u)
    head = _plain(w.header.value)
    assert "1 row not put back" in head and "undo → penguins" in head and "4 put back" in head
    assert f"batch {u.batch_id}" in head and "redoes the call" in w.header.value
    assert "<th>index</th>" not in w.table.value and "Conflict" in w.table.value  # the key names the row
    assert [label for label, _ in w.views.options] == ["Failures (1)", "Changes (4)"]
    html, text = render_html(u), render_text(u)
    assert "keys of the rows left as they are" in html and "<del>" in html
    assert text.splitlines()[0] == str(u) and "4 put back" in text and f"batch: {u.batch_id}" in text
    back = dk.undo(store, "penguins", u.batch_id)  # the undo undone: the call again
    assert "All rows put back" in BatchReport(back).header.value
