"""The model gateway (`python -m aerodrome.serving`, image `docker/gateway`) as Kubernetes objects.

By default one replica (`Recreate` keeps it one process during a rollout too). `max_replicas` > 1 adds a
HorizontalPodAutoscaler on the request rate and a PodDisruptionBudget (`aerodrome.deploy.scaling`), rolls
pods one by one, and turns on replica sync (`AERODROME_GATEWAY_SYNC_SECONDS`, `aerodrome.serving.replicas`):
the Service hands each admin call (traffic step, reload, fault drill) to one pod, and every other pod
applies it from the shared data root within `sync_seconds`; the canary window any pod answers is every
pod's. So the replicas need a data root they share: `s3://`, or a ReadWriteMany `data_claim`.

The gateway verifies model signatures and never signs: it gets the trusted public keys (a ConfigMap mounted
as a folder, `AERODROME_SIGNING_TRUSTED_KEYS`), never the private key; the audit trail's DSN only by Secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aerodrome.deploy.names import PART_OF, DeployError, dns_label
from aerodrome.deploy.scaling import gateway_autoscaler, gateway_disruption_budget
from aerodrome.serving.replicas import SYNC_ENV
from aerodrome.serving.tokens import ADMIN_TOKEN_ENV, TOKEN_ENV
from aerodrome.usecase import UseCase

DATA_MOUNT = "/opt/aerodrome/data"  # the image's AERODROME_DATA_ROOT and the owner of its files
GATEWAY_UID = 50000  # docker/gateway/Dockerfile: GATEWAY_UID, group 0
TOKEN_KEYS = {TOKEN_ENV: "token", ADMIN_TOKEN_ENV: "admin-token"}
TRUSTED_KEYS_MOUNT = "/etc/aerodrome/trusted-keys"  # a folder of `*.pub` (aerodrome.security.config)
SIGNER_ONLY_ENV = "AERODROME_SIGNING_KEY"  # the private key: the trainer's, never a verifier's
SECRET_ONLY_ENV = ("AERODROME_AUDIT_DSN", "AERODROME_REDIS_URL", "AERODROME_FEATURE_REGISTRY", *TOKEN_KEYS)
_QUANTITY = re.compile(r"\d+(\.\d+)?m?")  # the quantities a request rate needs: 50, 2.5, 500m


@dataclass(frozen=True)
class GatewaySettings:
    """Where and how the gateway runs in the cluster; every credential comes from a Secret.

    `data_claim` is the PersistentVolumeClaim mounted at /opt/aerodrome/data, shared with Airflow
    (prediction log, traffic weights, Feast registry); without one an emptyDir stands in (a try-out:
    nothing written there outlives the pod). With an `s3://` `data_root` the volume still holds
    the Feast registry.
    """

    image: str = "aerodrome/gateway:latest"
    namespace: str = "aerodrome"
    name: str = "aerodrome-gateway"
    port: int = 8090
    image_pull_policy: str = "IfNotPresent"
    cpu: str = "1"
    memory: str = "2Gi"
    data_root: str = DATA_MOUNT
    data_claim: str | None = None
    mlflow_tracking_uri: str = "http://mlflow:5000"
    online_store: str = "redis"
    tokens_secret: str = "aerodrome-gateway-tokens"  # keys `token` and `admin-token`
    redis_secret: tuple[str, str] = ("aerodrome-redis", "url")  # AERODROME_REDIS_URL (holds the password)
    secret_env: dict[str, tuple[str, str]] = field(default_factory=dict)  # env -> (secret, key)
    env: dict[str, str] = field(default_factory=dict)  # further plain settings
    service_account: str | None = None  # e.g. one bound to an IAM role that reads the S3 data root
    min_replicas: int = 1
    max_replicas: int = 1  # > 1: HorizontalPodAutoscaler + PodDisruptionBudget (see the module docstring)
    requests_per_second: str = "50"  # the HPA's target per pod (a Kubernetes quantity)
    sync_seconds: float = 2.0  # replicas: how often each pod polls the shared state and shares its window
    trusted_keys_configmap: str | None = None  # ConfigMap of public keys (`*.pub`) the gateway verifies with

    def __post_init__(self) -> None:
        dns_label(self.name, "gateway name")
        if SIGNER_ONLY_ENV in self.env or SIGNER_ONLY_ENV in self.secret_env:
            raise DeployError(
                f"{SIGNER_ONLY_ENV} is the private key that signs models: the gateway only verifies, so give it "
                "the public keys instead (--trusted-keys-configmap, AERODROME_SIGNING_TRUSTED_KEYS)"
            )
        inline = sorted(set(self.env) & set(SECRET_ONLY_ENV))
        if inline:
            raise DeployError(
                f"{', '.join(inline)} may hold a password: give it by Secret reference (--secret-env ENV=SECRET:KEY), "
                "not as a plain value"
            )
        dns_label(self.namespace, "namespace")
        if not 0 < self.port < 65536:
            raise DeployError(f"gateway port {self.port} is not a TCP port (1-65535)")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise DeployError(
                f"gateway replicas: need 1 <= min_replicas ({self.min_replicas}) <= max_replicas ({self.max_replicas})"
            )
        if not _QUANTITY.fullmatch(self.requests_per_second) or float(self.requests_per_second.rstrip("m")) <= 0:
            raise DeployError(
                f"requests_per_second {self.requests_per_second!r} is not a positive Kubernetes quantity "
                "(e.g. '50', or '500m' for half a request per second)"
            )
        if self.scales and not self.sync_seconds > 0:
            raise DeployError(f"sync_seconds {self.sync_seconds} must be > 0: replicas poll their shared state")
        if self.scales and "://" not in self.data_root and not self.data_claim:
            raise DeployError(
                f"{self.max_replicas} gateway replicas share their traffic share, reloads and canary window through "
                f"the data root, but {self.data_root} would be an emptyDir of each pod: give an s3:// data root "
                "or a ReadWriteMany data_claim (--data-claim)"
            )

    @property
    def scales(self) -> bool:
        return self.max_replicas > 1


def _labels(settings: GatewaySettings) -> dict[str, str]:
    return {"app.kubernetes.io/name": "aerodrome-gateway", "app.kubernetes.io/instance": settings.name}


def _env(settings: GatewaySettings) -> list[dict[str, Any]]:
    plain = {
        "AERODROME_DATA_ROOT": settings.data_root,
        "AERODROME_ONLINE_STORE": settings.online_store,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "HOME": "/tmp",  # the root filesystem is read-only; libraries keep their caches under $HOME
    }
    if "://" in settings.data_root:  # the Feast registry stays a file: keep it on the shared volume
        plain["AERODROME_FEATURE_REPO"] = f"{DATA_MOUNT}/feature_repo"
        if "AERODROME_AUDIT_DSN" not in settings.secret_env:  # the audit file's default is in the read-only image
            plain["AERODROME_AUDIT_LOG"] = f"{DATA_MOUNT}/audit/audit.jsonl"
    if settings.trusted_keys_configmap:
        plain["AERODROME_SIGNING_TRUSTED_KEYS"] = TRUSTED_KEYS_MOUNT
    if settings.scales:
        plain[SYNC_ENV] = f"{settings.sync_seconds:g}"
    plain |= settings.env
    secrets = {env: (settings.tokens_secret, key) for env, key in TOKEN_KEYS.items()}
    if settings.online_store == "redis":
        secrets["AERODROME_REDIS_URL"] = settings.redis_secret
    secrets |= settings.secret_env
    env: list[dict[str, Any]] = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    env += [{"name": k, "value": v} for k, v in plain.items() if k not in secrets]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}} for k, (name, key) in secrets.items()
    ]
    return env


def gateway_deployment(specs: list[UseCase], settings: GatewaySettings) -> dict[str, Any]:
    """The gateway serving `specs` (every use case in the image when empty): non-root, read-only root fs."""
    labels = PART_OF | _labels(settings) | {"app.kubernetes.io/component": "gateway"}
    args = ["-m", "aerodrome.serving", "--host", "$(POD_IP)", "--port", str(settings.port)]
    for spec in specs:
        args += ["--usecase", spec.name]
    probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 5}
    container = {
        "name": "gateway",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python"],
        "args": args,
        "ports": [{"name": "http", "containerPort": settings.port, "protocol": "TCP"}],
        "env": _env(settings),
        "resources": {
            "requests": {"cpu": settings.cpu, "memory": settings.memory},
            "limits": {"cpu": settings.cpu, "memory": settings.memory},
        },
        # models load before /health answers: up to 5 minutes to start, then liveness takes over
        "startupProbe": probe | {"periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": probe | {"periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": probe | {"periodSeconds": 20, "failureThreshold": 3},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "data", "mountPath": DATA_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}]
    if settings.trusted_keys_configmap:
        container["volumeMounts"].append({"name": "trusted-keys", "mountPath": TRUSTED_KEYS_MOUNT, "readOnly": True})
        volumes.append({"name": "trusted-keys", "configMap": {"name": settings.trusted_keys_configmap}})
    data = (
        {"name": "data", "persistentVolumeClaim": {"claimName": settings.data_claim}}
        if settings.data_claim
        else {"name": "data", "emptyDir": {}}
    )
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the gateway never calls the Kubernetes API
        "securityContext": {
            "runAsUser": GATEWAY_UID,
            "runAsGroup": 0,
            "fsGroup": 0,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [data, *volumes],
    }
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": settings.name, "namespace": settings.namespace, "labels": labels},
        "spec": {
            **_rollout(settings),
            "selector": {"matchLabels": _labels(settings)},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(settings.port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def gateway_service(settings: GatewaySettings) -> dict[str, Any]:
    """ClusterIP Service in front of the gateway: `http://<name>.<namespace>.svc:<port>` inside the cluster."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": settings.name,
            "namespace": settings.namespace,
            "labels": PART_OF | _labels(settings) | {"app.kubernetes.io/component": "gateway"},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": _labels(settings),
            "ports": [{"name": "http", "port": settings.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _rollout(settings: GatewaySettings) -> dict[str, Any]:
    if not settings.scales:
        return {"replicas": 1, "strategy": {"type": "Recreate"}}
    # no `replicas`: the HPA owns the count (an apply would reset it); a new pod is ready before an old one goes
    return {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}


def gateway_manifests(specs: list[UseCase], settings: GatewaySettings) -> list[dict[str, Any]]:
    """Deployment and Service; with `max_replicas` > 1 also the HorizontalPodAutoscaler and PodDisruptionBudget."""
    manifests = [gateway_deployment(specs, settings), gateway_service(settings)]
    if settings.scales:
        labels = PART_OF | _labels(settings) | {"app.kubernetes.io/component": "gateway"}
        manifests.append(
            gateway_autoscaler(
                settings.name,
                settings.namespace,
                labels,
                min_replicas=settings.min_replicas,
                max_replicas=settings.max_replicas,
                requests_per_second=settings.requests_per_second,
            )
        )
        manifests.append(gateway_disruption_budget(settings.name, settings.namespace, labels, _labels(settings)))
    return manifests
