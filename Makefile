# make demo : create the environment and run the whole graph on the embedded offline default
# make report: (re)write results/report.html, the Snakemake report of the demo build
# make test : create the environment if needed and run the test suite (make test-fast: the unit tier)
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: env demo report test test-fast lint dry-run clean-demo clean-all

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	@$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

demo: env
	$(BIN)/snakemake --profile profiles/demo all
	$(BIN)/snakemake --profile profiles/demo --report results/report.html all
	$(BIN)/mmfr show results/summary.duckdb

# the report of the demo build (tables and plots of results/summary.duckdb), self-contained HTML
report: env
	$(BIN)/snakemake --profile profiles/demo --report results/report.html all

test: env
	$(BIN)/pytest -q tests

# the unit tier: every test that neither runs the workflow nor a cluster (under 2 minutes)
test-fast: env
	$(BIN)/pytest -q -m "not workflow and not slurm" tests

lint: env
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules

dry-run: env
	$(BIN)/snakemake -n mfr123k_8b_scores

# what the demo built (its outputs, logs, provenance records and journals), nothing of another recipe
clean-demo: env
	$(BIN)/mmfr clean all --profile profiles/demo
	rm -f results/report.html

# every artifact of every recipe: data, models, results, logs, provenance, Snakemake's metadata
clean-all:
	rm -rf data models results logs provenance .snakemake
