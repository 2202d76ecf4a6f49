# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.isoflow-installed
CORES ?= 2

.PHONY: env demo test lint format clean-demo bench

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3"
	# torch==2.13.0 is pinned in requirements.lock: pip takes the local CPU wheel.
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

env: $(STAMP)

demo: env
	$(BIN)/snakemake --profile profiles/default --configfile config/demo.yaml --cores $(CORES)
	$(BIN)/snakemake --profile profiles/default --configfile config/demo.yaml --report results/report.html

lint: env
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/ruff check isoflow scripts tests bench
	$(BIN)/ruff format --check isoflow scripts tests bench
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/snakemake --lint --configfile config/config.yaml

format: env
	$(BIN)/snakefmt Snakefile rules
	$(BIN)/ruff format isoflow scripts tests bench
	$(BIN)/ruff check --fix isoflow scripts tests bench

test: lint
	$(BIN)/pytest -ra

clean-demo:
	rm -rf results/ resources/demo/ logs/

bench: env
	$(BIN)/python bench/run_all.py
