# The two commands a new user runs: `make demo` and `make test`.
# Both create .venv on first use (idempotent), install the CPU build of torch first
# (override with e.g. TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"),
# then the package with its extras.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= eval,dev
BIN := $(VENV)/bin
STAMP := $(VENV)/.sparrow-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint ablation options venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sparrow demo --out outputs/demo

test: $(STAMP)
	$(BIN)/python -m pytest $(if $(CI),-m "not slow",) -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests benchmarks experiments

# The SynRef hard ablation of docs/training.md (trains four models on CPU: about 75 min, not a test).
ablation: $(STAMP)
	$(BIN)/python experiments/synref_ablation.py --out runs/ablation

# The inference options (a)-(d) of docs/inference.md with the bundled model on SynRef hard.
options: $(STAMP)
	$(BIN)/python experiments/inference_options.py --out runs/options

clean:
	rm -rf $(VENV) outputs build *.egg-info
