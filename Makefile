# Two commands from a clean clone: `make demo` and `make test`. Only python3 and make needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install labelstudio demo test browser lint format docs bench clean

# Label Studio (the real server the label tests talk to) pins Django and friends: it gets its own
# venv. Keep LABEL_STUDIO in step with the `labelstudio-server` extra in pyproject.toml.
LABEL_STUDIO := label-studio==1.23.2
LS_VENV := .venv-labelstudio
LS_STAMP := $(LS_VENV)/.installed-$(subst ==,-,$(LABEL_STUDIO))
LS_DB := $(LS_VENV)/officescore-tests

$(STAMP): pyproject.toml requirements-torch.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-torch.txt
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(LS_STAMP):
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --quiet '$(LABEL_STUDIO)'
	# A fully migrated database for the tests to copy (tests/labelstudio_server.py); offline.
	rm -rf $(LS_DB) && mkdir -p $(LS_DB)/migrating
	LABEL_STUDIO_BASE_DATA_DIR=$(CURDIR)/$(LS_DB)/migrating LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false \
	  SENTRY_DSN= FRONTEND_SENTRY_DSN= $(LS_VENV)/bin/label-studio version > /dev/null
	mv $(LS_DB)/migrating/label_studio.sqlite3 $(LS_DB)/ && rm -rf $(LS_DB)/migrating
	touch $(LS_STAMP)

labelstudio: $(LS_STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

# Tests are independent (each starts its own servers on free ports): one worker per core, each with
# its share of the cores' threads (tests/conftest.py). Tests go out two at a time, so the slow ones
# (sorted first there) spread over the workers instead of all landing in the first worker's batch.
test: $(STAMP) $(LS_STAMP) browser
	$(BIN)/python -m pytest -n auto --maxschedchunk=2

# The web-page tests drive a real Chromium: install one when none is found (scripts/browser.sh).
browser: $(STAMP)
	bash scripts/browser.sh $(BIN)/python

lint: $(STAMP)
	$(BIN)/ruff check officescore tests bench
	$(BIN)/ruff format --check officescore tests bench

format: $(STAMP)
	$(BIN)/ruff format officescore tests bench
	$(BIN)/ruff check --fix officescore tests bench

# docs/commands.md is generated from the command-line app (tests/test_reference.py checks it is current).
docs: $(STAMP)
	$(BIN)/python -m officescore.cli.reference

# Each benchmark runs for minutes to hours with its own options (docs/BENCHMARKS.md): list them.
bench: $(STAMP)
	$(BIN)/python scripts/bench_list.py

clean:
	rm -rf $(VENV) $(LS_VENV) demo .pytest_cache .ruff_cache
