# predict_pipeline — every target sets up what it needs on a fresh machine (Python 3.11 + make).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
# Runs, schedules and sensor cursors persist in the Postgres-backed instance of dagster.yaml.
export DAGSTER_HOME := $(CURDIR)
# The UI's port under `make dev` (make dev PORT=3100).
PORT ?= 3000

.PHONY: install run dev test test-fast lint bench browser clean-state

install: $(VENV)/.installed

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet uv==$(UV_VERSION)

# Bytecode compiled once at install: where Python may not write it (PYTHONDONTWRITEBYTECODE,
# read-only installs) every command would otherwise compile ~750 modules (about 5 s a call).
$(VENV)/.installed: pyproject.toml uv.lock $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@touch $@

run: install
	$(VENV)/bin/predict-pipeline run

dev: install
	$(VENV)/bin/predict-pipeline dev --port $(PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The browser test drives Debian's Chromium: installed here when this machine allows (root + apt).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && { apt-get install -y -qq chromium >/dev/null 2>&1 \
	       || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; } \
	  || echo "chromium could not be installed: the browser test will say so and skip"; }

test: lint browser
	$(VENV)/bin/pytest

# The inner loop: everything but the end-to-end tests marked slow (make run, make dev, the
# whole-graph UI tests, Celery, receiver load); `make test` stays the full suite.
test-fast: install
	$(VENV)/bin/pytest -m "not slow"

# The peer bench's loaders (dlt) are a bench-only dependency group, never a runtime dependency;
# `make install` syncs them away again.
bench: install
	$(UV) sync --frozen --group bench --compile-bytecode --python $(PYTHON)
	@set -e; for f in bench/[!_]*.py; do $(VENV)/bin/python $$f; done

# Stops the embedded server and removes local state (embedded database, landing zone).
clean-state: install
	$(VENV)/bin/predict-pipeline db stop-embedded || true
	rm -rf var
