# Two commands from a clean clone: `make demo` and `make test`. Only python3 and make needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test browser lint format bench clean

$(STAMP): pyproject.toml requirements-torch.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-torch.txt
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: $(STAMP) browser
	$(BIN)/python -m pytest

# The web-page tests drive a real Chromium: install one when none is found (scripts/browser.sh).
browser: $(STAMP)
	bash scripts/browser.sh $(BIN)/python

lint: $(STAMP)
	$(BIN)/ruff check officescore tests bench
	$(BIN)/ruff format --check officescore tests bench

format: $(STAMP)
	$(BIN)/ruff format officescore tests bench
	$(BIN)/ruff check --fix officescore tests bench

bench: $(STAMP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) demo .pytest_cache .ruff_cache
