# `make demo` and `make test` set up a fresh machine by themselves: they create the
# virtual environment when it is missing and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PANDAS ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dk-installed

.PHONY: demo test bench lab clean

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
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .venv-* .pytest_cache demo.db
