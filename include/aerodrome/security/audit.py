"""The audit trail: an append-only, hash-chained record of every decision that changes what data or model is used.

Who (the Airflow DAG run, the approver, a process), what, when, which versions: promotions, approvals,
alias moves, traffic changes, rollbacks, quarantines and releases, signed and refused artifacts. Each
record holds the sha256 of the one before (`aerodrome.security.chain`), so an edited, removed or
reordered record breaks the chain there, and `verify` names it:

    python -m aerodrome.security.audit verify     # exit 0 intact, 1 broken (the first broken record named)
    python -m aerodrome.security.audit tail -n 20

Backends (`aerodrome.security.config`): a PostgreSQL table when `AERODROME_AUDIT_DSN` is set (appends
serialised by an advisory lock; UPDATE, DELETE and TRUNCATE refused by a trigger), else a JSONL file
under the data root (appends serialised by a file lock). Appending reads only the last record.
"""

from __future__ import annotations

import argparse
import fcntl
import getpass
import hashlib
import json
import os
import socket
import sys
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aerodrome.errors import AerodromeError
from aerodrome.security.chain import GENESIS, ChainBreak, first_break, seal
from aerodrome.security.config import SecuritySettings
from aerodrome.settings import Settings, redacted_uri

KINDS = (
    "promotion",  # a candidate's gate verdict (passed or rejected)
    "approval",  # a person approved a promotion (Airflow HITL)
    "alias_move",  # a registry alias moved (candidate, challenger, champion, rejected)
    "model_release",  # a version became champion: it serves all traffic not given to a challenger
    "traffic",  # the challenger's traffic share changed (a canary or A/B step, a stop)
    "rollback",  # a challenger rolled back, or the champion restored to an earlier version
    "quarantine",  # a data partition failed validation and was quarantined
    "quarantine_release",  # a fixed partition left quarantine
    "artifact_signed",  # a model version's artifact was hashed and signed at registration
    "artifact_refused",  # a model artifact failed verification and was not loaded
)


class AuditError(AerodromeError):
    """The audit trail cannot be read or appended to (a torn or unreadable record, an unreachable database)."""


def default_actor() -> str:
    """Who acts, when the caller does not say: the Airflow task's DAG run (from its context env), else the process."""
    dag, run = os.environ.get("AIRFLOW_CTX_DAG_ID"), os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    if dag and run:
        task = os.environ.get("AIRFLOW_CTX_TASK_ID")
        return f"{dag} / {run}" + (f" (task {task})" if task else "")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return f"{user}@{socket.gethostname()} ({program}, pid {os.getpid()})"


@dataclass(frozen=True)
class Verification:
    """What `verify` found: how many records were read and the first that breaks the chain (None: intact)."""

    location: str
    records: int
    broken: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.broken is None

    def message(self) -> str:
        if self.broken is None:
            return f"{self.location}: {self.records} record(s), chain intact"
        return (
            f"{self.location}: chain broken at record {self.broken.position} of {self.records}: {self.broken.reason}; "
            f"records 1..{self.broken.position - 1} are intact"
        )


class AuditTrail(ABC):
    """An append-only, hash-chained log of audit records."""

    location: str

    @abstractmethod
    def append(self, body: dict[str, Any]) -> dict[str, Any]:
        """Chain `body` after the newest record and store it; returns the stored record."""

    @abstractmethod
    def records(self) -> Iterator[dict[str, Any] | None]:
        """Every record, oldest first (None where a record cannot be read)."""

    def verify(self) -> Verification:
        count = 0

        def counted() -> Iterator[dict[str, Any] | None]:
            nonlocal count
            for item in self.records():
                count += 1
                yield item

        stream = counted()
        broken = first_break(stream)
        for _ in stream:  # the rest, only to count it
            pass
        return Verification(self.location, count, broken)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class FileAuditTrail(AuditTrail):
    """One JSON record per line; an exclusive `flock` on the file serialises appends across processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)

    def append(self, body: dict[str, Any]) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            last = self._last_line(handle)
            if last is None:
                seq, previous = 1, GENESIS
            else:
                newest = _parse(last)
                if newest is None or not isinstance(newest.get("seq"), int) or "sha256" not in newest:
                    raise AuditError(
                        f"{self.path}: the last record is not a readable audit record ({last[:80]!r}...): "
                        "run `python -m aerodrome.security.audit verify` and restore the file from a backup"
                    )
                seq, previous = newest["seq"] + 1, newest["sha256"]
            record = seal(body, seq, previous)
            handle.write(json.dumps(record, sort_keys=True, default=str).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return record

    @staticmethod
    def _last_line(handle: Any) -> bytes | None:
        """The file's last non-empty line, read backwards from the end (the file may be large)."""
        end = handle.seek(0, os.SEEK_END)
        tail, position = b"", end
        while position > 0:
            step = min(4096, position)
            position -= step
            handle.seek(position)
            tail = handle.read(step) + tail
            stripped = tail.rstrip(b"\n")
            if b"\n" in stripped:
                return stripped.rsplit(b"\n", 1)[1]
        stripped = tail.rstrip(b"\n")
        return stripped or None

    def records(self) -> Iterator[dict[str, Any] | None]:
        if not self.path.exists():
            return
        with open(self.path, "rb") as handle:
            for line in handle:
                if line.strip():
                    yield _parse(line)


def _plain_dsn(dsn: str) -> str:
    """The URL psycopg takes: SQLAlchemy's `postgresql+driver://` without the driver."""
    scheme, rest = dsn.split("://", 1)
    return f"{scheme.split('+')[0]}://{rest}"


