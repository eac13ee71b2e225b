# qihub — two commands do all set-up: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export QIHUB_DATA_DIR ?= ./var

.PHONY: serve test lint format openapi bench clean install softhsm

$(STAMP): pyproject.toml tests/adapters/sample_plugin/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# A third-party adapter package, installed like any plug-in: the tests discover it and run the conformance kit.
	$(BIN)/python -m pip install --quiet --no-deps -e tests/adapters/sample_plugin
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/qihub db upgrade
	$(BIN)/qihub pki init --dev-master-key
	$(BIN)/qihub demo load
	$(BIN)/qihub serve --host 127.0.0.1 --port 8000

# SoftHSM2 (Debian) backs the PKCS#11 key-store test: installed once where apt-get runs as root; elsewhere the
# test skips (under CI=true it fails instead).
softhsm:
	@test -e /usr/lib/softhsm/libsofthsm2.so || ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ] || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null) || \
	  echo "softhsm2 not installed: the PKCS#11 test will skip (and fail under CI=true)"

test: $(STAMP) softhsm
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

openapi: $(STAMP)
	$(BIN)/python -m api.openapi > openapi/openapi.json

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) var .pytest_cache
