"""KubernetesPodOperator for training: the use case's resources become the pod spec.

Imported only when `AERODROME_TRAIN_BACKEND=kubernetes`, so DAG parsing on the embedded default
never loads the Kubernetes client.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from aerodrome.settings import json_object
from aerodrome.usecase import Resources
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException
from kubernetes.client import models as k8s

from aerodrome_airflow.training import RUN_CONTEXT_ENV, TRAINER_ENV, TRAINER_MODULE, trainer_failure

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
# credentials, and URIs that may carry one: into the pod only by reference to a Kubernetes Secret (name, key)
TRAINER_SECRET_ENV: dict[str, tuple[str, str]] = {
    "MLFLOW_TRACKING_URI": ("aerodrome-mlflow", "tracking-uri"),
    "MLFLOW_TRACKING_USERNAME": ("aerodrome-mlflow", "username"),
    "MLFLOW_TRACKING_PASSWORD": ("aerodrome-mlflow", "password"),
    "MLFLOW_TRACKING_TOKEN": ("aerodrome-mlflow", "token"),
    "AERODROME_FEATURE_REGISTRY": ("aerodrome-feast", "registry-url"),
    "AERODROME_REDIS_URL": ("aerodrome-redis", "url"),
    "AWS_ACCESS_KEY_ID": ("aerodrome-s3", "access-key-id"),
    "AWS_SECRET_ACCESS_KEY": ("aerodrome-s3", "secret-access-key"),
    "AERODROME_AUDIT_DSN": ("aerodrome-audit", "dsn"),
}
# the name of the Secret holding the private signing key, mounted in the pod as the file AERODROME_SIGNING_KEY names
SIGNING_SECRET_ENV = "AERODROME_K8S_SIGNING_KEY_REF"
# plain settings of storage, encryption and residency the trainer reads (none of them a secret)
STORAGE_SETTINGS_ENV = (
    "AERODROME_S3_ENDPOINT_URL",
    "AERODROME_S3_ALLOW_HTTP_LOOPBACK",
    "AERODROME_KMS_KEY_ID",
    "AERODROME_DB_REGIONS",
)
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY", re.IGNORECASE)
URI_PASSWORD = re.compile(r"://[^/@\s]*:[^/@\s]+@")


def trainer_secret_env(environ: Mapping[str, str] = os.environ) -> dict[str, tuple[str, str]]:
    """Env var -> (secret, key) for the pod: the defaults, `AERODROME_K8S_SECRETS` (JSON ENV -> "secret/key") on top."""
    override = json_object(environ.get("AERODROME_K8S_SECRETS"), "AERODROME_K8S_SECRETS")
    found = dict(TRAINER_SECRET_ENV)
    for env, ref in override.items():
        name, _, key = str(ref).partition("/")
        if not (name and key):
            raise ValueError(f'AERODROME_K8S_SECRETS[{env!r}] = {ref!r}: give "secret-name/key"')
        found[env] = (name, key)
    return found


def plain_env_problems(env: Mapping[str, Any]) -> list[str]:
    """Plain (non-secret) env entries that look like credentials: a secret-like name or a URI with a password."""
    return [
        name
        for name, value in env.items()
        if SECRET_NAME.search(name) or (isinstance(value, str) and URI_PASSWORD.search(value))
    ]


def secret_env_var(env: str, secret: str, key: str, optional: bool) -> k8s.V1EnvVar:
    """An env var read by the kubelet from a Secret; `optional`: the pod starts without it when the Secret lacks it."""
    selector = k8s.V1SecretKeySelector(name=secret, key=key, optional=optional)
    return k8s.V1EnvVar(name=env, value_from=k8s.V1EnvVarSource(secret_key_ref=selector))


def trainer_env(
    plain: Mapping[str, str], secret_env: Mapping[str, tuple[str, str]], environ: Mapping[str, str] = os.environ
) -> list[k8s.V1EnvVar]:
    """The container's env: plain settings by value, every secret by reference, never a secret by value.

    A reference is required when Airflow itself has that variable (the pod must use the same store, and a
    missing Secret stops the pod from starting instead of letting it train against a local default), and
    optional otherwise. A plain entry that looks like a credential is refused.
    """
    plain = {k: v for k, v in plain.items() if k not in secret_env}
    leaked = plain_env_problems(plain)
    if leaked:
        raise ValueError(
            f"{', '.join(leaked)}: a credential would be written into the pod spec in plain text; pass it as a "
            "Kubernetes secret (secret_env / AERODROME_K8S_SECRETS) instead"
        )
    env = [k8s.V1EnvVar(name=k, value=v) for k, v in plain.items()]
    env += [secret_env_var(k, name, key, optional=not environ.get(k)) for k, (name, key) in secret_env.items()]
    return env


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


def signing_key_mount(environ: Mapping[str, str] = os.environ) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """The private signing key from its Secret (key: the file's name), read-only at `AERODROME_SIGNING_KEY`."""
    secret = environ.get(SIGNING_SECRET_ENV, "").strip()
    if not secret:
        return [], []
    path = PurePosixPath(environ.get("AERODROME_SIGNING_KEY", "").strip())
    if not path.is_absolute():
        raise ValueError(
            f"{SIGNING_SECRET_ENV}={secret}: set AERODROME_SIGNING_KEY to the absolute path the training pod "
            "reads the key from, e.g. /etc/aerodrome/signing/ed25519.pem (the Secret's key is the file name)"
        )
    items = [k8s.V1KeyToPath(key=path.name, path=path.name)]
    source = k8s.V1SecretVolumeSource(secret_name=secret, default_mode=0o400, items=items)
    volume = k8s.V1Volume(name="signing-key", secret=source)
    return [volume], [k8s.V1VolumeMount(name="signing-key", mount_path=str(path.parent), read_only=True)]


class TrainingPodOperator(KubernetesPodOperator):
    """Run `python -m aerodrome.train.entrypoint` in a (GPU) pod sized by the use case's `model.resources`.

    Settings the trainer needs travel as env vars; credentials (and URIs that may hold one, such as
    MLFLOW_TRACKING_URI) only as references to Kubernetes secrets (`secret_env`: env var -> (secret name,
    key), default `trainer_secret_env()`), never as plain text in the pod spec, host paths or not.
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
        key_volumes, key_mounts = signing_key_mount()
        volumes, mounts = volumes + key_volumes, mounts + key_mounts
        secret_env = trainer_secret_env() if secret_env is None else secret_env
        settings_env = {k: os.environ[k] for k in (*TRAINER_ENV, *STORAGE_SETTINGS_ENV) if os.environ.get(k)}
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
            env_vars=trainer_env(settings_env | RUN_CONTEXT_ENV | kwargs.pop("env_vars", {}), secret_env),
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
