"""The serving path on Kubernetes: rendered manifests are valid objects, KServe steps follow the spec.

Everywhere: the gateway's Deployment and Service round-trip through the Kubernetes client's models
with nothing lost. The InferenceService is checked in two parts: its Kubernetes core parts (KServe
inlines a corev1 PodSpec into the predictor and a corev1 Container into the model) through the same
models, its KServe-own fields against the names and types of KServe's v1beta1 API (the `kserve` SDK's
V1beta1PredictorSpec / V1beta1ModelSpec / V1beta1ModelFormat). The `kserve` package itself cannot be
the validator: it ships no CRD schema, and it cannot be installed beside the project's pins
(kserve 0.21.0 needs protobuf<7 and psutil<6; the project resolves protobuf 7 and psutil 7).

Marked k8s (`make test-k8s`): a server-side dry run of the Deployment and Service on the local cluster,
and the rendered gateway running there, its traffic stepped through the `aerodrome_gateway` connection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aerodrome.deploy import (
    DeployError,
    GatewaySettings,
    KServeSettings,
    canary_manifests,
    gateway_deployment,
    gateway_manifests,
    gateway_service,
    inference_service,
    set_canary_traffic,
)
from aerodrome.deploy.models import model_location, storage_uri
from aerodrome.usecase import CanaryPolicy, load_usecase
from conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]
FLIGHTS = load_usecase(ROOT / "include/usecases/flight_delay")
KUBECONFIG = Path("/var/lib/aerodrome-k8s/kubeconfig")
S3_MODEL = "s3://models-me-central-1/mlflow/3/models/m-7f3a/artifacts"

# KServe v1beta1 fields this project renders, with their API types (kserve SDK 0.21.0 openapi_types)
PREDICTOR_FIELDS = {"minReplicas": int, "maxReplicas": int, "canaryTrafficPercent": int, "model": dict}
MODEL_FIELDS = {"modelFormat": dict, "protocolVersion": str, "storageUri": str, "runtime": str}
MODEL_FORMAT_FIELDS = {"name", "version"}
PROTOCOLS = {"v1", "v2", "grpc-v1", "grpc-v2"}


def round_trip(doc: dict[str, Any], model: str) -> dict[str, Any]:
    """`doc` through the Kubernetes client model `model` and back: a field the model lacks is dropped."""
    from kubernetes.client import ApiClient

    api = ApiClient()
    return api.sanitize_for_serialization(api._ApiClient__deserialize(doc, model))


def test_gateway_deployment_and_service_are_kubernetes_objects():
    for doc, model in zip(gateway_manifests([FLIGHTS], GatewaySettings()), ("V1Deployment", "V1Service"), strict=True):
        assert round_trip(doc, model) == doc


def test_gateway_runs_unprivileged_with_tokens_from_a_secret():
    settings = GatewaySettings(image="registry.example/aerodrome/gateway:1.4", data_claim="aerodrome-data")
    deployment = gateway_deployment([FLIGHTS], settings)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 50000
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert not pod["automountServiceAccountToken"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    # listens on the pod's own address (loopback is for `make up`), on the port the Service targets
    assert container["args"][container["args"].index("--host") + 1] == "$(POD_IP)"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    for name, key in (("AERODROME_GATEWAY_TOKEN", "token"), ("AERODROME_GATEWAY_ADMIN_TOKEN", "admin-token")):
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"] == {
            "name": "aerodrome-gateway-tokens",
            "key": key,
        }
    assert "value" not in env["AERODROME_REDIS_URL"]  # the Redis URL holds a password
    assert container["args"][-2:] == ["--usecase", "flight_delay"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "aerodrome-data"} and "emptyDir" in volumes["tmp"]
    service = gateway_service(settings)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"] == "http"


def test_s3_data_root_keeps_the_feast_registry_on_the_volume_and_credentials_in_secrets():
    settings = GatewaySettings(
        data_root="s3://aerodrome-me-central-1/data",
        secret_env={"AWS_SECRET_ACCESS_KEY": ("aerodrome-s3", "secret-key")},
        env={"AERODROME_S3_REGION": "me-central-1"},
    )
    env = {e["name"]: e for e in gateway_deployment([], settings)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AERODROME_FEATURE_REPO"]["value"] == "/opt/aerodrome/data/feature_repo"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "aerodrome-s3"
    assert env["AERODROME_S3_REGION"]["value"] == "me-central-1"
    with pytest.raises(DeployError, match="not a valid Kubernetes name"):
        GatewaySettings(namespace="Aerodrome_Prod")


def check_inference_service(doc: dict[str, Any]) -> None:
    """KServe-own fields by name and type; the inlined PodSpec and Container through the client models."""
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    assert set(doc["spec"]) == {"predictor"}
    assert round_trip(doc["metadata"], "V1ObjectMeta") == doc["metadata"]
    predictor = dict(doc["spec"]["predictor"])
    for name, kind in PREDICTOR_FIELDS.items():
        assert name not in predictor or isinstance(predictor[name], kind), name
    if "canaryTrafficPercent" in predictor:
        assert 0 <= predictor["canaryTrafficPercent"] <= 100
    model = dict(predictor.pop("model"))
    pod = {k: v for k, v in predictor.items() if k not in PREDICTOR_FIELDS} | {"containers": []}
    assert round_trip(pod, "V1PodSpec") == pod
    for name, kind in MODEL_FIELDS.items():
        assert name not in model or isinstance(model[name], kind), name
    assert set(model["modelFormat"]) <= MODEL_FORMAT_FIELDS and model["protocolVersion"] in PROTOCOLS
    container = {k: v for k, v in model.items() if k not in MODEL_FIELDS} | {"name": "kserve-container"}
    assert round_trip(container, "V1Container") == container


def test_inference_service_serves_the_mlflow_pyfunc_on_the_v2_protocol():
    settings = KServeSettings(service_account="aerodrome-models")
    champion = inference_service(FLIGHTS, S3_MODEL, settings, version="3")
    check_inference_service(champion)
    predictor = champion["spec"]["predictor"]
    assert champion["metadata"]["name"] == "flight-delay"  # a DNS name: no underscore
    assert "canaryTrafficPercent" not in predictor  # the champion takes all traffic
    assert predictor["model"]["modelFormat"] == {"name": "mlflow"} and predictor["model"]["protocolVersion"] == "v2"
    assert predictor["model"]["storageUri"] == S3_MODEL and predictor["serviceAccountName"] == "aerodrome-models"
    assert champion["metadata"]["annotations"]["aerodrome.io/model-uri"] == "models:/flight_delay/3"
    assert champion["metadata"]["labels"]["aerodrome.io/flavor"] == FLIGHTS.model.flavor


def test_one_inference_service_per_canary_step_of_the_spec():
    steps = canary_manifests(FLIGHTS, S3_MODEL, KServeSettings(), version="4")
    assert list(steps) == [5, 25, 50, 100] == [int(s) for s in FLIGHTS.canary.steps]
    for percent, doc in steps.items():
        check_inference_service(doc)
        assert doc["spec"]["predictor"]["canaryTrafficPercent"] == percent
        assert doc["metadata"]["name"] == "flight-delay" and doc["spec"]["predictor"]["model"]["storageUri"] == S3_MODEL
    with pytest.raises(DeployError, match=r"step 30 is not one of canary.steps \(5, 25, 50, 100\)"):
        inference_service(FLIGHTS, S3_MODEL, KServeSettings(), step=30)
    halves = FLIGHTS.model_copy(update={"canary": CanaryPolicy(steps=[2.5, 100])})
    with pytest.raises(DeployError, match="2.5 % is not a whole percent"):
        canary_manifests(halves, S3_MODEL, KServeSettings())


def test_storage_uri_of_a_registered_version(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("flight_delay")
    champion = client.create_model_version("flight_delay", source=S3_MODEL)
    proxied = client.create_model_version("flight_delay", source="mlflow-artifacts:/3/models/m-9c1e/artifacts")
    client.set_registered_model_alias("flight_delay", "champion", champion.version)
    client.set_registered_model_alias("flight_delay", "challenger", proxied.version)
    found = model_location(client, "flight_delay", "champion")
    assert (found.version, found.storage_uri) == ("1", S3_MODEL)
    found = model_location(client, "flight_delay", "challenger", "s3://models-me-central-1/mlflow/")
    assert found.storage_uri == "s3://models-me-central-1/mlflow/3/models/m-9c1e/artifacts"
    with pytest.raises(DeployError, match="proxied by the MLflow server"):
        model_location(client, "flight_delay", "challenger")
    with pytest.raises(DeployError, match="no @rejected version"):
        model_location(client, "flight_delay", "rejected")
    with pytest.raises(DeployError, match="not a location KServe can read"):
        storage_uri("/opt/aerodrome/data/mlflow/artifacts/1/models/m-1/artifacts")
    with pytest.raises(DeployError, match="not a location KServe can read"):
        inference_service(FLIGHTS, "file:///opt/aerodrome/models/m-1", KServeSettings())


def test_render_cli_writes_the_gateway_and_every_step(tmp_path, capsys):
    from aerodrome.deploy.__main__ import main

    args = ["render", "--usecase", "flight_delay", "--storage-uri", S3_MODEL, "--out", str(tmp_path)]
    assert main([*args, "--step", "all", "--image", "aerodrome/gateway:1.4"]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["gateway.yaml"] + [f"inferenceservice-flight-delay-step-{s}.yaml" for s in (100, 25, 5, 50)]
    deployment, service = yaml.safe_load_all((tmp_path / "gateway.yaml").read_text())
    assert deployment == gateway_deployment([FLIGHTS], GatewaySettings(image="aerodrome/gateway:1.4"))
    assert service["kind"] == "Service"
    step = yaml.safe_load((tmp_path / "inferenceservice-flight-delay-step-25.yaml").read_text())
    assert step == inference_service(FLIGHTS, S3_MODEL, KServeSettings(), step=25)
    capsys.readouterr()
    assert main(["render", "--usecase", "flight_delay", "--only", "kserve", "--storage-uri", S3_MODEL]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["spec"]["predictor"]["model"]["storageUri"] == S3_MODEL
    assert main([*args, "--step", "7"]) == 2
    assert "step 7 is not one of canary.steps" in capsys.readouterr().err


class RecordingCustomObjects:
    """Stands in for kubernetes.client.CustomObjectsApi: records the patch it is asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def patch_namespaced_custom_object(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return args[-1]


def test_canary_traffic_patch_of_a_live_inference_service():
    api = RecordingCustomObjects()
    set_canary_traffic("flight-delay", "aerodrome", 0, api)  # rollback: all traffic to the champion
    set_canary_traffic("flight-delay", "aerodrome", 25, api, dry_run=True)
    where = ("serving.kserve.io", "v1beta1", "aerodrome", "inferenceservices", "flight-delay")
    assert api.calls == [
        ((*where, {"spec": {"predictor": {"canaryTrafficPercent": 0}}}), {}),
        ((*where, {"spec": {"predictor": {"canaryTrafficPercent": 25}}}), {"dry_run": "All"}),
    ]
    for bad in (101, -1, 12.5):
        with pytest.raises(DeployError, match="whole percent 0-100"):
            set_canary_traffic("flight-delay", "aerodrome", bad, api)


# --- on the local cluster (`make test-k8s`) ---------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """An API client on the local Kubernetes that `make test-k8s` starts (absent: fail in CI, else skip)."""
    if not KUBECONFIG.exists():
        message = f"{KUBECONFIG} not found: run `make test-k8s` (it builds and starts the local cluster)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from kubernetes import config

    return config.new_client_from_config(str(KUBECONFIG))


def sent_is_kept(sent: Any, kept: Any, where: str = "") -> None:
    """Every field sent is in the server's answer with the same value (it only adds defaults)."""
    if isinstance(sent, dict):
        for key, value in sent.items():
            assert key in kept, f"{where}.{key} dropped by the API server"
            sent_is_kept(value, kept[key], f"{where}.{key}")
    elif isinstance(sent, list):
        assert len(sent) == len(kept), where
        for i, (a, b) in enumerate(zip(sent, kept, strict=True)):
            sent_is_kept(a, b, f"{where}[{i}]")
    else:
        assert sent == kept, f"{where}: sent {sent!r}, the server kept {kept!r}"


@pytest.mark.k8s
def test_server_side_dry_run_of_the_gateway(cluster):
    from kubernetes import client

    settings = GatewaySettings(image="docker.io/aerodrome/host-runtime:local", image_pull_policy="Never")
    deployment, service = gateway_manifests([FLIGHTS], settings)
    apps, core = client.AppsV1Api(cluster), client.CoreV1Api(cluster)
    for create, doc in ((apps.create_namespaced_deployment, deployment), (core.create_namespaced_service, service)):
        answer = create(settings.namespace, doc, dry_run="All", _preload_content=False)
        kept = json.loads(answer.data)
        assert kept["kind"] == doc["kind"] and kept["metadata"]["uid"]  # validated and admitted, not stored
        sent_is_kept(doc, kept, doc["kind"])
    stored = apps.list_namespaced_deployment(
        settings.namespace, label_selector="app.kubernetes.io/name=aerodrome-gateway"
    )
    assert not stored.items


@pytest.mark.k8s
def test_server_side_dry_run_of_the_inference_service(cluster):
    """Runs where KServe is installed; the local cluster cannot have it (see the skip reason)."""
    from kubernetes import client

    crds = client.ApiextensionsV1Api(cluster).list_custom_resource_definition().items
    if "inferenceservices.serving.kserve.io" not in {c.metadata.name for c in crds}:
        pytest.skip(
            "KServe's InferenceService CRD is not on this cluster, and no PyPI package ships it (the kserve "
            "SDK carries client models, not the CRD; the project does not vendor it). The local cluster could "
            "not take it anyway: its Kubernetes 1.20 API server, built with Go 1.19, crashes on the first "
            "custom object (vendored reflect2 1.0.1). The manifest is checked without a cluster by "
            "test_one_inference_service_per_canary_step_of_the_spec"
        )
    doc = inference_service(FLIGHTS, S3_MODEL, KServeSettings(), step=25)
    answer = client.CustomObjectsApi(cluster).create_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", "aerodrome", "inferenceservices", doc, dry_run="All"
    )
    sent_is_kept(doc, answer, "InferenceService")


