"""KubernetesPodOperator for training: the use case's resources become the pod spec.

Imported only when `AERODROME_TRAIN_BACKEND=kubernetes`, so DAG parsing on the embedded default
never loads the Kubernetes client.
"""

from __future__ import annotations

import os
from typing import Any

from aerodrome.usecase import Resources
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from airflow.sdk.exceptions import AirflowException, AirflowSkipException
from kubernetes.client import models as k8s

from aerodrome_airflow.training import RUN_CONTEXT_ENV, TRAINER_ENV, TRAINER_MODULE, trainer_failure

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def container_resources(resources: Resources) -> k8s.V1ResourceRequirements:
    """Requests = limits for CPU and memory (guaranteed QoS); GPUs are limits only, as Kubernetes requires."""
    limits = {"cpu": resources.cpu, "memory": resources.memory}
    if resources.gpu:
        limits[GPU_RESOURCE] = str(resources.gpu)
    return k8s.V1ResourceRequirements(requests={"cpu": resources.cpu, "memory": resources.memory}, limits=limits)


def tolerations(resources: Resources) -> list[k8s.V1Toleration]:
    declared = [k8s.V1Toleration(**t) for t in resources.tolerations]
    if resources.gpu and not any(t.key == GPU_RESOURCE for t in declared):
        declared.append(k8s.V1Toleration(**GPU_TOLERATION))
    return declared


def host_path_mounts(paths: list[str]) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """hostPath volumes for the local single-node cluster, at the same paths; `PATH:ro` mounts read-only."""
    volumes, mounts = [], []
    for i, entry in enumerate(paths):
        path, _, mode = entry.partition(":")
        name = f"host-{i}"
        volumes.append(k8s.V1Volume(name=name, host_path=k8s.V1HostPathVolumeSource(path=path, type="Directory")))
        mounts.append(k8s.V1VolumeMount(name=name, mount_path=path, read_only=mode == "ro"))
    return volumes, mounts


class TrainingPodOperator(KubernetesPodOperator):
    """Run `python -m aerodrome.train.entrypoint` in a (GPU) pod sized by the use case's `model.resources`.

    Settings the trainer needs travel as env vars; credentials only as Kubernetes secrets
    (`secret_env`: env var -> (secret name, key)), never as plain text in the pod spec.
    """

    def __init__(
        self,
        *,
        resources: Resources,
        trainer_arguments: list[str],
        secret_env: dict[str, tuple[str, str]] | None = None,
        host_paths: list[str] | None = None,
        python: str = "python",
        module: str = TRAINER_MODULE,
        **kwargs: Any,
    ) -> None:
        volumes, mounts = host_path_mounts(host_paths or [])
        if resources.pod_template:
            kwargs.setdefault("pod_template_file", resources.pod_template)
        kwargs.setdefault("deferrable", True)
        kwargs.setdefault("on_finish_action", "delete_pod")
        kwargs.setdefault("startup_timeout_seconds", 600)
        kwargs.setdefault("startup_check_interval_seconds", 2)  # the default 5 s dominates short pods
        kwargs.setdefault("schedule_timeout_seconds", 900)
        kwargs.setdefault("get_logs", True)
        kwargs.setdefault("log_events_on_failure", True)
        kwargs.setdefault("log_pod_spec_on_failure", False)  # the exit code and the trainer's last lines say more
        super().__init__(
            cmds=[python, "-m", module],
            arguments=trainer_arguments,
            container_resources=container_resources(resources),
            node_selector=dict(resources.node_selector) or None,
            tolerations=tolerations(resources),
            env_vars={k: os.environ[k] for k in TRAINER_ENV if os.environ.get(k)}
            | RUN_CONTEXT_ENV
            | kwargs.pop("env_vars", {}),
            secrets=[Secret("env", env, name, key) for env, (name, key) in (secret_env or {}).items()],
            volumes=volumes + kwargs.pop("volumes", []),
            volume_mounts=mounts + kwargs.pop("volume_mounts", []),
            labels={"app.kubernetes.io/part-of": "aerodrome", "aerodrome.io/stage": "train"},
            **kwargs,
        )

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        for container in pod.spec.containers:
            if container.name == self.base_container_name:
                # a failed trainer's last log lines become the pod's termination message (and the task's error)
                container.termination_message_policy = "FallbackToLogsOnError"
        return pod

    def cleanup(self, pod: k8s.V1Pod, remote_pod: k8s.V1Pod, xcom_result: Any = None, context: Any = None) -> None:
        """As the base operator, but a failed trainer fails the task with its exit code and last lines."""
        try:
            super().cleanup(pod, remote_pod, xcom_result, context)
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            ended = trainer_termination(remote_pod, self.base_container_name)
            if ended is None or ended[0] == 0:  # the trainer did not fail: the base operator's reason stands
                raise
            code, reason, message = ended
            where = f"trainer pod {remote_pod.metadata.name}" + (f" ({reason})" if reason and reason != "Error" else "")
            raise trainer_failure(code, where, last_lines(message)) from exc


def trainer_termination(pod: k8s.V1Pod | None, container_name: str) -> tuple[int, str, str] | None:
    """(exit code, reason such as OOMKilled, termination message) of the pod's ended `container_name`."""
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    for status in statuses:
        if status.name == container_name and status.state and status.state.terminated:
            ended = status.state.terminated
            return int(ended.exit_code), ended.reason or "", ended.message or ""
    return None


def last_lines(text: str, count: int = 5) -> str:
    """The end of a termination message (Kubernetes keeps up to 80 lines / 2 KB of the log)."""
    return "\n".join(text.strip().splitlines()[-count:])
