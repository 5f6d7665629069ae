# Every target makes .venv and installs what it needs; a second run installs nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CODE := isiqbot bot dialogs storage locales bench

.PHONY: demo test lint run migrate bench bench-dialog chaos lock image smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Exactly the locked versions, every file checked against its hash; then the project itself, without deps.
$(STAMP): pyproject.toml requirements-dev.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)  ## file an application in the terminal, then act on it as staff
	$(BIN)/isiqbot chat

run: $(STAMP)  ## the service: every channel that has credentials
	$(BIN)/isiqbot run

migrate: $(STAMP)
	$(BIN)/isiqbot migrate

lint: $(STAMP)
	$(BIN)/ruff check $(CODE) tests
	$(BIN)/ruff format --check $(CODE) tests
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

chaos: $(STAMP)  ## the long chaos suite: 100 subscribers through kills, outages and 10,000 hostile updates
	ISIQBOT_CHAOS=long $(BIN)/pytest -q -p no:cacheprovider tests/chaos

bench: $(STAMP)  ## the outage storm: isiqbot run beside a bare aiogram bot, 40 chats every 3 s, SQLite then PostgreSQL
	$(BIN)/python -m bench.storm
	$(BIN)/python -m bench.storm --database postgresql

bench-dialog: $(STAMP)  ## updates per second through the dialog service alone (BENCH_DATABASE_URL to use PostgreSQL)
	$(BIN)/python bench/throughput.py --subscribers $${BENCH_SUBSCRIBERS:-300} $${BENCH_DATABASE_URL:+--database $$BENCH_DATABASE_URL}

# uv keeps the versions already in a lock file that still satisfy pyproject.toml; UPGRADE=1 takes the newest.
UV_COMPILE = $(BIN)/uv pip compile --quiet pyproject.toml --python-version 3.11 --universal --generate-hashes \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)

lock: $(STAMP)  ## pin pyproject.toml's dependencies with hashes in requirements.lock and requirements-dev.lock (UPGRADE=1: newest)
	$(UV_COMPILE) -o requirements.lock
	$(UV_COMPILE) --extra dev -o requirements-dev.lock

image:  ## the container image (Dockerfile), as compose.yaml builds it
	docker build -t isiqbot:local .

smoke:  ## build the image and check it runs: --help, /healthz, /readyz, a clean stop (docker or podman)
	.ci/container-smoke

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
