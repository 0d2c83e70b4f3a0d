# Every target works on a fresh machine with only Python 3.11+ and make:
# the project-local virtual environment .venv is created on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto' | sort)
BUF := node_modules/.bin/buf

.PHONY: run test test-sqlite test-postgres lint gen bench clean venv screenshots

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## make run: the whole platform on SQLite files under ./var and an embedded nats-server.
run: $(STAMP)
	$(VENV)/bin/dmp dev up

## make test: the whole suite (PostgreSQL when 127.0.0.1:5432 answers, SQLite otherwise), on
## pytest-xdist workers (docs/CONVENTIONS.md, "Parallel runs"); PYTEST_XDIST= runs it in one process.
PYTEST_XDIST ?= -n 2 --dist loadgroup
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test-sqlite: $(STAMP)
	DMP_TEST_DATABASE=sqlite $(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test-postgres: $(STAMP)
	DMP_TEST_DATABASE=postgresql $(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

$(BUF): package.json
	npm install --no-audit --no-fund --silent
	@touch $(BUF)

lint: $(STAMP) $(BUF)
	$(VENV)/bin/ruff check kit services gateway dmp_cli dmp_dev tests bench
	$(VENV)/bin/ruff format --check kit services gateway dmp_cli dmp_dev tests bench
	$(VENV)/bin/mypy kit services gateway dmp_cli dmp_dev
	$(VENV)/bin/lint-imports
	$(BUF) lint
	$(PY) -m dmp_dev.tools.buf_breaking --buf $(BUF)

## make gen: regenerate the committed Python package dmp/ from protos/ (reproducible), and the
## JSON door's OpenAPI (docs/openapi.json) from it.
gen: $(STAMP)
	$(PY) -m dmp_dev.tools.gen_protos
	$(PY) -m dmp_dev.tools.gen_openapi

## make screenshots: the portal's browser tests, then their README pages into docs/screenshots/.
screenshots: $(STAMP) $(BUF)
	$(PY) -m dmp_dev.tools.screenshots

## make bench [BENCHES="records_scale"]: each script prints ratios and writes bench/results/<name>.json.
BENCHES ?= identity_login authorize service_paths records_scale notify_latency history_ingest gateway_overhead platform_load partitioned_scale
bench: $(STAMP)
	@for b in $(BENCHES); do echo "== bench $$b"; $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
