# The two commands a newcomer needs: `make demo` and `make test`.
# Both bootstrap .venv from requirements.lock on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck check proto bench lock clean grape

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m peer demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy peer grape_client localgrape bench devsupport

check: lint typecheck test

# Regenerate peer/gen from proto/ (committed; tests fail when it is stale).
proto: $(STAMP)
	$(BIN)/python -m peer._protogen

bench: $(STAMP)
	$(BIN)/python -m bench

# Real grenache-grape for the interop tests (pinned in package.json/package-lock.json).
grape:
	npm ci --no-audit --no-fund

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^auction-peer' > requirements.lock

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
