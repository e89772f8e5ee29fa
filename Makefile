# Two commands from a clean clone: `make demo` and `make test`. Only python3 and make needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install labelstudio demo test lint format bench clean

# Label Studio (the real server the label tests talk to) pins Django and friends: it gets its own
# venv. Keep LABEL_STUDIO in step with the `labelstudio-server` extra in pyproject.toml.
LABEL_STUDIO := label-studio==1.23.2
LS_VENV := .venv-labelstudio
LS_STAMP := $(LS_VENV)/.installed

$(STAMP): pyproject.toml requirements-torch.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-torch.txt
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(LS_STAMP): Makefile
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --quiet '$(LABEL_STUDIO)'
	touch $(LS_STAMP)

labelstudio: $(LS_STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: $(STAMP) $(LS_STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check officescore tests bench
	$(BIN)/ruff format --check officescore tests bench

format: $(STAMP)
	$(BIN)/ruff format officescore tests bench
	$(BIN)/ruff check --fix officescore tests bench

bench: $(STAMP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(LS_VENV) demo .pytest_cache .ruff_cache
