"""KServe: a use case's `InferenceService`, its canary steps from the spec, and a live traffic patch.

KServe keeps the last revision rolled out at 100 % (the champion) and sends `canaryTrafficPercent`
of the traffic to the revision just applied (the challenger's storageUri); 0 pins all traffic back
to the champion (rollback), 100 promotes it. Canary needs KServe's Serverless (Knative) mode.

Every Aerodrome model is an MLflow pyfunc (both flavors, XGBoost and the PyTorch MLP: the predictor
folder behind `aerodrome.train.pyfunc`), so the model format is `mlflow` on the Open Inference
Protocol (V2), KServe's MLServer runtime. The pyfunc imports the `aerodrome` library: `runtime` names a
ServingRuntime whose image installs it (KServe's stock MLServer image does not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aerodrome.deploy.models import storage_uri as kserve_storage_uri
from aerodrome.deploy.names import PART_OF, USECASE_LABEL, DeployError, dns_label, object_name
from aerodrome.usecase import UseCase

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MODEL_FORMAT = "mlflow"
PROTOCOL = "v2"


@dataclass(frozen=True)
class KServeSettings:
    namespace: str = "aerodrome"
    runtime: str | None = "aerodrome-mlserver"  # a ServingRuntime for `mlflow` whose image has `aerodrome`
    service_account: str | None = None  # holds the storage credentials KServe's initializer reads
    cpu: str = "1"
    memory: str = "2Gi"
    min_replicas: int = 1  # never scale the champion to zero
    max_replicas: int = 3

    def __post_init__(self) -> None:
        dns_label(self.namespace, "namespace")
        if not 0 < self.min_replicas <= self.max_replicas:
            raise DeployError(f"replicas: need 0 < min ({self.min_replicas}) <= max ({self.max_replicas})")


def canary_percent(spec: UseCase, step: float) -> int:
    """`step` as KServe's canaryTrafficPercent: one of the spec's `canary.steps`, a whole percent."""
    if step not in spec.canary.steps:
        steps = ", ".join(f"{s:g}" for s in spec.canary.steps)
        raise DeployError(f"{spec.name}: step {step:g} is not one of canary.steps ({steps})")
    if step != int(step):
        raise DeployError(
            f"{spec.name}: canary step {step:g} % is not a whole percent; KServe's canaryTrafficPercent "
            "is an integer (use whole steps in canary.steps to canary on KServe)"
        )
    return int(step)


def inference_service(
    spec: UseCase,
    storage_uri: str,
    settings: KServeSettings,
    *,
    version: str | None = None,
    step: float | None = None,
) -> dict[str, Any]:
    """The use case's InferenceService serving `storage_uri` (MLflow model `version`).

    Without `step` the model takes all traffic (the champion's manifest); with one of the spec's
    canary steps it takes that share and the last rolled-out revision keeps the rest.
    """
    storage_uri = kserve_storage_uri(storage_uri)  # a location KServe's storage initializer reads
    labels = PART_OF | {USECASE_LABEL: spec.name, "aerodrome.io/flavor": spec.model.flavor}
    annotations = {"aerodrome.io/storage-uri": storage_uri}
    if version is not None:
        labels["aerodrome.io/model-version"] = str(version)
        annotations["aerodrome.io/model-uri"] = f"models:/{spec.name}/{version}"
    model: dict[str, Any] = {
        "modelFormat": {"name": MODEL_FORMAT},
        "protocolVersion": PROTOCOL,
        "storageUri": storage_uri,
        "resources": {
            "requests": {"cpu": settings.cpu, "memory": settings.memory},
            "limits": {"cpu": settings.cpu, "memory": settings.memory},
        },
    }
    if settings.runtime:
        model["runtime"] = settings.runtime
    predictor: dict[str, Any] = {
        "minReplicas": settings.min_replicas,
        "maxReplicas": settings.max_replicas,
        "model": model,
    }
    if step is not None:
        predictor["canaryTrafficPercent"] = canary_percent(spec, step)
        labels["aerodrome.io/canary-step"] = str(predictor["canaryTrafficPercent"])
    if settings.service_account:
        predictor["serviceAccountName"] = settings.service_account
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": object_name(spec.name),
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    }


def canary_manifests(
    spec: UseCase, challenger_uri: str, settings: KServeSettings, *, version: str | None = None
) -> dict[int, dict[str, Any]]:
    """One InferenceService per canary step of the spec (percent -> manifest), applied in order."""
    return {
        canary_percent(spec, step): inference_service(spec, challenger_uri, settings, version=version, step=step)
        for step in spec.canary.steps
    }


def set_canary_traffic(name: str, namespace: str, percent: int, api: Any = None, *, dry_run: bool = False) -> dict:
    """Patch `canaryTrafficPercent` of a live InferenceService (0 = all traffic back to the champion).

    `api` is a `kubernetes.client.CustomObjectsApi` (default: one from the kubeconfig or in-cluster).
    """
    if not (isinstance(percent, int) and 0 <= percent <= 100):
        raise DeployError(f"canaryTrafficPercent must be a whole percent 0-100, not {percent!r}")
    if api is None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api = client.CustomObjectsApi()
    body = {"spec": {"predictor": {"canaryTrafficPercent": percent}}}
    extra = {"dry_run": "All"} if dry_run else {}
    return api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body, **extra)
