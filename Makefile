# Set-up is two commands on a fresh machine:  make demo   and   make test
# Each creates .venv, installs the CPU build of torch first (so pip never pulls a CUDA
# build), then the package with its test extras and phate (non-commercial licence; used
# only by comparison tests and benchmarks, never by the package itself).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
OUT    ?= scfim_output

.PHONY: demo test lint bench venv clean check-python

# the Python that creates the venvs: the version pyproject.toml requires (CI tests 3.11)
PY_MIN := 3.10
check-python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < tuple(map(int, "$(PY_MIN)".split("."))))' \
	  || { echo "scfim needs Python >= $(PY_MIN); $(PYTHON) is $$($(PYTHON) -V 2>&1). Use e.g. make demo PYTHON=python3.11"; exit 1; }

$(VENV)/.installed: pyproject.toml | check-python
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[test,bench]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/scfim demo --out $(OUT)

test: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q

bench: venv
	$(PY) benchmarks/bench_diffusion.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache

# Documentation. Its own venv, .venv-docs, so the docs toolchain never touches .venv.
# `make docs` builds the HTML into docs/_build/html with warnings as errors and executes
# the tutorials (tutorials/*.ipynb are copied into docs/tutorials/ by conf.py; the iPSC
# tutorial only when its data are cached, see docs/conf.py); `make docs-check` opens the
# index, installation, API and tutorial pages in headless Chromium, screenshots them into
# docs/_build/screenshots/ and fails on broken images, links or error outputs, on a public
# function missing from the API page and on an installation page without clone and wheel
# instructions. It needs Debian's Chromium and its driver, installed once with
#     sudo apt-get install -y chromium chromium-driver
DOCS_VENV := .venv-docs
DOCS_PY   := $(DOCS_VENV)/bin/python

.PHONY: docs docs-check docs-venv docs-clean

$(DOCS_VENV)/.installed: pyproject.toml | check-python
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_PY) -m pip install --quiet --upgrade pip
	$(DOCS_PY) -m pip install --quiet torch==2.13.0
	$(DOCS_PY) -m pip install --quiet -e ".[doc,bench]"
	touch $@

docs-venv: $(DOCS_VENV)/.installed

docs: docs-venv
	$(DOCS_PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "HTML: docs/_build/html/index.html"

docs-check: docs
	$(DOCS_PY) docs/check_site.py docs/_build/html --out docs/_build/screenshots

docs-clean:
	rm -rf docs/_build docs/tutorials docs/generated docs/jupyter_execute
