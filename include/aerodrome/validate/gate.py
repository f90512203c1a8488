"""The validation gate between `raw/` and `validated/`.

Pass: the raw partition is copied to `validated/<usecase>/date=<ds>/` (the raw copy stays).
Fail: the raw partition is moved to `quarantine/<usecase>/date=<ds>/` with the GX result
document and a short `reason.txt` (both also kept under `quarantine/<usecase>/_history/`).
A quarantined copy that a newer raw partition of the same interval supersedes (pass or fail)
moves to `quarantine/<usecase>/_superseded/`. Nothing is deleted.

The verdict is decided by a vectorised evaluator of the suite; GX itself runs (row-level
COMPLETE result, Data Docs) only when that evaluator does not prove a pass, and GX's verdict
is the one that counts. The spec's `custom` rules (`aerodrome.validate.custom`) run beside it on
the same frame; their results join the verdict, the reason and the result document.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
import pyarrow.parquet as pq

from aerodrome.errors import AerodromeError, SourceError
from aerodrome.ingest.partition import DATA_FILE, MANIFEST_FILE, partition_key
from aerodrome.storage import Storage
from aerodrome.usecase import UseCase
from aerodrome.validate.custom import CustomCheck, CustomOutcome, custom_checks
from aerodrome.validate.docs import (
    build_suite_docs,
    docs_index_key,
    docs_prefix,
    result_document,
    run_and_document,
    site_folder,
)
from aerodrome.validate.fast import FastSuite, FastVerdict
from aerodrome.validate.report import UNREADABLE, Failure, failure_from_custom, failures_from_result, summarize
from aerodrome.validate.suite import build_suite, suite_parameters

RAW_ZONE, VALIDATED_ZONE, QUARANTINE_ZONE = "raw", "validated", "quarantine"
RESULT_FILE, REASON_FILE, RECORD_FILE = "validation_result.json", "reason.txt", "_validation.json"
_FAST: dict[int, FastSuite] = {}
_CUSTOM: dict[tuple[str, str], list[CustomCheck]] = {}


@dataclass(frozen=True)
class ValidationOutcome:
    """What one validation did; small enough for XCom."""

    passed: bool
    usecase: str
    ds: str
    rows: int | None
    summary: str
    validated_key: str | None = None
    quarantine_key: str | None = None
    result_uri: str | None = None
    data_docs_uri: str | None = None
    failures: list[Failure] = field(default_factory=list)

    def raise_for_failure(self) -> None:
        if not self.passed:
            raise ValidationFailed(self)


class ValidationFailed(AerodromeError):
    """A partition failed its suite (it has been quarantined); the message is the summary."""

    def __init__(self, outcome: ValidationOutcome) -> None:
        super().__init__(outcome.summary)
        self.outcome = outcome


@dataclass(frozen=True)
class _Partition:
    files: dict[str, bytes]
    frame: pd.DataFrame | None
    problem: str | None  # why it cannot be read, if it cannot


def _read(storage: Storage, key: str) -> _Partition:
    files = {k[len(key) + 1 :]: storage.read_bytes(k) for k in storage.list(key)}
    data = files.get(DATA_FILE)
    if data is None:
        return _Partition(files, None, f"{DATA_FILE} is missing (the partition holds: {', '.join(files) or 'nothing'})")
    if not data:
        return _Partition(files, None, f"{DATA_FILE} is empty (0 bytes)")
    try:
        frame = pq.read_table(io.BytesIO(data)).to_pandas()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        return _Partition(files, None, f"{DATA_FILE} cannot be read as Parquet ({len(data)} bytes): {exc}")
    if MANIFEST_FILE in files:
        try:
            expected = json.loads(files[MANIFEST_FILE])["sha256"]
        except (ValueError, KeyError, TypeError):
            return _Partition(files, frame, f"{MANIFEST_FILE} is not a valid manifest")
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            return _Partition(
                files,
                frame,
                f"{DATA_FILE} does not match its manifest (sha256 {actual[:12]}, manifest {expected[:12]}): "
                f"it changed after ingest; rewrite it with write_partition",
            )
    return _Partition(files, frame, None)


def _fast_suite(spec: UseCase) -> FastSuite:
    suite = build_suite(spec)
    if (fast := _FAST.get(id(suite))) is None:
        fast = _FAST[id(suite)] = FastSuite(suite)
    return fast


def _custom_checks(spec: UseCase) -> list[CustomCheck]:
    """The spec's custom rules with their functions imported, once per spec content and folder."""
    key = (spec.model_dump_json(), str(spec.folder))
    if (checks := _CUSTOM.get(key)) is None:
        checks = _CUSTOM[key] = custom_checks(spec)
    return checks


def _rule_count(spec: UseCase) -> int:
    return len(_fast_suite(spec)) + len(_custom_checks(spec))


