# Two commands do all the set-up on a fresh machine: `make dev` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install dev test lint typecheck unit integration bench fuzz synth migrate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/confab serve $(ARGS)

migrate: $(STAMP)
	$(BIN)/confab db migrate

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# One worker per core, at most four (each starts its own embedded PostgreSQL); the CDK synth tests stay on one
# worker (pytest_xdist_make_scheduler in tests/conftest.py), so each stage is synthesized once. PYTEST_WORKERS=0 runs them in
# this process.
PYTEST_WORKERS ?= auto
test: lint typecheck
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadgroup $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

# schemathesis against the local server as a user and as a super_admin: no generated request may get a server
# error. Minutes, so not part of `make test`; schemathesis lives in its own virtualenv, not in the project's.
FUZZ_VENV := .venv-fuzz
fuzz: $(STAMP)
	test -x $(FUZZ_VENV)/bin/schemathesis || \
		($(PYTHON) -m venv $(FUZZ_VENV) && $(FUZZ_VENV)/bin/python -m pip install --quiet 'schemathesis>=4.32,<5')
	$(BIN)/python -m tests.fuzz.fuzz_api --schemathesis $(FUZZ_VENV)/bin/schemathesis $(ARGS)

# Templates into cdk.out/ for STAGE (dev or prod): no Docker, no AWS credentials, no git; the first run
# downloads the arm64 wheels into build/layer/ (cached). `npx cdk synth -c stage=prod` does the same.
STAGE ?= dev
synth: $(STAMP)
	JSII_SILENCE_WARNING_DEPRECATED_NODE_RELEASE=1 $(BIN)/python -m infra.app -c stage=$(STAGE) $(SYNTH_ARGS)

clean:
	rm -rf $(VENV) cdk.out build .mypy_cache .ruff_cache
