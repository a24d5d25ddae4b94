# Everyday commands. `make baseline` and `make test` work as the very first command on a fresh
# clone: every target depends on the virtualenv, which `setup` creates and installs into.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 5000
NOTEBOOK_PORT ?= 8888
TEST_WORKERS ?= 2

.PHONY: help setup data baseline cnn best sweep sweep-parallel team compare register serve ui server user notebook test test-fast bench bench-seeds bench-sweep lint format clean

help:  ## list the everyday commands (this)
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /\1\t/' | \
		awk -F'\t' '{ printf "  make %-15s %s\n", $$1, $$2 }'

setup: $(STAMP)  ## create .venv and install the project (every target does this first)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 14) else "mnist-exp needs Python 3.10-3.13 (hydra-core 1.3); set PYTHON=python3.12 or similar")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "Installing mnist-exp and its dependencies into $(VENV) (2-3 minutes, about 4 GB)..."
	$(PY) -m pip install -e '.[dev,ray,notebook,postgres,jax]'
	@touch $@

data: setup  ## fetch MNIST into data/ and verify its checksums
	$(PY) -m mnist_exp.data

baseline: data  ## the tutorial's network, tracked in MLflow
	$(PY) -m mnist_exp.run +experiment=baseline

cnn: data  ## the Conv2D/MaxPooling network, trained as the tutorial trains
	$(PY) -m mnist_exp.run +experiment=cnn

best: data  ## the best recipe found: >= 99.62% test accuracy in <= 4 min 15 s (worst of 3 seeds, float32, 2-core AMD EPYC Zen 4, AVX-512)
	$(PY) -m mnist_exp.run +experiment=best

sweep: data  ## hidden-layer width sweep: one parent run, five child runs
	$(PY) -m mnist_exp.run --multirun +experiment=hidden_sweep

compare: setup  ## the latest sweep by variant (seeds, intervals, ties) or by run; ARGS="--all" or ARGS="--parent RUN_ID"
	$(PY) -m mnist_exp.compare $(ARGS)

register: setup  ## register the latest sweep's best variant's best seed: make register NAME=mnist-best [ARGS=...]
	@test -n "$(NAME)" || { echo "usage: make register NAME=<model name> [ARGS=--all]" >&2; exit 2; }
	$(PY) -m mnist_exp.compare --register $(NAME) $(ARGS)

serve: setup  ## a model over HTTP on 127.0.0.1:5001: make serve MODEL=models:/mnist-best/latest [PORT=N]
	@test -n "$(MODEL)" || { echo "usage: make serve MODEL=models:/<name>/latest [PORT=5001]" >&2; exit 2; }
	$(PY) -m mnist_exp.serve --model $(MODEL) --port $(PORT)

serve: PORT = 5001

ui: setup  ## the MLflow UI (and tracking server) over mlruns/, on http://127.0.0.1:5000 (PORT=N; AUTH=1: users)
	$(PY) -m mnist_exp.server --port $(PORT) $(if $(AUTH),--auth)

user: setup  ## add a user to `make ui AUTH=1`: make user NAME=alice PERMISSION=READ|EDIT|MANAGE
	@test -n "$(NAME)" -a -n "$(PERMISSION)" || { echo "usage: make user NAME=alice PERMISSION=EDIT [PORT=5000]" >&2; exit 2; }
	$(PY) -m mnist_exp.users $(NAME) $(PERMISSION) --uri http://127.0.0.1:$(PORT)

server: ui  ## the same process: `make server`, then add tracking=server to runs in other terminals

# --allow-root: Jupyter refuses to start as root otherwise, and containers and CI run as root.
notebook: data  ## the tutorial as a notebook, in JupyterLab on http://127.0.0.1:8888 (NOTEBOOK_PORT=N)
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(NOTEBOOK_PORT) \
		--ServerApp.root_dir=$(CURDIR) --allow-root notebooks/tutorial.ipynb

sweep-parallel: data  ## a sweep 2 jobs at a time, logged through a server this target starts and stops
	$(PY) -m mnist_exp.server --port 0 -- \
		$(PY) -m mnist_exp.run --multirun hydra/launcher=parallel tracking=server \
		$(if $(ARGS),$(ARGS),+experiment=hidden_sweep)

team: data  ## the team setup on this machine: PostgreSQL, an MLflow server on it, a Ray head, a sweep
	$(PY) -m mnist_exp.team $(if $(ARGS),-- $(ARGS))

# Two workers (pytest-xdist) by default, as on the 2-core CI machine: TEST_WORKERS=auto for one
# per core, TEST_WORKERS=0 for one process. The data is fetched first, once, not by each worker.
test: data  ## the whole suite, slow tests included (what CI runs)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

test-fast: data  ## skip the tests that train or sweep
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

bench: data  ## tutorial code vs mnist_exp.run (train.backend=auto, and the other backend for the dense net), one seed vs five together, a run's figures, then quick look + quick sweep overhead (long: trains the CNN 3 times); writes bench/RESULTS.md
	$(PY) bench/bench.py
	$(PY) bench/seeds_together.py
	$(PY) bench/figures.py
	$(PY) bench/overhead.py --backends tensorflow jax

bench-seeds: data  ## the baseline once vs five seeds with hydra/launcher=together vs one after another; appends to bench/RESULTS.md
	$(PY) bench/seeds_together.py

bench-sweep: data  ## sweep throughput, one job at a time vs two (6 dense jobs of 3 epochs, twice); appends to bench/RESULTS.md
	$(PY) bench/sweep_throughput.py

lint: setup  ## ruff (lint and formatting) and the import contracts (lint-imports: imports only go down the layers)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: setup  ## ruff: fix what it can and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:  ## remove the venv, caches and Hydra outputs; keeps data/ and the MLflow store
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache outputs multirun src/*.egg-info