def _stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def _record(
    spec: UseCase, ds: str, rows: int, verdict: FastVerdict, custom: list[CustomOutcome], now: datetime
) -> bytes:
    """The pass record kept next to the validated data (lineage: which suite, when, what was seen)."""
    checks = [
        {"expectation": c.type, "kwargs": c.kwargs, "success": c.success, "observed": c.observed}
        for c in verdict.checks
    ]
    checks += [
        {"expectation": c.expectation, "kwargs": c.kwargs(), "success": c.success, "observed": c.unexpected_count}
        for c in custom
    ]
    doc = {
        "success": True,
        "usecase": spec.name,
        "ds": ds,
        "rows": rows,
        "suite": spec.name,
        "validated_at": now.isoformat(),
        "checks": checks,
    }
    return json.dumps(doc, indent=2, default=str).encode()


def _publish(spec: UseCase, storage: Storage, ds: str, part: _Partition, judgement: _Judgement, now: datetime) -> str:
    key = partition_key(VALIDATED_ZONE, spec.name, ds)
    files = {n: b for n, b in part.files.items() if n not in (RESULT_FILE, REASON_FILE)}
    if judgement.verdict is not None:
        files[RECORD_FILE] = _record(spec, ds, len(part.frame), judgement.verdict, judgement.custom, now)
    storage.replace_prefix(key, files)
    return key


def _docs_uri(spec: UseCase, storage: Storage, build: bool) -> str | None:
    """The Data Docs index; rendered (suite page + stored history) when `build` or when absent."""
    key = docs_index_key(spec.name)
    if build or not storage.exists(key):
        with site_folder(storage, spec.name) as folder:
            build_suite_docs(build_suite(spec), folder)
    return storage.uri(key)


@dataclass(frozen=True)
class _Judgement:
    passed: bool
    verdict: FastVerdict | None = None  # set when the fast evaluator proved the pass
    failures: list[Failure] = field(default_factory=list)
    document: bytes | None = None  # the GX result (or the read error) of a failure
    page_uri: str | None = None  # its Data Docs page
    custom: list[CustomOutcome] = field(default_factory=list)  # the custom rules' results


def _judge(spec: UseCase, storage: Storage, ds: str, part: _Partition, now: datetime) -> _Judgement:
    """Decide with the fast evaluator and the custom rules; run GX (row-level result, Data Docs) only when
    they do not pass."""
    if part.problem is not None:
        doc = {
            "success": False,
            "usecase": spec.name,
            "ds": ds,
            "suite": spec.name,
            "stage": "read",
            "error": part.problem,
            "checked_at": now.isoformat(),
            "results": [],
        }
        failure = Failure(expectation=UNREADABLE, error=part.problem)
        return _Judgement(False, failures=[failure], document=json.dumps(doc, indent=2).encode())
    parameters = suite_parameters(spec, ds)
    verdict = _fast_suite(spec).evaluate(part.frame, parameters)
    custom = [check.evaluate(part.frame) for check in _custom_checks(spec)]
    custom_failures = [failure_from_custom(c) for c in custom if not c.success]
    if verdict.passed and not custom_failures:
        return _Judgement(True, verdict, custom=custom)
    with site_folder(storage, spec.name) as folder:
        result, page = run_and_document(build_suite(spec), part.frame, parameters, folder, ds, now)
    if result.success and not custom_failures:  # GX is the authority; the fast evaluator only ever proves passes
        return _Judgement(True, custom=custom)
    page_uri = storage.uri(f"{docs_prefix(spec.name)}/{page.relative_to(folder).as_posix()}")
    failures = ([] if result.success else failures_from_result(result)) + custom_failures
    return _Judgement(False, None, failures, result_document(result, custom), page_uri, custom)


def _history_key(spec: UseCase, ds: str, now: datetime) -> str:
    return f"{QUARANTINE_ZONE}/{spec.name}/_history/date={ds}/{_stamp(now)}"


def _failed(
    spec: UseCase,
    storage: Storage,
    ds: str,
    part: _Partition,
    judgement: _Judgement,
    qkey: str,
    now: datetime,
    verb: str,
) -> ValidationOutcome:
    """Write the result document and reason next to the quarantined partition (and into its history)."""
    rows = None if part.problem else len(part.frame)
    if rows is None:
        counted = "the partition is unreadable or damaged"
    else:
        counted = f"{len(judgement.failures)} of {_rule_count(spec)} expectations failed on {rows} rows"
    result_uri = storage.uri(f"{qkey}/{RESULT_FILE}")
    docs_uri = _docs_uri(spec, storage, build=False)
    header = f"{spec.name} {ds}: validation FAILED, {counted}; {verb} {storage.uri(qkey)}"
    footer = [f"Result document: {result_uri}", f"Data Docs: {judgement.page_uri or docs_uri}"]
    summary = summarize(header, judgement.failures, footer)
    for key in (qkey, _history_key(spec, ds, now)):  # the copy in the partition may go with a fix
        storage.write_bytes(f"{key}/{RESULT_FILE}", judgement.document or b"{}")
        storage.write_bytes(f"{key}/{REASON_FILE}", (summary + "\n").encode())
    return ValidationOutcome(False, spec.name, ds, rows, summary, None, qkey, result_uri, docs_uri, judgement.failures)


