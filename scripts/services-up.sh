#!/usr/bin/env bash
# The production services on loopback for `make up`: PostgreSQL and Redis (started if installed but
# stopped), then fresh databases, an S3-compatible endpoint (moto) and an MLflow tracking server on
# PostgreSQL (aerodrome_airflow.services). Prints the variables to export; Ctrl-C stops and removes them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-services.sh
exec .venv/bin/python -m aerodrome_airflow.services "$@"
