#!/usr/bin/env bash
# Creates one role + database per tenant of the shared PostgreSQL server of docker-compose.yaml:
#   airflow           Airflow metadata DB
#   mlflow            MLflow backend store (tracking + model registry)
#   aerodrome_source  `aerodrome` database: the source of PostgreSQL-backed use cases
#   feast             Feast SQL registry (AERODROME_FEATURE_REGISTRY), shared by the pipelines and the gateway
#   audit             the audit trail (AERODROME_AUDIT_DSN), one hash chain for every writer
# The postgres image runs this once, on the first start with an empty data volume; passwords
# changed in .env later must be changed in the database too (ALTER ROLE ... PASSWORD ...).
set -euo pipefail

create_role_and_database() {
  local role="$1" database="$2" password="$3"
  # psql variables (:"ident", :'literal') quote the names and the password safely
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname postgres \
    -v role="${role}" -v database="${database}" -v password="${password}" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"database" OWNER :"role";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
SQL
}

create_role_and_database airflow airflow "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is not set}"
create_role_and_database mlflow mlflow "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set}"
create_role_and_database aerodrome_source aerodrome "${SOURCE_DB_PASSWORD:?SOURCE_DB_PASSWORD is not set}"
create_role_and_database feast feast "${FEAST_DB_PASSWORD:?FEAST_DB_PASSWORD is not set}"
create_role_and_database audit audit "${AUDIT_DB_PASSWORD:?AUDIT_DB_PASSWORD is not set}"
