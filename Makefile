# tfdl: `make help` lists the targets. Every target installs first when .venv is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIPELINE ?= pipelines/mlp.yaml
TUNING ?= tuning/mlp_random.yaml
WORKERS ?= 2
PORT ?= 5000
# Test processes: many tests wait on subprocesses and servers, so one more than 2 cores pays.
JOBS ?= 3

.DEFAULT_GOAL := help
.PHONY: help install lock train example-data gradients lectures tune tune-distributed compare test test-fast lint ui clean e2e bench bench-accuracy bench-gpu test-gpu server

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# One line per phase rather than pip's listing of every package; pip still prints its warnings
# and errors.
$(BIN)/tfdl: pyproject.toml constraints.txt
	@version=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2]); sys.exit(sys.version_info < (3, 11))' 2>/dev/null) || { \
	  echo "error: tfdl needs Python 3.11+; found $${version:-no Python} at $(PYTHON) (set PYTHON=python3.11)" >&2; exit 1; }; \
	echo "installing tfdl and its dependencies (TensorFlow, Keras, MLflow, Keras Tuner; about 1 GB to download, 3 GB on disk) into $(VENV): about 1-3 minutes on a fresh machine"; \
	start=$$(date +%s); \
	echo "  creating $(VENV) with Python $$version ($(PYTHON))" && $(PYTHON) -m venv $(VENV) && \
	echo "  upgrading pip" && $(BIN)/pip install --quiet --upgrade pip && \
	echo "  installing tfdl[dev,server] in editable mode, at the versions of constraints.txt" && \
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,server]' || exit 1; \
	echo "installed in $$(($$(date +%s) - start)) s; make help lists the targets"
	@touch $@

install: $(BIN)/tfdl ## Create .venv and install tfdl with its dev tools, at the tested versions

# The newest releases pyproject.toml admits, installed into a scratch venv and frozen:
# run the tests on them (make install && make test) before committing the new file.
lock: ## Refresh constraints.txt to the newest allowed releases (then make install, make test)
	rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install --quiet --upgrade pip
	build/lock-venv/bin/pip install --quiet -e '.[dev,server]'
	{ echo "# The exact versions the test suite passed on; make install installs these."; \
	  echo "# Refresh deliberately with make lock, then make install and make test."; \
	  build/lock-venv/bin/pip freeze --exclude-editable; } > constraints.txt
	rm -rf build/lock-venv
	@echo "constraints.txt refreshed: run make install (it reinstalls) and make test"

train: $(BIN)/tfdl ## Train a pipeline: make train [PIPELINE=pipelines/mlp.yaml] [ARGS="train.epochs=3"]
	$(BIN)/tfdl train $(PIPELINE) $(ARGS)

# Every worker a process on 127.0.0.1 with a free port, worker 0 (the chief, in front)
# recording the run; when the chief stops, workers still waiting for it are stopped too.
# `run` execs tfdl in place of its subshell: $! is the worker's tfdl itself, which `kill`
# reaches (killing a subshell that waits for tfdl would leave tfdl running). A worker
# still joining the cluster does not end at SIGTERM (TensorFlow takes it while it waits
# in C++): 5 s later it gets SIGKILL.
.PHONY: train-distributed
train-distributed: $(BIN)/tfdl ## tf.distribute over WORKERS processes: make train-distributed [WORKERS=2] [PIPELINE=...] [ARGS=...]
	@workers=$$($(BIN)/python -c 'import socket; s = [socket.socket() for _ in range($(WORKERS))]; \
	  [x.bind(("127.0.0.1", 0)) for x in s]; print(",".join("127.0.0.1:%d" % x.getsockname()[1] for x in s))') \
	  || exit 1; \
	run() { exec $(BIN)/tfdl train $(PIPELINE) $(ARGS) train.distribution=multi_worker --workers $$workers "$$@"; }; \
	echo "$(WORKERS) workers on $$workers: worker 0 records the run"; pids=; \
	for i in $$(seq 1 $$(($(WORKERS) - 1))); do run --worker-index $$i & pids="$$pids $$!"; done; \
	(run --worker-index 0); status=$$?; \
	if [ $$status -ne 0 ] && [ -n "$$pids" ]; then kill $$pids 2>/dev/null; \
	  (sleep 5; kill -9 $$pids) >/dev/null 2>&1 & fi; \
	wait $$pids; exit $$status

example-data: $(BIN)/tfdl ## Write the example image folder data/shapes (for pipelines/shapes_folder.yaml)
	test -d data/shapes || $(BIN)/tfdl make-example-data shapes data/shapes

