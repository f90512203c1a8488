"""The promotion's human approval step (Airflow HITL `ApprovalOperator`) writes every answer to the audit trail:
an approval, a rejection (the alias-setting tasks are then skipped) and no answer in time.

The operator is the one the promote DAG builds, resumed with the event Airflow's own `HITLDetail` produces
for a person's answer. What cannot run here is the worker around it: a runtime task instance exists only
inside a task process that a scheduler starts and an API answer resumes (tests/test_scheduler_e2e.py runs
that whole flow), so `_RuntimeTI` stands in for its XCom and skip calls.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERDICT = {
    "usecase": "flight_delay",
    "model": "flight_delay",
    "candidate": "7",
    "target_alias": "challenger",
    "summary": "[pass] metric ...",
}
AUDIT_ENV = ("AERODROME_AUDIT_DSN", "AERODROME_AUDIT_TABLE")


class _RuntimeTI:
    """Stand-in for the worker's runtime task instance: the judge's XCom, and the skip-list push."""

    map_index = -1

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_pull(self, task_ids: str):
        return VERDICT if task_ids == "judge_candidate" else None

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


@pytest.fixture
def trail(tmp_path, monkeypatch) -> Path:
    for name in AUDIT_ENV:
        monkeypatch.delenv(name, raising=False)
    log = tmp_path / "audit.jsonl"
    monkeypatch.setenv("AERODROME_AUDIT_LOG", str(log))
    return log


@pytest.fixture(scope="module")
def promote_dag():
    from aerodrome.usecase import load_usecase
    from aerodrome_airflow.dag_factory import build_promote_dag

    spec = load_usecase(ROOT / "include/usecases/flight_delay")
    gated = spec.model_copy(update={"promotion": spec.promotion.model_copy(update={"require_approval": True})})
    return build_promote_dag(gated)


def _answer(option: str, user: dict | None) -> dict:
    """The event Airflow resumes the waiting task with once a person answered (`HITLDetail`'s own payload)."""
    from airflow.models.hitl import HITLDetail

    detail = HITLDetail(
        ti_id=uuid.uuid4(),
        options=["Approve", "Reject"],
        subject="Promote flight_delay v7 to @challenger?",
        chosen_options=[option],
        params_input={},
        responded_at=datetime(2026, 5, 4, 9, 30, tzinfo=UTC),
        responded_by=user,
    )
    return detail.as_resume_event_payload()


def _context(dag, ti: _RuntimeTI) -> dict:
    run = SimpleNamespace(triggering_user_name=None, partition_key="v7")
    return {"ti": ti, "dag": dag, "run_id": "asset_triggered__v7", "dag_run": run, "task": dag.get_task("approve")}


def _records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_rejection_is_audited_and_the_promotion_skipped(promote_dag, trail):
    from aerodrome.security.audit import FileAuditTrail
    from airflow.sdk.exceptions import DownstreamTasksSkipped

    approve, ti = promote_dag.get_task("approve"), _RuntimeTI()
    with pytest.raises(DownstreamTasksSkipped) as skipped:  # how a worker skips the alias-setting tasks
        approve.execute_complete(_context(promote_dag, ti), _answer("Reject", {"id": "u-42", "name": "dana"}))
    assert sorted(skipped.value.tasks) == ["set_challenger", "set_champion"]

    (record,) = _records(trail)
    assert record["kind"] == "approval" and record["usecase"] == "flight_delay"
    assert record["what"] == "flight_delay v7 -> @challenger rejected"
    assert record["actor"] == "promote_flight_delay / asset_triggered__v7, rejected by dana"
    assert record["versions"] == {"model": "flight_delay", "version": "7", "alias": "challenger"}
    assert record["details"]["decision"] == "rejected" and record["details"]["chosen"] == ["Reject"]
    assert record["details"]["responded_by"] == {"id": "u-42", "name": "dana"}
    assert record["details"]["responded_at"].startswith("2026-05-04 09:30:00")
    assert FileAuditTrail(trail).verify().intact


def test_an_approval_is_audited_before_the_promotion_proceeds(promote_dag, trail):
    approve = promote_dag.get_task("approve")
    result = approve.execute_complete(
        _context(promote_dag, _RuntimeTI()), _answer("Approve", {"id": "1", "name": "admin"})
    )
    assert result["chosen_options"] == ["Approve"]  # what MoveAliasOperator reads to name the approver
    (record,) = _records(trail)
    assert record["what"] == "flight_delay v7 -> @challenger approved"
    assert record["actor"].endswith(", approved by admin") and record["details"]["decision"] == "approved"


def test_no_answer_in_time_is_audited_and_fails_the_step(promote_dag, trail):
    from airflow.providers.standard.exceptions import HITLTimeoutError

    timeout = {
        "error": "The Human-in-the-loop response timeout has passed without a response.",
        "error_type": "timeout",
    }
    with pytest.raises(HITLTimeoutError):
        promote_dag.get_task("approve").execute_complete(_context(promote_dag, _RuntimeTI()), timeout)
    (record,) = _records(trail)
    assert record["what"] == "flight_delay v7 -> @challenger timed out"
    assert record["details"]["decision"] == "timed_out" and record["actor"].endswith("no answer in time")


def test_an_answer_airflow_refuses_is_not_recorded(promote_dag, trail):
    with pytest.raises(ValueError, match="not in"):
        promote_dag.get_task("approve").execute_complete(
            _context(promote_dag, _RuntimeTI()), _answer("Maybe", {"id": "1", "name": "admin"})
        )
    assert not trail.exists()
