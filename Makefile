# Two commands do all the set-up: `make demo` and `make test`.
# The virtual environment is rebuilt only when pyproject.toml changes (stamp file).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synthfair-installed
DEMO_OUT ?= demo
# make demo TRAIN=1 retrains the phantom-64 model (its three stages: ~3.5 hours on 2 cores) and the oracles

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/synthfair demo --out $(DEMO_OUT) $(if $(TRAIN),--train,)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/phantom.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/sample.py
	$(BIN)/python bench/download.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