gradients: $(BIN)/tfdl ## Vanishing gradients: deep sigmoid vs ReLU+He vs residual, per-layer norms in MLflow
	for p in sigmoid relu_he residual; do $(BIN)/tfdl train pipelines/gradients_$$p.yaml || exit 1; done

# One MLflow experiment per demonstration (tracking.experiment in each pipeline).
LECTURES := activation_linear activation_relu \
	init_zeros init_glorot init_he \
	schedule_constant schedule_dropout_ramp schedule_exponential schedule_cosine_warmup \
	schedule_one_cycle schedule_plateau \
	batch_full batch_sgd batch_mini
LECTURE_EXPERIMENTS := lecture-activation-functions lecture-weight-initialisation \
	lecture-schedules lecture-optimizers lecture-batch-size

lectures: $(BIN)/tfdl ## Every lecture demonstration into its own MLflow experiment (about 5 minutes)
	for p in $(LECTURES); do $(BIN)/tfdl train pipelines/lectures/$$p.yaml || exit 1; done
	$(BIN)/tfdl tune tuning/optimizers_grid.yaml
	@echo "compare them: make ui, or tfdl compare --experiment NAME for each of: $(LECTURE_EXPERIMENTS)"

tune: $(BIN)/tfdl ## Keras Tuner search: make tune [TUNING=tuning/mlp_random.yaml] [ARGS="max_trials=3"]
	$(BIN)/tfdl tune $(TUNING) $(ARGS)

tune-distributed: $(BIN)/tfdl ## A chief and WORKERS workers on 127.0.0.1 (one GPU each when there are GPUs)
	$(BIN)/tfdl tune $(TUNING) $(ARGS) --workers $(WORKERS)

test: $(BIN)/tfdl ## Run the whole test suite (slow end-to-end tests included) in JOBS processes
	$(BIN)/pytest -q -n $(JOBS) --dist worksteal

test-fast: $(BIN)/tfdl ## Run the tests not marked slow
	$(BIN)/pytest -q -n $(JOBS) -m "not slow"

e2e: $(BIN)/tfdl ## A real mlflow server and headless Chromium over its UI (installs chromium via apt)
	@command -v chromium >/dev/null || { echo "installing Debian's chromium (headless, for the browser test)"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -q --no-install-recommends chromium >/dev/null; } || \
	  { echo "error: apt-get could not install chromium" >&2; exit 1; }
	$(BIN)/pytest -q tests/test_browser.py tests/test_server.py

bench: $(BIN)/tfdl ## Speed, overhead and memory benchmarks; writes benchmarks/results/speed.{md,json}
	$(BIN)/python -m benchmarks.run $(ARGS)

bench-gpu: $(BIN)/tfdl ## On a GPU: samples/s of fit and the custom loop, mixed precision and XLA on/off; a mirrored search
	@$(BIN)/python -m benchmarks.gpu $(ARGS)

test-gpu: $(BIN)/tfdl ## On a GPU: every architecture for an epoch in mixed precision, a search (skipped without one)
	$(BIN)/pytest -q -m gpu tests/test_gpu.py

bench-accuracy: $(BIN)/tfdl ## Every pipeline against baselines, the goals, time to goal vs plain Keras [ARGS="mlp race"]
	$(BIN)/python -m benchmarks.accuracy $(ARGS)

lint: $(BIN)/tfdl ## Check style with ruff
	$(BIN)/ruff check tfdl tests benchmarks
	$(BIN)/ruff format --check tfdl tests benchmarks

compare: $(BIN)/tfdl ## Compare runs at the terminal: make compare [ARGS="--experiment digits-mlp --metric val_accuracy"]
	$(BIN)/tfdl compare $(ARGS)

ui: $(BIN)/tfdl ## Open the MLflow UI over the project store on 127.0.0.1 [PORT=5000]
	$(BIN)/tfdl ui --port $(PORT)

# The password in DB goes by the environment, and the line is not echoed: ps and the
# terminal do not show it.
server: $(BIN)/tfdl ## A team's MLflow server on PostgreSQL [PORT=5000] [DB=postgresql://...] [PG_PORT=] [LISTEN=0.0.0.0]
	@TFDL_SERVER_DB='$(DB)' $(BIN)/python -m tfdl.team_server --port '$(PORT)' \
	  $(if $(PG_PORT),--pg-port '$(PG_PORT)') $(if $(LISTEN),--host '$(LISTEN)') \
	  $(if $(ALLOWED_HOSTS),--allowed-hosts '$(ALLOWED_HOSTS)')

clean: ## Remove caches and build files (keeps .venv and the runs in mlruns/)
	rm -rf build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