class PostgresAuditTrail(AuditTrail):
    """A table of records (canonical JSON text, plus columns to query); an advisory lock serialises appends.

    A trigger refuses UPDATE, DELETE and TRUNCATE, so altering a record takes the table owner disabling it
    first; the chain shows any record changed that way.
    """

    def __init__(self, dsn: str, table: str = "aerodrome_audit") -> None:
        self.dsn = _plain_dsn(dsn)
        self.table = table
        self.location = f"{redacted_uri(dsn)} table {table}"
        self.lock_key = int.from_bytes(
            hashlib.sha256(f"aerodrome.audit:{table}".encode()).digest()[:8], "big", signed=True
        )

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.dsn, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise AuditError(f"audit trail {self.location}: cannot connect ({exc})".strip()) from None

    def _ensure_table(self, cur: Any) -> None:
        from psycopg import sql

        name = sql.Identifier(*self.table.split("."))
        if "." in self.table:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.table.split(".")[0])))
        guard = sql.Identifier(f"{self.table.split('.')[-1]}_append_only")
        function = sql.Identifier(*[*self.table.split(".")[:-1], f"{self.table.split('.')[-1]}_refuse_change"])
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (seq bigint PRIMARY KEY, at timestamptz NOT NULL, kind text NOT NULL, "
                "usecase text, actor text NOT NULL, record text NOT NULL, sha256 char(64) NOT NULL)"
            ).format(name)
        )
        cur.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'the audit trail is append-only: % refused', TG_OP; END $$"
            ).format(function)
        )
        cur.execute(
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {} BEFORE UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(guard, name, function)
        )
        cur.execute(
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()"
            ).format(sql.Identifier(f"{self.table.split('.')[-1]}_no_truncate"), name, function)
        )

    def append(self, body: dict[str, Any]) -> dict[str, Any]:
        from psycopg import sql

        name = sql.Identifier(*self.table.split("."))
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))  # held until commit
            cur.execute("SELECT to_regclass(%s)", (self.table,))
            if cur.fetchone()[0] is None:
                self._ensure_table(cur)
            cur.execute(sql.SQL("SELECT seq, sha256 FROM {} ORDER BY seq DESC LIMIT 1").format(name))
            newest = cur.fetchone()
            seq, previous = (newest[0] + 1, newest[1]) if newest else (1, GENESIS)
            record = seal(body, seq, previous)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (seq, at, kind, usecase, actor, record, sha256) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                ).format(name),
                (
                    seq,
                    record["at"],
                    record["kind"],
                    record.get("usecase"),
                    record["actor"],
                    json.dumps(record, sort_keys=True, default=str),
                    record["sha256"],
                ),
            )
        return record

    def _rows(self) -> Iterator[tuple[Any, ...]]:
        from psycopg import errors, sql

        name = sql.Identifier(*self.table.split("."))
        with self._connect() as conn, conn.cursor() as cur:
            try:
                cur.execute(
                    sql.SQL("SELECT seq, at, kind, usecase, actor, record, sha256 FROM {} ORDER BY seq").format(name)
                )
            except errors.UndefinedTable:
                return
            yield from cur

    def records(self) -> Iterator[dict[str, Any] | None]:
        for _seq, _at, _kind, _usecase, _actor, text, _sha in self._rows():
            yield _parse(text.encode())

    def verify(self) -> Verification:
        """The chain over the records' text, and each row's query columns against its record."""
        chained = super().verify()
        for position, (seq, at, kind, usecase, actor, text, sha) in enumerate(self._rows(), start=1):
            if chained.broken is not None and position >= chained.broken.position:
                break
            record = _parse(text.encode()) or {}
            columns = (seq, at, kind, usecase, actor, sha.strip())
            stored = (
                record.get("seq"),
                datetime.fromisoformat(record["at"]) if "at" in record else None,
                record.get("kind"),
                record.get("usecase"),
                record.get("actor"),
                record.get("sha256"),
            )
            if columns != stored:
                return Verification(
                    self.location, chained.records, ChainBreak(position, "the row's columns differ from its record")
                )
        return chained


def audit_trail(settings: Settings | None = None, security: SecuritySettings | None = None) -> AuditTrail:
    """The configured audit trail: PostgreSQL when `AERODROME_AUDIT_DSN` is set, else the JSONL file."""
    settings = settings or Settings.from_env()
    security = security or SecuritySettings.from_env()
    if security.audit_dsn:
        return PostgresAuditTrail(security.audit_dsn, security.audit_table)
    return FileAuditTrail(security.audit_log_path(settings))


def record(
    kind: str,
    usecase: str | None,
    what: str,
    *,
    actor: str | None = None,
    versions: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    settings: Settings | None = None,
    trail: AuditTrail | None = None,
) -> dict[str, Any]:
    """Append one audit record (who, what, when, which versions) to the configured trail; returns it."""
    if kind not in KINDS:
        raise ValueError(f"audit kind {kind!r} is not one of: {', '.join(KINDS)}")
    body = {
        "at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "kind": kind,
        "actor": actor or default_actor(),
        "usecase": usecase,
        "what": what,
        "versions": {k: (None if v is None else str(v)) for k, v in (versions or {}).items()},
        "details": details or {},
    }
    return (trail or audit_trail(settings)).append(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aerodrome.security.audit", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("verify", help="check the whole chain; exit 1 naming the first broken record")
    tail = commands.add_parser("tail", help="print the newest records as JSON lines")
    tail.add_argument("-n", type=int, default=20)
    args = parser.parse_args(argv)
    try:
        trail = audit_trail()
        if args.command == "verify":
            result = trail.verify()
            print(result.message())
            return 0 if result.intact else 1
        for item in deque(trail.records(), maxlen=max(args.n, 0)):
            print(json.dumps(item, sort_keys=True))
        return 0
    except (AerodromeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
