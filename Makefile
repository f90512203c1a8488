# Aerodrome: two commands on a fresh machine (Python 3.11 + package registries):
#   make demo   # installs everything, runs the flight-delay lifecycle on the embedded default
#   make test   # installs everything, runs the test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Extra pip arguments for torch, e.g. a CPU-only index elsewhere; here pip finds the local CPU wheel.
TORCH_PIP_ARGS ?=
DAYS ?= 31
USECASE ?= flight_delay

.PHONY: install demo demo-drift usecase test test-services test-k8s k8s-build k8s-up k8s-down up settings bench bench-k8s lint clean help

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/.installed: requirements.txt constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==0.13.8
	@# torch first through pip, so the CPU build is used where one is configured (uv would pick CUDA)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/uv pip install --python $(PY) -q --compile-bytecode -r requirements.txt -c constraints.txt -e .
	@touch $@

install: $(BIN)/.installed ## create .venv and install the pinned environment

demo: install ## run a use case's lifecycle on the embedded default (USECASE=flight_delay; DAYS=365 for the full year; START=YYYY-MM-DD, default the spec's schedule.start_date)
	$(PY) -m aerodrome_airflow.demo --usecase $(USECASE) --days $(DAYS) $(if $(START),--start $(START))

usecase: install ## scaffold a use case: make usecase NAME=my_domain (then: python -m aerodrome.cli usecase check ...)
	@test -n "$(NAME)" || { echo "usage: make usecase NAME=my_domain"; exit 2; }
	$(PY) -m aerodrome.cli usecase new $(NAME)

demo-drift: install ## the drift loop on real drift (train Jan 2013, serve July, drift, retrain, gates, canary; ~3 min; after make clean)
	$(PY) -m aerodrome_airflow.demo_drift

test: install ## run the test suite (starts PostgreSQL/Redis if they are not running)
	@bash scripts/ensure-services.sh
	$(BIN)/ruff check dags plugins include tests bench
	$(BIN)/pytest -m "not k8s and not services"

test-services: install ## the lifecycle on PostgreSQL (Airflow, MLflow server), Redis and S3 (moto) on loopback
	@bash scripts/ensure-services.sh
	$(BIN)/pytest -m services

k8s-build: ## build Kubernetes 1.20 from Debian's source package (~6 min once; cached in /var/cache/aerodrome-k8s)
	bash scripts/k8s/build.sh

k8s-up: k8s-build ## start the local single-node Kubernetes (loopback only)
	bash scripts/k8s/up.sh

k8s-down: ## stop the local Kubernetes (keeps the binary cache)
	bash scripts/k8s/down.sh

test-k8s: install k8s-up ## training through a real Kubernetes pod (the cluster is stopped afterwards)
	$(BIN)/pytest -m k8s; status=$$?; bash scripts/k8s/down.sh >/dev/null 2>&1; exit $$status

up: install ## start the Airflow UI on http://127.0.0.1:8080 with every DAG (Ctrl-C stops)
	$(PY) -m aerodrome_airflow.up

settings: install ## (re)load airflow_settings.yaml into the embedded Airflow
	$(PY) -m aerodrome_airflow.embedded db migrate >/dev/null
	$(PY) -c "from aerodrome_airflow.embedded import apply_embedded_environ as a; a(); \
	from aerodrome_airflow.airflow_settings import load_airflow_settings as l; \
	from aerodrome_airflow.embedded import PROJECT_ROOT as r; print(l(r / 'airflow_settings.yaml'))"

bench: install ## benchmarks; results also go to bench/results/
	$(PY) -m bench

bench-k8s: install k8s-up ## the Kubernetes path's orchestration overhead on the local cluster (stopped afterwards)
	$(PY) -m bench --only k8s_overhead; status=$$?; bash scripts/k8s/down.sh >/dev/null 2>&1; exit $$status

lint: install
	$(BIN)/ruff check dags plugins include tests bench
	$(BIN)/ruff format --check dags plugins include tests bench

clean: ## remove the embedded Airflow home and data (never touches the source tree)
	rm -rf .airflow .aerodrome
