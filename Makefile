# Quorum — the two commands that matter on a fresh machine:
#   make dev    start the whole system natively (embedded NATS + PostgreSQL unless NATS_URL/DATABASE_URL are set)
#   make test   run the whole test suite (unit, integration, end-to-end) against real NATS and PostgreSQL
# Both create the virtual environment and install the project first when needed.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.quorum-installed

.PHONY: install system-deps dev demo test test-unit migrate provision up down bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Quorum needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# What the tests run besides Python packages, from Debian's packages: Prometheus (+ promtool), the
# PostgreSQL exporter and Alertmanager (amtool) prove every dashboard panel and test the alert rules and
# routing; Chromium runs the console's browser tests. Installed only where a command is missing; needs root
# (or sudo).
SYSTEM_COMMANDS = prometheus promtool prometheus-postgres-exporter amtool chromium
SYSTEM_PACKAGES = prometheus prometheus-postgres-exporter prometheus-alertmanager chromium
system-deps:
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "system-deps: installing Debian packages for$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; \
	  else echo "system-deps: need root or sudo to apt-get install $(SYSTEM_PACKAGES)" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	fi

dev: install  ## run everything natively; Ctrl-C stops it all
	$(BIN)/quorum dev --authorize-paper-routing $(DEV_ARGS)

test: install system-deps  ## the whole suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

migrate: install  ## alembic upgrade head on DATABASE_URL
	$(BIN)/quorum migrate

provision: install  ## create/update JetStream streams, consumers, KV buckets on NATS_URL
	$(BIN)/quorum provision

up:  ## the containerised stack
	docker compose up --build

down:
	docker compose down

lint: install
	$(BIN)/ruff check libs services migrations tests

clean:
	rm -rf .quorum .pytest_cache
