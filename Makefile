# Set-up is two commands on a fresh machine:  make demo   and   make test
# Each creates .venv, installs the CPU build of torch first (so pip never pulls a CUDA
# build), then the package with its test extras and phate (non-commercial licence; used
# only by comparison tests and benchmarks, never by the package itself).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
OUT    ?= scfim_output

.PHONY: demo test lint bench venv clean

$(VENV)/.installed: pyproject.toml
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
