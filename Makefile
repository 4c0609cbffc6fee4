# `make demo` and `make test` set up a fresh machine by themselves: they create the
# virtual environment when it is missing and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PANDAS ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dk-installed

.PHONY: demo test bench lab browser-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' $(if $(PANDAS),'pandas$(PANDAS)')
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m dataknobs_pd.demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/run.py

# JupyterLab on the notebooks (the report widget, the progress bars).
lab: $(STAMP)
	$(PY) -m jupyterlab --ServerApp.root_dir=notebooks

# The browser check (tests/browser) drives Debian's Chromium; Playwright never downloads one.
browser-deps:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

clean:
	rm -rf $(VENV) .venv-* .pytest_cache demo.db
