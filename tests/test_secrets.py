"""Least privilege: no credential in code, DAGs or deploy assets; none in task logs; admin routes need their token."""

import json
import logging
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [
    "dags",
    "plugins",
    "include",
    "docker",
    "scripts",
    "docker-compose.yaml",
    "airflow_settings.yaml",
    "Makefile",
]
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".sh", ".json", ".env", ".md", ""}
# a URI with a literal password (placeholders such as `password`, `${VAR...}` or `***` are not credentials)
URI_PASSWORD = re.compile(r"\w+://[^\s/:@'\"]*:(?!\$\{|\*\*\*|password@|<)[^\s/@'\"]+@")
CREDENTIAL_LITERALS = {
    "an AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a password value": re.compile(r"(?i)\b\w*password\w*\s*[:=]\s*['\"](?!password['\"])[^'\"$<{*]{4,}['\"]"),
}


def scanned_files() -> list[Path]:
    files = []
    for entry in SCANNED:
        path = ROOT / entry
        candidates = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        files += [p for p in candidates if p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts]
    return files


def test_no_credential_in_code_dag_files_or_deploy_assets():
    found = []
    for path in scanned_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if URI_PASSWORD.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: a URI with a password: {line.strip()[:100]}")
            found += [
                f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()[:100]}"
                for what, pattern in CREDENTIAL_LITERALS.items()
                if pattern.search(line)
            ]
    assert len(scanned_files()) > 50 and not found, "\n".join(found)
    settings_file = (ROOT / "airflow_settings.yaml").read_text()
    assert not re.findall(r"conn_password:[ \t]*\S", settings_file), "airflow_settings.yaml holds a password"


@pytest.mark.postgres
def test_no_secret_in_the_task_logs_of_real_runs(airflow_db, pg_database, tmp_path):
    """`airflow dags test` of the PostgreSQL-sourced ingest (its connection has a password) with every secret set.

    PostgreSQL on 127.0.0.1 trusts local connections, so the password travels but is not needed: the
    run succeeds, and neither its output nor its task log files may show any secret.
    """
    import psycopg2

    secrets = {
        "source_password": "src-pw-4d7e19",
        "mlflow_password": "mlflow-pw-0b3c55",
        "redis_password": "redis-pw-77a0c2",
        "gateway_token": "gateway-token-5e8f01",
        "gateway_admin": "gateway-admin-a21d9c",
        "aws_secret": "aws-secret-3f6b48",
    }
    day = datetime(2024, 1, 2, tzinfo=UTC)
    conn = psycopg2.connect(**pg_database)
    with conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS orders")
        cur.execute("CREATE TABLE orders (order_id int, ordered_at timestamptz, amount float8, late bool)")
        cur.executemany(
            "INSERT INTO orders VALUES (%s, %s, %s, %s)",
            [(i, day + timedelta(hours=i - 10), float(i), i % 2 == 0) for i in range(40)],
        )
    conn.close()
    env = {
        **os.environ,
        "AERODROME_DATA_ROOT": str(tmp_path / "data"),
        "AIRFLOW_CONN_AERODROME_TEST_DB": (
            f"postgresql://postgres:{secrets['source_password']}@127.0.0.1:5432/{pg_database['dbname']}"
        ),
        "MLFLOW_TRACKING_URI": f"postgresql://postgres:{secrets['mlflow_password']}@127.0.0.1:5432/postgres",
        "AERODROME_REDIS_URL": f"redis://:{secrets['redis_password']}@127.0.0.1:6379/0",
        "AERODROME_GATEWAY_TOKEN": secrets["gateway_token"],
        "AERODROME_GATEWAY_ADMIN_TOKEN": secrets["gateway_admin"],
        "AWS_SECRET_ACCESS_KEY": secrets["aws_secret"],
        # the level the platform runs at; at DEBUG, Airflow 3.3's task supervisor itself logs each value it is
        # asked to mask (`Sending request ... MaskSecret(value=...)`): never run tasks at DEBUG in production
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    airflow = Path(sys.executable).with_name("airflow")
    command = [str(airflow), "dags", "test", "ingest_pg_orders", "-c", json.dumps({"ds": "2024-01-02"})]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert (tmp_path / "data/raw/pg_orders/date=2024-01-02/part-0.parquet").is_file()  # it really read the source
    assert "Wrote 24 rows for 2024-01-02" in output  # `dags test` runs the task in-process: its log is the output
    logs = [p for p in (airflow_db / "logs").rglob("*") if p.is_file() and "ingest_pg_orders" in str(p)]
    texts = {"the task log": output} | {str(p): p.read_text(errors="replace") for p in logs}
    leaked = [
        f"{name} in {where}: {line.strip()[:300]}"
        for where, text in texts.items()
        for line in text.splitlines()
        for name, value in secrets.items()
        if value in line
    ]
    assert not leaked, "\n".join(leaked)


def test_admin_routes_want_the_admin_token_and_no_token_is_logged(tmp_path, caplog):
    from aerodrome.serving.app import create_app
    from aerodrome.serving.gateway import Gateway
    from aerodrome.settings import Settings
    from aerodrome.storage import LocalStorage
    from fastapi.testclient import TestClient

    serving, admin = "serving-token-c0ffee", "admin-token-decade"
    settings = Settings(data_root=str(tmp_path), usecases_dir=ROOT / "include/usecases")
    with pytest.raises(ValueError, match="two different, non-empty tokens"):
        create_app(Gateway([], settings, LocalStorage(tmp_path)), serving, serving)
    app = create_app(Gateway([], settings, LocalStorage(tmp_path), flush_seconds=0.1), serving, admin)
    with caplog.at_level(logging.DEBUG), TestClient(app) as http:
        for method, path, body in [
            ("post", "/admin/uc/traffic", {"challenger_percent": 5}),
            ("post", "/admin/uc/reload", None),
            ("post", "/admin/uc/faults", {"error_share": 0.5}),
            ("delete", "/admin/uc/faults", None),
        ]:
            call = getattr(http, method)
            kwargs = {"json": body} if body is not None else {}
            for token in (None, serving, "forged"):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                refused = call(path, headers=headers, **kwargs)
                assert refused.status_code == 401, (path, token, refused.text)
            allowed = call(path, headers={"Authorization": f"Bearer {admin}"}, **kwargs)
            assert allowed.status_code == 404 and "unknown use case 'uc'" in allowed.text  # past the guard
        assert (
            http.post("/v1/uc/predict", json={"rows": [{}]}, headers={"Authorization": f"Bearer {admin}"}).status_code
            == 401
        )
    assert serving not in caplog.text and admin not in caplog.text
