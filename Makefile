# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.isoflow-installed
CORES ?= 2

.PHONY: env demo test test-fast lint format clean-demo bench rehearsal debian

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
	$(BIN)/ruff check isoflow scripts tests bench docs
	$(BIN)/ruff format --check isoflow scripts tests bench docs
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/snakemake --lint --configfile config/config.yaml

format: env
	$(BIN)/snakefmt Snakefile rules
	$(BIN)/ruff format isoflow scripts tests bench docs
	$(BIN)/ruff check --fix isoflow scripts tests bench docs

# The Debian tools some tests compare against or drive (gffread, samtools, Chromium, SLURM,
# MariaDB): installed here when running as root (CI, containers); otherwise pytest says right
# after collecting how many tests it will skip and the command that would let them run.
debian:
	@if [ "$$(id -u)" = 0 ]; then bash .ci/install-debian.sh || \
	  echo "make test: could not install the Debian tools (no apt or no network?); the tests that need them will be skipped, counted by reason"; fi

test: debian lint
	$(BIN)/pytest -ra

# The unit tests (tests/unit/) without those marked slow (DDP, training runs, Snakemake runs,
# real-size models): no lint, no Debian tools, no workflow tests. For the edit-test loop;
# `make test` (CI) still runs everything.
test-fast: env
	$(BIN)/pytest -ra -m "not slow" tests/unit

clean-demo:
	rm -rf results/ resources/demo/ logs/

# Benchmarks (not part of `make test`): each compares against a named reference in the same
# run and prints what docs/benchmarks.md records. Scratch data goes to $(BENCH_TMP).
BENCH_TMP ?= /tmp/isoflow-bench
# torch's OpenMP threads sleep while they wait, as in every workflow job (rules/common.smk); a
# value in the environment wins
bench: export OMP_WAIT_POLICY ?= PASSIVE
bench: env
	mkdir -p $(BENCH_TMP)
	$(BIN)/python bench/bench_windows.py --scratch $(BENCH_TMP)/windows
	$(BIN)/python bench/make_gencode_scale.py $(BENCH_TMP)/annotation/full.gtf
	$(BIN)/python bench/bench_annotation.py $(BENCH_TMP)/annotation/full.gtf
	$(BIN)/python bench/make_gencode_scale.py $(BENCH_TMP)/data_half/gencode_scale.gtf \
		--spacing 12000 --genome $(BENCH_TMP)/data_half/genome.fa
	samtools faidx $(BENCH_TMP)/data_half/genome.fa
	mkdir -p $(BENCH_TMP)/data_half/old && git archive c40b196 isoflow | tar -x -C $(BENCH_TMP)/data_half/old
	$(BIN)/python bench/bench_data_half.py $(BENCH_TMP)/data_half/gencode_scale.gtf \
		$(BENCH_TMP)/data_half/genome.fa --old $(BENCH_TMP)/data_half/old \
		--work $(BENCH_TMP)/data_half/work --repeats 2
	$(BIN)/python bench/bench_targets.py --rows 20000 --repeat 3 --work $(BENCH_TMP)/targets
	$(BIN)/python bench/bench_download.py --scratch $(BENCH_TMP)/download
	$(BIN)/python bench/bench_train_cache.py
	$(BIN)/python bench/bench_parse.py --scratch $(BENCH_TMP)/parse --repeats 5
	$(BIN)/python bench/bench_cpu_kernels.py
	$(BIN)/python bench/bench_weights_digest.py
	$(BIN)/python bench/bench_fsync.py --folder $(BENCH_TMP)/fsync
	mkdir -p $(BENCH_TMP)/demo && $(BIN)/python bench/bench_demo.py --cores $(CORES) --scratch $(BENCH_TMP)/demo

# Full-scale rehearsal of the data half (issue 9 item 4; not part of `make test`): inputs in
# the real formats at the real sizes (GRCh38 contigs, GENCODE v26 layout GTF, GTEx v8 layout
# GCT) generated under $(REHEARSAL_DIR), the real rules through Snakemake up to
# results/dataset/ there (config/rehearsal.yaml), gffread and zcat as references in the same
# run, then the table and the issue's targets (bench/rehearsal.py). 26 min in all on the loaded 2-core dev box;
# REHEARSAL_SCALE=0.02 for a quick check. Needs ~10 GB free under $(REHEARSAL_DIR).
REHEARSAL_DIR ?= /tmp/isoflow-rehearsal
REHEARSAL_SCALE ?= 1
rehearsal: env
	$(BIN)/python bench/rehearsal.py run --dir $(REHEARSAL_DIR) --scale $(REHEARSAL_SCALE)
