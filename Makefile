# vidjobs developer targets. `make help` lists them; each target documents itself with `## text`.
# Everything runs from the project's own virtual environment (.venv), created on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv tools lint typecheck contracts scope check results-schema test test-fast demo dev bench-queue bench-api bench-pipeline bench-load bench-tenants bench-webhooks bench-results deploy-test ci clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[ml,embedded,dev,otel]'
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install vidjobs with every extra (first run: a few minutes)

lint: $(STAMP) ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy --strict over the packages
	$(BIN)/mypy

contracts: $(STAMP) ## import-linter: the package arrows (schema <- db <- api|worker)
	$(BIN)/lint-imports

scope: $(STAMP) ## Scope guard: concepts kept out of this release
	$(BIN)/python scripts/scope_guard.py

check: lint typecheck contracts scope ## Every static check

results-schema: $(STAMP) ## Regenerate schema/results.schema.json from the results Structs
	$(BIN)/python scripts/results_schema.py

tools: ## System tools the tests need: promtool (Debian's prometheus package) and chromium (tests/browser), installed if missing
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else \
	    echo "promtool is missing (tests/unit/test_monitoring_files.py): apt-get install prometheus" >&2; \
	    exit 1; \
	  fi; }
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else \
	    echo "chromium is missing (tests/browser, Playwright): apt-get install chromium" >&2; \
	    exit 1; \
	  fi; }

test: $(STAMP) tools ## The whole test suite (starts embedded Postgres and S3 when none is named)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## Unit tests only (no services)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

demo: $(STAMP) ## Run the offline demo on embedded services (vidjobs demo)
	$(BIN)/vidjobs demo

dev: $(STAMP) ## Run the local stack until Ctrl+C (vidjobs dev)
	$(BIN)/vidjobs dev

bench-queue: $(STAMP) ## Queue benchmark (enqueue, drain, wake-up latency)
	$(BIN)/python bench/queue_bench.py

bench-api: $(STAMP) ## API benchmark (upload RSS and speed, status req/s)
	$(BIN)/python bench/api.py

bench-pipeline: $(STAMP) ## Pipeline benchmark (frames/s and recall vs a naive baseline)
	$(BIN)/python bench/pipeline.py

bench-load: $(STAMP) ## Mixed load for 60 s on API + 2 workers (ARGS="--kill-worker-at 20")
	$(BIN)/python bench/load.py $(ARGS)

bench-tenants: $(STAMP) ## Tenant isolation: fair wait, slow uploads, /metrics flood, fair claim rate
	$(BIN)/python bench/tenants.py $(ARGS)

bench-webhooks: $(STAMP) ## Webhooks: deliveries/s, completion -> delivery p50/p99, 50% failing receiver
	$(BIN)/python bench/webhooks.py $(ARGS)

bench-results: $(STAMP) ## Results: paged reads of a 2-hour document, p50/p99 and API RSS vs the whole document
	$(BIN)/python bench/results.py $(ARGS)

deploy-test: $(STAMP) ## Build the images locally and run deploy/docker-compose.yml for real (tests/deploy; root, own dockerd)
	scripts/deploy_test.sh

ci: check test ## What CI runs: every static check, then the tests

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
