# ordersync — the whole developer workflow. Every target bootstraps .venv itself.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck install clean lock deploy-test

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the sync end to end against the built-in sandbox APIs (no credentials needed).
demo: $(STAMP)
	$(BIN)/ordersync demo

## The whole suite: lint, types, unit, integration (SQLite + PostgreSQL + Redis/Celery), chaos.
test: $(STAMP)
	$(BIN)/ruff check sync workers config tests bench
	$(BIN)/mypy sync config
	BIN=$(BIN) bash .ci/suite.sh

## The docker-compose deployment on a real Docker engine: build, up, kill -9, down/up, JSON
## logs (about 10 minutes). Skips, saying why, without an engine; on a machine without Docker
## Hub start one first: `bash ../shared/tools/docker-engine.sh up`.
deploy-test: $(STAMP)
	$(BIN)/pytest -q -p no:randomly -rs -s tests/deploy

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check sync workers config tests bench

typecheck: $(STAMP)
	$(BIN)/mypy sync config

## Re-pin every dependency to what is installed now (run after changing pyproject.toml).
lock: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip freeze --exclude-editable | sort > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-data *.egg-info

## Benchmark the real pipeline against the sandbox (needs PostgreSQL + Redis); updates its section of BENCHMARKS.md.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.realistic --private-redis --json bench/last_realistic.json

## Only the realistic first-sync scenario (latency, enforced budgets; ~20 min): BENCHMARKS.md.
.PHONY: bench-realistic
bench-realistic: $(STAMP)
	$(BIN)/python -m bench.realistic --private-redis --json bench/last_realistic.json

## Many stores, one deployment (issue 16): 50 stores x 2,000 orders + one of 100,000 (throughput),
## then limits on with a revoked store, a down API, a poller killed and a store added
## (acceptance); needs PostgreSQL + redis-server, an idle machine; updates BENCHMARKS.md.
.PHONY: bench-fleet
bench-fleet: $(STAMP)
	$(BIN)/python -m bench.fleet --scenario all --json bench/last_fleet.json
