# The two commands of the quick start: `make demo` and `make test`.
# Each one sets everything up on a fresh clone (virtualenv, pip install, npm ci)
# and is quick when run again (stamp files).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# What `make demo` runs needs only the runner's own dependencies (no Pulumi, no dev tools).
RUN_STAMP := $(VENV)/.installed-run
NODE_STAMP := node_modules/.installed
# A client of the previous SDK generation (azure-batch 14, msrest): it cannot live
# next to azure-batch 15, so the compatibility test drives it from its own venv.
OLD_SDK_VENV := .venv-oldsdk
OLD_SDK_STAMP := $(OLD_SDK_VENV)/.installed
# The Azure CLI (its `az batch` commands are another client of localbatch), in its
# own venv: it pins its own azure-batch generation.
AZ_CLI_VENV := .venv-azcli
AZ_CLI_STAMP := $(AZ_CLI_VENV)/.installed

.PHONY: setup demo test lint bench bench-quick clean

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,infra]'
	touch $@

$(RUN_STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(OLD_SDK_STAMP):
	python3 -m venv $(OLD_SDK_VENV)
	$(OLD_SDK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'azure-batch==14.2.0'
	touch $@

$(AZ_CLI_STAMP):
	python3 -m venv $(AZ_CLI_VENV)
	$(AZ_CLI_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'azure-cli==2.91.0'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(RUN_STAMP) $(NODE_STAMP)
	$(VENV)/bin/runner submit --report samples/

# The four installs (two venvs of clients, ours, npm) are independent: run them at once.
# Tests run in two processes (pytest-xdist), a test file each at a time: most of a test's
# time is real processes and servers waiting on each other, so two files share 2 cores well.
test:
	$(MAKE) --no-print-directory -j4 $(STAMP) $(NODE_STAMP) $(OLD_SDK_STAMP) $(AZ_CLI_STAMP)
	OLD_AZURE_BATCH_PYTHON=$(CURDIR)/$(OLD_SDK_VENV)/bin/python AZ_CLI=$(CURDIR)/$(AZ_CLI_VENV)/bin/az \
		$(PY) -m pytest -n 2 --dist loadfile

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/run.py

bench-quick: setup
	$(PY) bench/run.py --quick

clean:
	rm -rf $(VENV) $(OLD_SDK_VENV) $(AZ_CLI_VENV) node_modules .runner results .pytest_cache .mypy_cache .ruff_cache