def local_profile(deployment: dict[str, Any], port: int) -> dict[str, Any]:
    """The rendered Deployment on the local cluster: no registry, no route off the machine.

    The host-runtime image (no binaries of its own) runs the project venv from read-only hostPath
    mounts at the same paths, on the host network (its pod IP is 127.0.0.1); the rest, non-root user,
    read-only root filesystem, probes, tokens from the Secret, is the rendered pod as it is.
    """
    import sys

    sys.path.insert(0, str(ROOT / "scripts" / "k8s"))
    from kpo_local import HOST_RUNTIME_IMAGE, host_mounts

    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pod["hostNetwork"] = True
    container |= {"image": HOST_RUNTIME_IMAGE, "imagePullPolicy": "Never", "command": [sys.executable]}
    for i, (path, _) in enumerate(host_mounts(ROOT, sys.executable)):
        pod["volumes"].append({"name": f"host-{i}", "hostPath": {"path": path, "type": "Directory"}})
        container["volumeMounts"].append({"name": f"host-{i}", "mountPath": path, "readOnly": True})
    return deployment


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def gateway_in_cluster(cluster, monkeypatch):
    """The rendered gateway running in the local cluster, its tokens in a Secret; removed afterwards."""
    import secrets

    from kubernetes import client, watch

    settings = GatewaySettings(
        port=free_port(),
        online_store="sqlite",
        mlflow_tracking_uri="sqlite:////opt/aerodrome/data/mlflow/mlflow.db",  # on the pod's data volume
        tokens_secret="aerodrome-gateway-test-tokens",
        name="aerodrome-gateway-test",
    )
    tokens = {"token": secrets.token_urlsafe(16), "admin-token": secrets.token_urlsafe(16)}
    deployment, service = gateway_manifests([FLIGHTS], settings)
    core, apps = client.CoreV1Api(cluster), client.AppsV1Api(cluster)
    secret = {"metadata": {"name": settings.tokens_secret}, "stringData": tokens}
    core.create_namespaced_secret(settings.namespace, secret)
    selector = f"app.kubernetes.io/instance={settings.name}"
    try:
        apps.create_namespaced_deployment(settings.namespace, local_profile(deployment, settings.port))
        core.create_namespaced_service(settings.namespace, service)
        stream = watch.Watch().stream(
            core.list_namespaced_pod, settings.namespace, label_selector=selector, timeout_seconds=240
        )
        for event in stream:
            statuses = event["object"].status.container_statuses or []
            if statuses and statuses[0].ready:  # the readiness probe on /health passed
                break
        else:
            events = [(e.reason, e.message) for e in core.list_namespaced_event(settings.namespace).items]
            pytest.fail(f"the gateway pod was not ready within 240 s; events: {events[-10:]}")
        # what the `aerodrome_gateway` connection holds; in a real cluster: host <name>.<namespace>.svc
        connection = {"conn_type": "http", "host": "127.0.0.1", "port": settings.port, "schema": "http"}
        connection |= {"password": tokens["admin-token"], "extra": {"token": tokens["token"]}}
        monkeypatch.setenv("AIRFLOW_CONN_AERODROME_GATEWAY", json.dumps(connection))
        yield settings
    finally:
        apps.delete_namespaced_deployment(settings.name, settings.namespace, propagation_policy="Foreground")
        core.delete_namespaced_service(settings.name, settings.namespace)
        core.delete_namespaced_secret(settings.tokens_secret, settings.namespace)
        if core.list_namespaced_pod(settings.namespace, label_selector=selector).items:  # gone before the next test
            stream = watch.Watch().stream(
                core.list_namespaced_pod, settings.namespace, label_selector=selector, timeout_seconds=60
            )
            for event in stream:
                if event["type"] == "DELETED":
                    break


@pytest.mark.k8s
def test_the_canary_policy_drives_the_gateway_running_in_the_cluster(gateway_in_cluster):
    """The canary's own client, found through the `aerodrome_gateway` connection, steps the pod's traffic."""
    from aerodrome.serving.client import GatewayError
    from aerodrome_airflow.gateway import gateway_client

    gateway = gateway_client()
    assert gateway.base_url == f"http://127.0.0.1:{gateway_in_cluster.port}"
    assert gateway.health()["usecases"]["flight_delay"]["challenger_percent"] == 0
    for step in FLIGHTS.canary.steps:
        assert gateway.set_traffic("flight_delay", step)["challenger_percent"] == step
    assert gateway.set_traffic("flight_delay", 0)["challenger_percent"] == 0  # rollback
    with pytest.raises(GatewayError, match="HTTP 401"):  # the serving token opens no admin route
        type(gateway)(gateway.base_url, gateway.token, gateway.token).set_traffic("flight_delay", 100)
