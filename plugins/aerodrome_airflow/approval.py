"""The human approval step of a promotion (`promotion.require_approval`): Airflow's HITL `ApprovalOperator`,
with every answer in the audit trail.

Its own module: the HITL operator imports ~25 provider modules, so only DAGs with the step load it.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from aerodrome_airflow.promotion import approver, record_decision, run_actor


class AuditedApprovalOperator(ApprovalOperator):
    """Ask a person to approve the judged candidate's promotion; audit the answer before acting on it.

    Approve: the alias-setting tasks run. Reject: they are skipped (Airflow's `ApprovalOperator`). No answer
    within `response_timeout`: the task fails. Each is an `approval` record (decision `approved`,
    `rejected` or `timed_out`) naming the person, the run and the version, written before downstream tasks
    are released or skipped.
    """

    def __init__(self, *, judge_task: str = "judge_candidate", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.judge_task = judge_task

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        verdict = context["ti"].xcom_pull(task_ids=self.judge_task) or {}
        if "error" in event:  # no answer in time (or a failed request): Airflow raises below
            if event.get("error_type") == "timeout":
                record_decision(verdict, "timed_out", f"{run_actor(context)}, no answer in time", event)
            return super().execute_complete(context=context, event=event)
        self.validate_chosen_options(event["chosen_options"])  # an answer Airflow would refuse is not recorded
        decision = "approved" if event["chosen_options"][0] == self.APPROVE else "rejected"
        by = "the default answer after the timeout" if event.get("timedout") else approver(event)
        record_decision(verdict, decision, f"{run_actor(context)}, {decision} by {by}", event)
        return super().execute_complete(context=context, event=event)
