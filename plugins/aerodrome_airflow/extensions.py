"""The task that runs a spec's extension (`module:function`, see `aerodrome.extensions`) in a generated DAG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aerodrome_airflow.operators import UseCaseOperator, announce, fail_without_retry, partition_day, spec_and_storage


class RunExtensionOperator(UseCaseOperator):
    """Call the extension `target` with a `StepContext` for the run's partition.

    An `AerodromeError` it raises fails the task at once (no retry can fix it); any other exception is
    retried like any task. With outlets (the last extension after a stage), it announces the partition.
    """

    template_fields: Sequence[str] = ("usecase", "target")
    ui_color = "#e8daef"

    def __init__(self, *, target: str, stage: str, when: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.stage = stage
        self.when = when

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.errors import AerodromeError
        from aerodrome.extensions import StepContext, resolve_extension

        settings, spec, storage = spec_and_storage(self.usecase)
        window = None
        if self.stage == "train":
            partition = context.get("partition_key") or getattr(context.get("dag_run"), "partition_key", None)
            window = context["ti"].xcom_pull(task_ids="plan_window")
        else:
            partition = partition_day(context, spec)
        step = StepContext(
            spec=spec,
            stage=self.stage,
            when=self.when,
            partition=partition,
            storage=storage,
            settings=settings,
            run_id=str(context.get("run_id") or ""),
            window=window,
            params=dict(context.get("params") or {}),
            log=self.log,
        )
        function = resolve_extension(self.target, spec.folder or settings.usecases_dir / spec.name)
        self.log.info("Extension %s %s %s, partition %s", self.target, self.when, self.stage, partition)
        try:
            function(step)
        except AerodromeError as exc:
            raise fail_without_retry(f"{self.target}: {exc}") from None
        if self.outlets and partition:
            announce(context, self.outlets, partition)
        return {"target": self.target, "partition": partition}