def _passed(
    spec: UseCase,
    storage: Storage,
    ds: str,
    part: _Partition,
    judgement: _Judgement,
    now: datetime,
    note: str = "",
) -> ValidationOutcome:
    vkey = _publish(spec, storage, ds, part, judgement, now)
    rows = len(part.frame)
    checked = _rule_count(spec)
    summary = f"{spec.name} {ds}: passed {checked} expectations on {rows} rows{note}; published {vkey}"
    docs_uri = _docs_uri(spec, storage, build=False)
    return ValidationOutcome(True, spec.name, ds, rows, summary, vkey, None, None, docs_uri, [])


def validate_partition(spec: UseCase, storage: Storage, ds: str, *, now: datetime | None = None) -> ValidationOutcome:
    """Validate `raw/<usecase>/date=<ds>/`: publish it to `validated/` or move it to `quarantine/`.

    Idempotent: a re-run on a passing partition republishes the same files; a re-run after the
    partition was quarantined (a task retry) re-checks the quarantined copy in place and fails again.
    """
    now = now or datetime.now(UTC)
    raw, qkey = partition_key(RAW_ZONE, spec.name, ds), partition_key(QUARANTINE_ZONE, spec.name, ds)
    if not storage.list(raw):
        if storage.list(qkey):
            return _recheck_quarantined(spec, storage, ds, qkey, now)
        raise SourceError(f"{storage.uri(raw)}: no raw partition to validate for {spec.name} {ds}")
    part = _read(storage, raw)
    judgement = _judge(spec, storage, ds, part, now)
    if storage.list(qkey):  # an earlier failure of this interval, now superseded: keep it, out of the way
        storage.move_prefix(qkey, f"{QUARANTINE_ZONE}/{spec.name}/_superseded/date={ds}/{_stamp(now)}")
    if judgement.passed:
        return _passed(spec, storage, ds, part, judgement, now)
    storage.move_prefix(raw, qkey)
    outcome = _failed(spec, storage, ds, part, judgement, qkey, now, "partition quarantined to")
    _audit("quarantine", spec, storage, ds, outcome)
    return outcome


def _recheck_quarantined(spec: UseCase, storage: Storage, ds: str, qkey: str, now: datetime) -> ValidationOutcome:
    part = _read(storage, qkey)
    judgement = _judge(spec, storage, ds, part, now)
    if judgement.passed:
        summary = (
            f"{spec.name} {ds}: the quarantined partition {storage.uri(qkey)} now passes its suite; "
            f"publish it with release_partition"
        )
        return ValidationOutcome(False, spec.name, ds, len(part.frame), summary, None, qkey)
    return _failed(spec, storage, ds, part, judgement, qkey, now, "still quarantined at")


def release_partition(spec: UseCase, storage: Storage, ds: str, *, now: datetime | None = None) -> ValidationOutcome:
    """Re-validate a (fixed) quarantined partition; if it passes, move it back to raw and publish it.

    The failure documents it still carries move to `quarantine/<usecase>/_history/`.
    """
    now = now or datetime.now(UTC)
    raw, qkey = partition_key(RAW_ZONE, spec.name, ds), partition_key(QUARANTINE_ZONE, spec.name, ds)
    if not storage.list(qkey):
        raise SourceError(f"{storage.uri(qkey)}: nothing quarantined for {spec.name} {ds}")
    if storage.list(raw):
        raise SourceError(
            f"{storage.uri(raw)} exists (re-ingested since it was quarantined): validate that partition "
            f"instead; the quarantined copy stays at {storage.uri(qkey)}"
        )
    part = _read(storage, qkey)
    judgement = _judge(spec, storage, ds, part, now)
    if not judgement.passed:
        return _failed(spec, storage, ds, part, judgement, qkey, now, "still quarantined at")
    history = _history_key(spec, ds, now) + "-released"
    present = set(storage.list(qkey))
    for name in (RESULT_FILE, REASON_FILE):
        if f"{qkey}/{name}" in present:
            storage.move_prefix(f"{qkey}/{name}", f"{history}/{name}")
    storage.move_prefix(qkey, raw)
    outcome = _passed(spec, storage, ds, part, judgement, now, note=" after release from quarantine")
    storage.write_bytes(f"{history}/released.txt", (outcome.summary + "\n").encode())
    _audit("quarantine_release", spec, storage, ds, outcome)
    return outcome


def _audit(kind: str, spec: UseCase, storage: Storage, ds: str, outcome: ValidationOutcome) -> None:
    """A quarantine or a release in the audit trail: who (the DAG run), which partition, why."""
    from aerodrome.security import audit

    where = outcome.quarantine_key or outcome.validated_key
    audit.record(
        kind,
        spec.name,
        outcome.summary.splitlines()[0],
        versions={"partition": ds},
        details={"location": storage.uri(where) if where else None, "rows": outcome.rows},
    )
