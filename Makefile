# covidct developer commands. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PACKAGES := -e core -e services/ingest -e services/segment -e services/classify -e .
PYPROJECTS := pyproject.toml core/pyproject.toml services/ingest/pyproject.toml \
	services/segment/pyproject.toml services/classify/pyproject.toml requirements-dev.txt
LINT_PATHS := core services src tests bench models scripts
TYPED_PATHS := core/src services/ingest/src services/segment/src services/classify/src src

REGISTRY ?= ghcr.io/covidct
VERSION ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' charts/covidct/Chart.yaml)
VARIANT ?= cuda
IMAGE_SUFFIX := $(if $(filter cpu,$(VARIANT)),-cpu,)

.PHONY: images samples chart-docs e2e
.PHONY: install services-up services-down lint typecheck test test-unit test-integration \
	demo bench clean

install: $(STAMP)

$(STAMP): $(PYPROJECTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements-dev.txt $(PACKAGES)
	touch $(STAMP)

services-up: install
	VENV=$(VENV) scripts/services.sh up >/dev/null

services-down:
	scripts/services.sh down

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy $(TYPED_PATHS)

# The README's test command: install, start RabbitMQ and SeaweedFS, lint, run every test.
test: install services-up lint
	$(VENV)/bin/pytest -q

test-unit: install
	$(VENV)/bin/pytest -q -m "not integration and not e2e"

test-integration: services-up
	$(VENV)/bin/pytest -q -m integration

# The README's first command: set up, make a synthetic chest CT, run the whole pipeline.
demo: install
	$(VENV)/bin/covidct phantom --out demo-out/phantom-dicom --lesions
	$(VENV)/bin/covidct run demo-out/phantom-dicom --out demo-out/results
	cat demo-out/results/results.csv

bench: services-up
	$(PY) bench/broker.py

clean:
	rm -rf demo-out .pytest_cache .mypy_cache .ruff_cache

# Container images (needs a Docker engine): VARIANT=cuda (default) or cpu.
images:
	DOCKER_BUILDKIT=1 docker build -f services/ingest/Dockerfile -t $(REGISTRY)/covidct-ingest:$(VERSION) .
	for s in segment classify; do DOCKER_BUILDKIT=1 docker build -f services/$$s/Dockerfile \
	  --build-arg VARIANT=$(VARIANT) -t $(REGISTRY)/covidct-$$s:$(VERSION)$(IMAGE_SUFFIX) . || exit 1; done

# Download a small public CT set (TCIA) for users outside this environment.
samples:
	bash scripts/samples.sh

# Regenerate charts/covidct/README.md from the `# --` comments in values.yaml.
chart-docs: install
	$(PY) scripts/chart_docs.py

# kind end-to-end test (needs Docker, kind and kubectl).
e2e: install
	$(VENV)/bin/pytest -q -m e2e tests/e2e
