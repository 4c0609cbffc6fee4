"""A real browser check: JupyterLab, headless Chromium and a real kernel run 03-batch-failures and
05-quarantine-and-undo.

Starts JupyterLab on 127.0.0.1 (a free port, a token, temporary copies of the notebooks with their outputs
cleared), opens each notebook in Debian's Chromium through Playwright, runs all cells, and checks that the
report widgets are rendered with the right counts and answer clicks (paging, filtering, search, the copy
button) through the kernel. Screenshots go to test-output/. With DATAKNOBS_PD_UPDATE_DOCS=1 the widget
screenshot also replaces docs/report.png.

Missing Chromium or JupyterLab is a failure, not a skip, in one line saying what to install: `make test`
installs Debian's Chromium itself when it can (root with apt-get), `make browser-deps` alone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "03-batch-failures.ipynb"
QUARANTINE = ROOT / "notebooks" / "05-quarantine-and-undo.ipynb"
BATCH_ID = r"\d{8}T\d{12}Z-[0-9a-f]{8}"  # a call's batch id: UTC time to the microsecond, a random part
OUT = ROOT / "test-output"
CHROMIUM = os.environ.get("DATAKNOBS_PD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# What the notebook's dirty batch must produce (notebooks/data/penguins-2009-remeasured.csv).
TOTAL, SUCCEEDED, FAILED = 125, 105, 20
SETTINGS = {  # JupyterLab user settings: no news or update checks, every cell in the DOM
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fresh_copy(work: Path) -> None:
    """The notebooks with their outputs cleared, and their data beside them."""
    for notebook in (NOTEBOOK, QUARANTINE):
        nb = json.loads(notebook.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                cell["outputs"], cell["execution_count"] = [], None
        (work / notebook.name).write_text(json.dumps(nb))
    shutil.copytree(NOTEBOOK.parent / "data", work / "data")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's chromium package (as root: apt-get install -y "
            "chromium, or `make browser-deps`), or set DATAKNOBS_PD_CHROMIUM to a Chromium binary",
            pytrace=False,
        )
    try:
        import jupyterlab  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as e:
        pytest.fail(f"{e.name} is not installed: pip install -e '.[dev]'", pytrace=False)
    base = tmp_path_factory.mktemp("lab")
    work, jpath, settings = base / "work", base / "jupyter-path", base / "settings"
    work.mkdir()
    _fresh_copy(work)
    kernel = jpath / "kernels" / "python3"  # the kernel runs this interpreter, with this checkout importable
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
        )
    )
    for name, value in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])]),
            "JUPYTER_PATH": str(jpath),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
            "JUPYTER_CONFIG_DIR": str(base / "config"),
            "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
        }
    )
    port, token = _free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    with open(base / "lab.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={work}",
                "--allow-root",
                "--LabApp.extension_manager=readonly",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_server(proc, url, token, base / "lab.log")
            yield SimpleNamespace(url=url, token=token, work=work, log=base / "lab.log")
        finally:
            proc.terminate()  # the server shuts its kernels down
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _wait_for_server(proc, url: str, token: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"JupyterLab did not answer in {timeout:.0f} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 2200}, device_scale_factor=2)
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        try:
            yield pg
        finally:
            context.close()
            browser.close()


def _shoot(page, locator, path: Path, pad: int = 20) -> None:
    """A screenshot of one element with a blank margin around it (the cells around it hidden)."""
    locator.scroll_into_view_if_needed()
    style = page.add_style_tag(
        content=".jp-Notebook .jp-Cell{visibility:hidden}.dk-widget,.dk-widget *{visibility:visible}"
        "*::-webkit-scrollbar{display:none}"
    )
    try:
        box = locator.bounding_box()
        page.screenshot(
            path=str(path),
            clip={
                "x": max(0, box["x"] - pad),
                "y": max(0, box["y"] - pad),
                "width": box["width"] + 2 * pad,
                "height": box["height"] + 2 * pad,
            },
        )
    finally:
        style.evaluate("el => el.remove()")


def _text(locator) -> str:
    return re.sub(r"\s+", " ", locator.text_content() or "").strip()


# The status bar names the kernel once it is connected ("No Kernel | Initializing" before: the
# toolbar's indicator already reads idle then).
KERNEL_IDLE = """() => /Python 3 \\(ipykernel\\) \\| Idle/.test(document.querySelector('.jp-StatusBar-Widget')?.textContent || '')
    && document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'"""


