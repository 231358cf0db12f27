# The two commands a newcomer needs: `make demo` and `make test`.
# Both bootstrap .venv on first use: `make demo` from requirements.lock (the runtime
# set, what `pip install .` needs), everything else from requirements-dev.lock (the
# runtime set plus the test and dev tools).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP     := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck check proto bench lock clean grape wheel-check

# $(1): the lock file to install. `pip check` fails when the lock does not satisfy
# pyproject's ranges, so a dependency missing from a lock shows up here.
define install_venv
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(1)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
endef

$(RUNTIME_STAMP): requirements.lock pyproject.toml
	$(call install_venv,requirements.lock)
	touch $@

$(DEV_STAMP): requirements-dev.lock pyproject.toml
	$(call install_venv,requirements-dev.lock)
	touch $@ $(RUNTIME_STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/python -m peer demo

# The suite under coverage (configured in pyproject.toml, subprocesses included):
# prints the summary and fails below [tool.coverage.report] fail_under.
test: $(DEV_STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/python -m coverage run -m pytest
	$(BIN)/python -m coverage combine --quiet
	$(BIN)/python -m coverage report

lint: $(DEV_STAMP)
	$(BIN)/ruff check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy peer grape_client localgrape bench devsupport

check: lint typecheck test

# Build the wheel, install it into a bare venv (no lock, no extras) and run its demo.
wheel-check:
	.ci/wheel-check

# Regenerate peer/gen from proto/ (committed; tests fail when it is stale).
proto: $(DEV_STAMP)
	$(BIN)/python -m peer._protogen

bench: $(DEV_STAMP)
	$(BIN)/python -m bench

# Real grape for the interop tests (pinned in package.json/package-lock.json).
grape:
	npm ci --no-audit --no-fund

# requirements-dev.lock: a freeze of .venv. requirements.lock: what `pip install .`
# resolves to in a fresh venv, held to the dev lock's versions.
LOCK_VENV := $(VENV)-lock
lock: $(DEV_STAMP)
	head -1 requirements-dev.lock > requirements-dev.lock.new
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^auction-peer' \
		>> requirements-dev.lock.new
	mv requirements-dev.lock.new requirements-dev.lock
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet -c requirements-dev.lock .
	head -1 requirements.lock > requirements.lock.new
	$(LOCK_VENV)/bin/python -m pip freeze | grep -v '^auction-peer' >> requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(LOCK_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache \
		.coverage .coverage.*
