"""Training adapters: the same trainer entrypoint, run locally as a subprocess or in a Kubernetes pod."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from aerodrome.settings import json_object
from aerodrome.train import exitcodes
from aerodrome.usecase import Resources, describe_validation_error
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from pydantic import ValidationError

TRAINER_MODULE = "aerodrome.train.entrypoint"
# settings the trainer reads; passed to the pod as plain env (secrets travel as Kubernetes secrets)
TRAINER_ENV = (
    "AERODROME_DATA_ROOT",
    "AERODROME_USECASES_DIR",
    "AERODROME_ONLINE_STORE",
    "AERODROME_FEATURE_REPO",
    "AERODROME_FEATURE_NAMESPACE",
    "AERODROME_S3_REGION",
    "AERODROME_S3_ENDPOINT_URL",
    "AERODROME_KMS_KEY_ID",
    "AERODROME_ALLOWED_REGIONS",
    "AERODROME_DB_REGIONS",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_DISABLE_TELEMETRY",
    "AERODROME_SIGNING_KEY",  # a path: registration signs; in a pod the key is mounted from its Secret
    "AERODROME_REQUIRE_SIGNATURE",
    "AERODROME_AUDIT_TABLE",
)


# the Airflow run behind a model, for its MLflow tags (aerodrome.train.lineage.airflow_origin reads them)
RUN_CONTEXT_ENV = {
    "AERODROME_DAG_ID": "{{ dag.dag_id }}",
    "AERODROME_DAG_RUN_ID": "{{ run_id }}",
    "AERODROME_TASK_TRY": "{{ ti.try_number }}",
}


def trainer_arguments(
    usecase: str, start: str, end: str, holdout_start: str = "", seed: Any = 42, flavor: str = "", params: Any = ""
) -> list[str]:
    """Command-line arguments of `python -m aerodrome.train.entrypoint` (empty options are left out)."""
    args = ["--usecase", usecase, "--start", str(start), "--end", str(end), "--seed", str(seed)]
    for option, value in (("--holdout-start", holdout_start), ("--flavor", flavor)):
        if value and str(value) != "None":
            args += [option, str(value)]
    if params and str(params) not in ("None", "{}"):
        args += ["--params", params if isinstance(params, str) else json.dumps(params)]
    return args


def trainer_failure(code: int, where: str, detail: str) -> Exception:
    """The task's exception for a trainer that exited with `code`: no retry where a retry cannot help."""
    message = f"{where} ended with {exitcodes.describe(code)}"
    message += f": {detail.strip()}" if detail.strip() else ""
    if code in exitcodes.NOT_RETRYABLE:
        return AirflowFailException(message + " [not retried: the same run would fail the same way]")
    return AirflowException(message)


def last_json_line(output: str) -> dict[str, Any]:
    """The trainer's result: the last line of its output that is a JSON object."""
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            return json.loads(line)
    raise ValueError("the trainer printed no JSON result line")


class LocalTrainingOperator(BaseOperator):
    """Run the trainer entrypoint as a subprocess on this machine (the embedded default, CPU).

    Its output streams into the task log line by line; a non-zero exit fails the task with the code.
    """

    template_fields: Sequence[str] = ("arguments", "run_env")
    ui_color = "#e8daef"

    def __init__(self, *, arguments: list[str], module: str = TRAINER_MODULE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arguments = arguments
        self.module = module
        self.run_env = dict(RUN_CONTEXT_ENV)

    def execute(self, context: Any) -> dict[str, Any]:
        command = [sys.executable, "-m", self.module, *self.arguments]
        self.log.info("Running %s", " ".join(command))
        lines: list[str] = []
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ | self.run_env
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                self.log.info("trainer | %s", line.rstrip())
        if proc.returncode != exitcodes.OK:
            raise trainer_failure(proc.returncode, "the trainer", "".join(lines[-5:]))
        return last_json_line("".join(lines))


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def _resource_override(raw: dict[str, Any]) -> dict[str, Any]:
    """The fields of `AERODROME_K8S_RESOURCES`, checked against the spec's `model.resources` schema."""
    try:
        return Resources.model_validate(raw).model_dump(exclude_unset=True) if raw else {}
    except ValidationError as exc:
        raise ValueError(f"AERODROME_K8S_RESOURCES: {describe_validation_error(exc)}") from None


class TrainingBackend:
    """Where training runs, from the environment: `local` (default) or `kubernetes`."""

    def __init__(self) -> None:
        self.kind = os.environ.get("AERODROME_TRAIN_BACKEND", "local").strip().lower() or "local"
        if self.kind not in ("local", "kubernetes"):
            raise ValueError(f"AERODROME_TRAIN_BACKEND={self.kind!r}: use 'local' or 'kubernetes'")
        self.image = os.environ.get("AERODROME_TRAINER_IMAGE", "aerodrome/trainer:latest")
        self.namespace = os.environ.get("AERODROME_K8S_NAMESPACE", "aerodrome")
        self.config_file = os.environ.get("AERODROME_K8S_CONFIG_FILE") or None
        self.pull_policy = os.environ.get("AERODROME_TRAINER_PULL_POLICY", "IfNotPresent")
        self.python = os.environ.get("AERODROME_TRAINER_PYTHON", "python")
        # local single-node cluster only: reach the project, venv and data on the host
        self.host_paths = [p for p in os.environ.get("AERODROME_K8S_HOST_PATHS", "").split(",") if p]
        self.host_network = _flag("AERODROME_K8S_HOST_NETWORK")
        # read (and checked) once, for the kubernetes backend only: a stale value must not break the local default
        override = os.environ.get("AERODROME_K8S_RESOURCES") if self.kind == "kubernetes" else None
        self.resource_override = _resource_override(json_object(override, "AERODROME_K8S_RESOURCES"))

    def resources(self, declared: Resources) -> Resources:
        """The spec's resources with the cluster's override on top.

        E.g. `{"gpu": 0, "node_selector": {}}` on a CPU-only cluster (without the empty node selector the
        pod would wait for the spec's GPU pool); fields not named keep the spec's values.
        """
        return declared.model_copy(update=self.resource_override) if self.resource_override else declared

    def operator(self, task_id: str, resources, arguments: list[str], **kwargs: Any) -> BaseOperator:
        if self.kind == "local":
            return LocalTrainingOperator(task_id=task_id, arguments=arguments, **kwargs)
        from aerodrome_airflow.k8s import TrainingPodOperator

        return TrainingPodOperator(
            task_id=task_id,
            resources=self.resources(resources),
            trainer_arguments=arguments,
            image=self.image,
            namespace=self.namespace,
            config_file=self.config_file,
            image_pull_policy=self.pull_policy,
            python=self.python,
            host_paths=self.host_paths,
            hostnetwork=self.host_network,
            **kwargs,
        )