def _wait_for_kernel(page, timeout: float = 90) -> None:
    """Until the notebook's kernel is idle; accepts the kernel chooser should JupyterLab ask."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        if accept.count():
            accept.first.click()
        elif page.evaluate(KERNEL_IDLE):
            return
        time.sleep(0.5)
    raise AssertionError("the notebook's kernel did not start")


def _run_all(page) -> None:
    """Run > Run All Cells, again should the kernel not have taken it (it can be idle before it listens)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    started = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
                      .some(p => p.textContent.trim() !== '[ ]:')"""
    for _ in range(4):
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
        try:
            page.wait_for_function(started, timeout=15_000)
            return
        except PlaywrightTimeout:
            _wait_for_kernel(page)
    raise AssertionError("Run All Cells did not start the notebook")


def _open_and_run(page, lab, notebook: Path, workspace: str) -> None:
    """Open a notebook alone in a workspace of its own (no tab of another notebook in the page), run all cells."""
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{notebook.name}?token={lab.token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-CodeCell")
    _wait_for_kernel(page)

    current = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if current.count():  # fold the file browser away: the notebook gets the width
        current.first.click()
    _run_all(page)
    try:
        page.wait_for_function(
            """() => {
                const ps = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
                    .map(p => p.textContent.trim());
                return ps.length > 0 && ps.every(t => /^\\[\\d+\\]:$/.test(t));
            }""",
            timeout=180_000,
        )
    finally:
        page.screenshot(path=str(OUT / f"lab-{notebook.stem}.png"), full_page=True)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in (errors.nth(i).text_content() for i in range(errors.count())) if "Error" in t]
    assert not tracebacks, tracebacks


def test_report_widget_in_jupyterlab(lab, page):
    from playwright.sync_api import expect

    OUT.mkdir(exist_ok=True)
    _open_and_run(page, lab, NOTEBOOK, "failures")

    # widgets render a moment after their output arrives: expect() waits for them
    widgets = page.locator(".dk-widget")
    # the save, the dry run, the dirty batch, the resubmission, and the checked batch and its resubmission
    expect(widgets).to_have_count(6)
    saved, preview, dirty, again = widgets.nth(0), widgets.nth(1), widgets.nth(2), widgets.nth(3)
    checked, resubmitted = widgets.nth(4), widgets.nth(5)

    # the dry run: nothing written, the same counts, and a Changes view beside the failures
    expect(preview.locator(".dk-pill")).to_have_text("Dry run: nothing written")
    expect(preview.locator(".dk-stat-succeeded b")).to_have_text(f"{SUCCEEDED:,}")
    expect(preview.locator(".dk-stat-failed b")).to_have_text(f"{FAILED:,}")
    expect(preview.locator(".dk-dry")).to_contain_text("preview.commit()")
    changes_tab = preview.locator(".dk-w-views button", has_text="Changes")
    expect(changes_tab).to_have_text(f"Changes ({SUCCEEDED:,})")
    changes_tab.click()
    view = preview.locator(".dk-w-changes")
    expect(view).to_be_visible()
    counts = [int(b.text_content().replace(",", "")) for b in view.locator(".dk-actions .dk-stat b").all()]
    assert sum(counts) == SUCCEEDED and len(counts) >= 1, counts
    expect(view.locator(".dk-w-changes-table tbody tr").first).to_be_visible()
    assert view.locator(".dk-w-changes-table ins").count() >= 1  # old -> new per changed cell
    expect(view.locator(".dk-w-change-position")).to_contain_text("page 1 of")
    _shoot(page, preview, OUT / "changes-widget.png")
    if os.environ.get("DATAKNOBS_PD_UPDATE_DOCS") == "1":
        shutil.copy(OUT / "changes-widget.png", ROOT / "docs" / "changes.png")

    # the counts, as the widget renders them
    expect(dirty.locator(".dk-stat-total b")).to_have_text(f"{TOTAL:,}")
    expect(dirty.locator(".dk-stat-succeeded b")).to_have_text(f"{SUCCEEDED:,}")
    expect(dirty.locator(".dk-stat-failed b")).to_have_text(f"{FAILED:,}")
    expect(dirty.locator(".dk-pill")).to_have_text(f"{FAILED} rows failed")
    expect(dirty.locator(".dk-url")).to_have_text(re.compile(r"^sqlite:////\S+/work/penguins\.db$"))  # absolute
    expect(dirty.locator(".dk-groups tbody tr")).to_have_count(4)
    groups = [[_text(td) for td in r.locator("td").all()[:3]] for r in dirty.locator(".dk-groups tbody tr").all()]
    assert groups == [
        ["convert", "TypeConversion", "11"],
        ["missing", "MissingKey", "5"],
        ["validate", "DuplicateKey", "2"],
        ["validate", "NullKey", "2"],
    ]
    expect(saved.locator(".dk-pill")).to_have_text("All rows written")
    expect(again.locator(".dk-pill")).to_have_text("All rows written")
    expect(again.locator(".dk-stat-succeeded b")).to_have_text("11")

    # the rows that broke the table's pandera checks: stage validate, error Check, the check named
    expect(checked.locator(".dk-stat-failed b")).to_have_text("3")
    checks = [[_text(td) for td in r.locator("td").all()[:3]] for r in checked.locator(".dk-groups tbody tr").all()]
    assert checks == [["validate", "Check", "3"]], checks
    expect(checked.locator(".dk-rows tbody tr").first).to_contain_text("in_range(2500, 6500)")
    expect(resubmitted.locator(".dk-pill")).to_have_text("All rows written")

    # the first page of failing rows, with the offending values marked
    rows = dirty.locator(".dk-rows tbody tr")
    expect(rows).to_have_count(10)
    expect(dirty.locator(".dk-w-position")).to_contain_text("Rows 1–10 of 20 · page 1 of 2")
    assert dirty.locator(".dk-rows tbody mark").count() == 10  # the bad value or key of each row
    expect(page.locator("text=Error displaying widget")).to_have_count(0)
    _shoot(page, dirty, OUT / "report-widget.png")
    if os.environ.get("DATAKNOBS_PD_UPDATE_DOCS") == "1":
        shutil.copy(OUT / "report-widget.png", ROOT / "docs" / "report.png")

    # paging, filtering and search go through the kernel and back
    position = dirty.locator(".dk-w-position")
    dirty.locator("button[title='next page']").click()
    expect(position).to_contain_text("Rows 11–20 of 20 · page 2 of 2")
    expect(rows).to_have_count(10)
    dirty.locator(".dk-w-stage select").select_option(label="convert (11)")
    expect(position).to_contain_text("Rows 1–10 of 11 matching (20 in all)")
    expect(dirty.locator(".dk-rows td.dk-stage")).to_have_text(["convert"] * 10)
    search = dirty.locator(".dk-w-search input")
    search.fill("kg")
    search.press("Enter")
    expect(position).to_contain_text("Rows 1–1 of 1 matching")
    expect(rows.first).to_contain_text("3.90kg")

    # the copy button puts the rows in view into a notebook variable
    copy = dirty.locator(".dk-w-copy")
    expect(copy).to_have_text("Copy 1 matching row")
    copy.click()
    expect(dirty.locator(".dk-w-copy-status")).to_contain_text("failed holds 1 row × 6 columns")
    _shoot(page, dirty, OUT / "report-widget-filtered.png")


def test_quarantine_and_undo_reports_in_jupyterlab(lab, page):
    """05-quarantine-and-undo: the call names its batch id and what it quarantined; the quarantine read back
    through a new handle is a report like any other (the batch of each row, filters, the copy button); once
    the rows are fixed it owes nothing; the undo says what it put back."""
    from playwright.sync_api import expect

    OUT.mkdir(exist_ok=True)
    _open_and_run(page, lab, QUARANTINE, "quarantine")
    widgets = page.locator(".dk-widget")
    # two seasons, the dirty one, the quarantine, the fixed rows, the empty quarantine, a wrong update, its undo
    expect(widgets).to_have_count(7)
    dirty, owed, fixed, empty, oops, undone = (widgets.nth(i) for i in range(1, 7))
    expect(page.locator("text=Error displaying widget")).to_have_count(0)

    # the dirty season: its batch id in the head, and how many rows it quarantined
    expect(dirty.locator(".dk-pill")).to_have_text("5 rows failed")
    expect(dirty.locator(".dk-batch")).to_have_text(re.compile(rf"^batch {BATCH_ID}$"))
    expect(dirty.locator(".dk-stat-quarantined b")).to_have_text("5")
    batch_id = _text(dirty.locator(".dk-batch")).removeprefix("batch ")

    # what the quarantine still owes, read through a new store handle: the rows of that call
    expect(owed.locator(".dk-pill")).to_have_text("5 rows still owed")
    expect(owed.locator(".dk-title")).to_have_text("quarantine of penguins")
    expect(owed.locator(".dk-stat-failed b")).to_have_text("5")
    expect(owed.locator(".dk-batch")).to_have_count(0)  # all the calls' rows, not one call's
    expect(owed.locator(".dk-rows tbody tr")).to_have_count(5)
    expect(owed.locator(".dk-rows td.dk-batch-id")).to_have_text([batch_id] * 5)
    expect(owed.locator(".dk-rows tbody mark")).to_have_count(5)  # the value (or key) of each row, as sent
    groups = [[_text(td) for td in r.locator("td").all()[:3]] for r in owed.locator(".dk-groups tbody tr").all()]
    assert groups == [["convert", "TypeConversion", "4"], ["validate", "DuplicateKey", "1"]]
    _shoot(page, owed, OUT / "quarantine-widget.png")

    # filtering, search by batch id, and the copy button, through the kernel
    position = owed.locator(".dk-w-position")
    owed.locator(".dk-w-stage select").select_option(label="convert (4)")
    expect(position).to_contain_text("Rows 1–4 of 4 matching (5 in all)")
    search = owed.locator(".dk-w-search input")
    search.fill(batch_id[-8:])
    search.press("Enter")
    expect(position).to_contain_text("Rows 1–4 of 4 matching")
    copy = owed.locator(".dk-w-copy")
    expect(copy).to_have_text("Copy 4 matching rows")
    copy.click()
    expect(owed.locator(".dk-w-copy-status")).to_contain_text("failed holds 4 rows × 9 columns")
    expect(owed.locator(".dk-w-copy-status")).to_contain_text("as they were sent")

    # fixed and written again: the quarantine owes nothing
    expect(fixed.locator(".dk-pill")).to_have_text("All rows written")
    expect(fixed.locator(".dk-stat-succeeded b")).to_have_text("5")
    expect(empty.locator(".dk-pill")).to_have_text("Nothing owed")
    expect(empty.locator(".dk-stat-failed b")).to_have_text("0")

    # the wrong update, and the undo that puts it back: its own batch id, and the changes it made
    expect(oops.locator(".dk-batch")).to_have_text(re.compile(rf"^batch {BATCH_ID}$"))
    expect(undone.locator(".dk-title")).to_have_text("undo → penguins")
    expect(undone.locator(".dk-pill")).to_have_text("All rows put back")
    expect(undone.locator(".dk-stat-succeeded b")).to_have_text("124")
    expect(undone.locator(".dk-batch")).to_have_text(re.compile(rf"^batch {BATCH_ID}$"))
    assert _text(undone.locator(".dk-batch")) != _text(oops.locator(".dk-batch"))
    view = undone.locator(".dk-w-changes")
    expect(view).to_be_visible()
    expect(view.locator(".dk-w-changes-table tbody tr").first).to_be_visible()
    expect(view.locator(".dk-w-changes-table ins").first).to_have_text("4500.0")  # kilograms back to grams
    _shoot(page, undone, OUT / "undo-widget.png")
