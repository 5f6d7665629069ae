# Every target makes .venv and installs what it needs; a second run installs nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CODE := isiqbot bot dialogs storage locales bench

.PHONY: demo test lint run migrate bench bench-dialog chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
