"""The cluster's deploy assets are valid Kubernetes and agree with the code, the images and the one-host stack.

Offline: every manifest is validated against the Kubernetes OpenAPI schemas bundled by the
`kubernetes-validate` package (strict: an unknown field is an error), at the oldest and the newest
Kubernetes version it carries. The Helm values are checked as YAML and against what the project can
know without the chart (which is not on any package registry reachable here): Airflow options that
exist, an executor whose provider is installed, and the same images, paths, ports, secrets and
settings as docker-compose.yaml, the Dockerfiles and the rendered gateway manifests.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml
from aerodrome.deploy import REQUEST_RATE_METRIC, DeployError, GatewaySettings, gateway_manifests
from aerodrome.deploy.scaling import REQUESTS_COUNTER
from aerodrome.serving.replicas import SYNC_ENV
from aerodrome.usecase import load_usecase
from test_docker_compose import AIRFLOW_DOCKERFILE, SECRET_NAME, URL_PASSWORD, dockerfile, environment, strings

ROOT = Path(__file__).resolve().parents[1]
FLIGHTS = load_usecase(ROOT / "include/usecases/flight_delay")
HELM_VALUES = ROOT / "deploy/helm/airflow-values.yaml"
ADAPTER_VALUES = ROOT / "deploy/k8s/prometheus-adapter-values.yaml"
RENDERED = sorted((ROOT / "deploy/k8s").glob("gateway*.yaml"))
GATEWAY_DOCKERFILE = ROOT / "docker/gateway/Dockerfile"
# the oldest and newest Kubernetes the package has schemas for (HPA autoscaling/v2 needs >= 1.23)
K8S_VERSIONS = (kubernetes_validate.utils.all_versions()[0], kubernetes_validate.utils.latest_version())
SCALED = GatewaySettings(min_replicas=2, max_replicas=6, data_claim="aerodrome-data")
# AERODROME_* settings of the one-host Airflow that the cluster does not need, and why
COMPOSE_ONLY = {"AERODROME_K8S_RESOURCES": "an optional per-cluster override of the spec's pod resources"}


def docs_of(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def validate(doc: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(map(str, exc.absolute_path))
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {where}: {exc.message} (Kubernetes {version})")


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def container_env(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def read_by_code() -> set[str]:
    source = "\n".join(p.read_text() for d in ("include", "plugins") for p in (ROOT / d).rglob("*.py"))
    return set(re.findall(r"[\"'](AERODROME_[A-Z0-9_]+)[\"']", source))


def dockerfile_env(path: Path) -> dict[str, str]:
    pairs = " ".join(a for k, a in dockerfile(path) if k == "ENV").split()
    return dict(p.split("=", 1) for p in pairs if "=" in p)


def dockerfile_arg(path: Path, name: str) -> str:
    return next(a.split("=", 1)[1].strip("\"'") for k, a in dockerfile(path) if k == "ARG" and a.startswith(name + "="))


def repository(image: str) -> str:
    """`aerodrome/gateway` of `${AERODROME_GATEWAY_IMAGE:-aerodrome/gateway:local}` or `aerodrome/gateway:1.4`."""
    image = re.sub(r"\$\{\w+:-(.*)\}", r"\1", image)
    return image.rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image


@pytest.fixture(scope="module")
def helm() -> dict[str, Any]:
    values = yaml.safe_load(HELM_VALUES.read_text())
    assert isinstance(values, dict) and values, f"{HELM_VALUES}: not a YAML mapping"
    return values


@pytest.fixture(scope="module")
def helm_env(helm) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in helm["env"]}


@pytest.fixture(scope="module")
def helm_secrets(helm) -> dict[str, tuple[str, str]]:
    return {s["envName"]: (s["secretName"], s["secretKey"]) for s in helm["secret"]}


@pytest.fixture(scope="module")
def compose() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"]


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, dict[str, Any]]]:
    assert RENDERED, "deploy/k8s/ holds no rendered gateway manifests"
    return {p.name: by_kind(docs_of(p)) for p in RENDERED}


# --- Kubernetes schemas -----------------------------------------------------------------------


@pytest.mark.parametrize("settings", [GatewaySettings(), SCALED], ids=["one-replica", "autoscaled"])
def test_generated_gateway_manifests_are_valid_kubernetes(settings):
    docs = gateway_manifests([FLIGHTS], settings)
    expected = {"Deployment", "Service"} | (
        {"HorizontalPodAutoscaler", "PodDisruptionBudget"} if settings.scales else set()
    )
    assert set(by_kind(docs)) == expected
    for doc in docs:
        validate(doc)


def test_rendered_manifest_files_are_valid_kubernetes(rendered):
    for kinds in rendered.values():
        for doc in kinds.values():
            validate(doc)


def test_the_schema_check_catches_unknown_fields_and_wrong_types():
    """The validator is strict: were it lenient, the checks above would prove nothing."""
    hpa = by_kind(gateway_manifests([FLIGHTS], SCALED))["HorizontalPodAutoscaler"]
    hpa["spec"]["metrics"][0]["pods"]["targett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="'targett' was unexpected"):
        kubernetes_validate.validate(hpa, K8S_VERSIONS[-1], strict=True)
    deployment = by_kind(gateway_manifests([FLIGHTS], SCALED))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8090"
    with pytest.raises(kubernetes_validate.ValidationError, match="is not of type 'integer'"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_rendered_files_are_what_the_generator_renders_now(tmp_path):
    """Each file's header holds its command; rendering it again gives the same objects."""
    from aerodrome.deploy.__main__ import main

    for path in RENDERED:
        header = path.read_text().split("\napiVersion:", 1)[0].splitlines()
        start = next(i for i, line in enumerate(header) if line.startswith("# python -m aerodrome.deploy "))
        command = " ".join(line.lstrip("#").strip() for line in header[start:])
        args = shlex.split(command.removeprefix("python -m aerodrome.deploy "))
        out = tmp_path / path.stem
        assert main([*args, "--out", str(out)]) == 0, f"{path.name}: its command fails: {command}"
        assert docs_of(out / "gateway.yaml") == docs_of(path), (
            f"{path.name} is stale: render it again with the command in its header"
        )


# --- autoscaling on the request rate --------------------------------------------------------------


def test_autoscaler_scales_the_deployment_on_the_adapters_request_rate(rendered):
    kinds = rendered["gateway-autoscaled.yaml"]
    deployment, hpa, pdb = kinds["Deployment"], kinds["HorizontalPodAutoscaler"], kinds["PodDisruptionBudget"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count; an apply would reset it"
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == REQUEST_RATE_METRIC
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    # the adapter serves that metric from the counter the gateway exports, on the port Prometheus scrapes
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    assert rule["name"]["as"] == REQUEST_RATE_METRIC and REQUESTS_COUNTER in rule["seriesQuery"]
    assert f'"{REQUESTS_COUNTER}"' in (ROOT / "include/aerodrome/serving/app.py").read_text()
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert annotations["prometheus.io/port"] == str(port) and annotations["prometheus.io/path"] == "/metrics"


def test_one_replica_gateway_keeps_the_canary_in_one_process(rendered):
    kinds = rendered["gateway.yaml"]
    assert set(kinds) == {"Deployment", "Service"}
    assert kinds["Deployment"]["spec"]["replicas"] == 1 and kinds["Deployment"]["spec"]["strategy"] == {
        "type": "Recreate"
    }
    assert SYNC_ENV not in container_env(kinds["Deployment"]), "one process shares nothing"


def test_autoscaled_replicas_share_their_canary_state_through_a_shared_data_root(rendered):
    """Each pod polls the shared state (tests/test_gateway_replicas.py proves the mechanism with two processes)."""
    assert "recommended" in (ROOT / "deploy/k8s/gateway-autoscaled.yaml").read_text().splitlines()[0]
    env = container_env(rendered["gateway-autoscaled.yaml"]["Deployment"])
    assert float(env[SYNC_ENV]["value"]) > 0
    assert env["AERODROME_DATA_ROOT"]["value"].startswith("s3://"), "every pod must see the same data root"
    scaled = container_env(by_kind(gateway_manifests([FLIGHTS], SCALED))["Deployment"])
    assert float(scaled[SYNC_ENV]["value"]) == GatewaySettings.sync_seconds


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, r"min_replicas \(3\) <= max_replicas \(2\)"),
        ({"min_replicas": 0, "max_replicas": 2}, r"need 1 <= min_replicas \(0\)"),
        ({"max_replicas": 4, "requests_per_second": "fifty"}, "not a positive Kubernetes quantity"),
        ({"max_replicas": 4, "requests_per_second": "0"}, "not a positive Kubernetes quantity"),
        ({"max_replicas": 4}, "would be an emptyDir of each pod: give an s3:// data root or a ReadWriteMany"),
        ({"max_replicas": 4, "data_claim": "data", "sync_seconds": 0}, "sync_seconds 0 must be > 0"),
    ],
)
def test_bad_scaling_settings_are_refused_with_the_fix(settings, message):
    with pytest.raises(DeployError, match=message):
        GatewaySettings(**settings)


# --- the same platform everywhere -------------------------------------------------------------------


def test_gateway_port_is_the_same_in_code_images_compose_manifests_and_helm(compose, rendered, helm_env):
    serving_main = (ROOT / "include/aerodrome/serving/__main__.py").read_text()
    port = int(re.search(r'"--port", type=int, default=(\d+)', serving_main).group(1))
    assert GatewaySettings.port == port
    instructions = dockerfile(GATEWAY_DOCKERFILE)
    assert [a for k, a in instructions if k == "EXPOSE"] == [str(port)]
    cmd = next(a for k, a in instructions if k == "CMD")
    assert f'"--port", "{port}"' in cmd
    gateway = compose["gateway"]
    assert any(str(p).endswith(f":{port}") for p in gateway["ports"])
    assert f"localhost:{port}/health" in " ".join(gateway["healthcheck"]["test"])
    assert urlparse(environment(compose["airflow-scheduler"])["AERODROME_GATEWAY_URL"]).port == port
    for name, kinds in rendered.items():
        deployment, service = kinds["Deployment"], kinds["Service"]
        assert deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == port, name
        assert service["spec"]["ports"][0]["port"] == port, name
        # Airflow reaches the gateway through its Service, by name, on that port
        url = urlparse(helm_env["AERODROME_GATEWAY_URL"])
        assert (url.hostname, url.port) == (service["metadata"]["name"], port), name


def test_images_are_the_ones_compose_builds(compose, helm, helm_env, rendered):
    builds = {repository(s["image"]): s["build"]["dockerfile"] for s in compose.values() if s.get("build")}
    assert builds == {
        "aerodrome/airflow": "docker/airflow/Dockerfile",
        "aerodrome/gateway": "docker/gateway/Dockerfile",
        "aerodrome/trainer": "docker/trainer/Dockerfile",
    }
    assert (
        helm["images"]["airflow"]["repository"] == helm["images"]["pod_template"]["repository"] == "aerodrome/airflow"
    )
    assert repository(helm_env["AERODROME_TRAINER_IMAGE"]) == "aerodrome/trainer"
    training = (ROOT / "plugins/aerodrome_airflow/training.py").read_text()
    default = re.search(r'"AERODROME_TRAINER_IMAGE", "([^"]+)"', training).group(1)
    assert repository(default) == "aerodrome/trainer"
    assert repository(GatewaySettings.image) == "aerodrome/gateway"
    for name, kinds in rendered.items():
        image = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
        assert repository(image) == "aerodrome/gateway", name
    pinned = re.search(r"^apache-airflow==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert helm["airflowVersion"] == helm["defaultAirflowTag"] == pinned, "the chart must know the image's Airflow"


def test_users_are_the_images_users(helm, rendered):
    assert helm["uid"] == int(dockerfile_arg(AIRFLOW_DOCKERFILE, "AIRFLOW_UID"))
    assert helm["gid"] == 0 and helm["securityContexts"]["pod"]["runAsUser"] == helm["uid"]
    gateway_uid = int(dockerfile_arg(GATEWAY_DOCKERFILE, "GATEWAY_UID"))
    for name, kinds in rendered.items():
        assert kinds["Deployment"]["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == gateway_uid, name


def test_dags_and_plugins_are_baked_where_airflow_looks(helm):
    env = dockerfile_env(AIRFLOW_DOCKERFILE)
    home = env["AIRFLOW_HOME"]
    core = helm["config"]["core"]
    assert core["dags_folder"] == env["AIRFLOW__CORE__DAGS_FOLDER"] == f"{home}/dags"
    assert core["plugins_folder"] == env["AIRFLOW__CORE__PLUGINS_FOLDER"] == f"{home}/plugins"
    copied = {tuple(a.split()) for k, a in dockerfile(AIRFLOW_DOCKERFILE) if k == "COPY"}
    workdir = [a for k, a in dockerfile(AIRFLOW_DOCKERFILE) if k == "WORKDIR"][-1]
    assert workdir == home
    for folder in ("dags", "plugins", "include"):
        assert (f"{folder}/", f"{folder}/") in copied and (ROOT / folder).is_dir(), folder
    assert not helm["dags"]["gitSync"]["enabled"] and not helm["dags"]["persistence"]["enabled"]
    usecases = helm_env_value(helm, "AERODROME_USECASES_DIR")
    assert usecases == env["AERODROME_USECASES_DIR"] == f"{home}/include/usecases"


def helm_env_value(helm: dict[str, Any], name: str) -> str:
    return next(str(e["value"]) for e in helm["env"] if e["name"] == name)


def test_settings_the_stack_sets_are_read_by_the_code(helm_env, helm_secrets, rendered):
    code = read_by_code()
    names = {n for n in (*helm_env, *helm_secrets) if n.startswith("AERODROME_")}
    for kinds in rendered.values():
        names |= {n for n in container_env(kinds["Deployment"]) if n.startswith("AERODROME_")}
    unread = sorted(names - code)
    assert not unread, f"set for the cluster but read by no code in include/ or plugins/: {unread}"


def test_the_cluster_sets_what_the_one_host_stack_sets(compose, helm, helm_env, helm_secrets):
    airflow = {n for n in environment(compose["airflow-scheduler"]) if n.startswith(("AERODROME_", "MLFLOW_"))}
    workers = {e["name"] for e in helm["workers"]["env"]}  # the task pods: the scheduler's LocalExecutor on one host
    missing = sorted(airflow - set(helm_env) - set(helm_secrets) - workers - set(COMPOSE_ONLY))
    assert not missing, f"docker-compose.yaml's Airflow sets {missing}; the Helm values do not"
    # the one-host stack's secrets stay secrets in the cluster: by Secret reference, never inline
    compose_env = environment(compose["airflow-scheduler"])
    for name, value in compose_env.items():
        if name in airflow and ("${" in value and (SECRET_NAME.search(name) or URL_PASSWORD.search(value))):
            assert name in helm_secrets, (
                f"{name} holds a credential on one host; the cluster must take it from a Secret"
            )
    for name, value in helm_env.items():
        assert not SECRET_NAME.search(name) and not URL_PASSWORD.search(value), f"{name}: a credential written inline"


def test_gateway_and_airflow_share_secrets_data_and_registry(helm_env, helm_secrets, rendered):
    for name, kinds in rendered.items():
        env = container_env(kinds["Deployment"])
        for variable in (
            "AERODROME_GATEWAY_TOKEN",
            "AERODROME_GATEWAY_ADMIN_TOKEN",
            "AERODROME_REDIS_URL",
            "AERODROME_FEATURE_REGISTRY",
        ):
            ref = env[variable]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == helm_secrets[variable], f"{name}: {variable} comes from another Secret"
        # predictions and traffic the gateway writes are read by the drift and canary DAGs
        for variable in ("AERODROME_DATA_ROOT", "MLFLOW_TRACKING_URI", "AERODROME_ONLINE_STORE", "AERODROME_S3_REGION"):
            assert env[variable]["value"] == helm_env[variable], f"{name}: {variable} differs from Airflow's"
        assert kinds["Deployment"]["metadata"]["namespace"] == helm_env["AERODROME_K8S_NAMESPACE"], name


def test_data_stays_in_the_allowed_regions(compose, helm_env):
    from aerodrome.settings import Settings

    allowed = helm_env["AERODROME_ALLOWED_REGIONS"].split(",")
    assert helm_env["AERODROME_S3_REGION"] in allowed
    assert set(allowed) == set(Settings.allowed_regions), "the cluster's policy differs from the platform default"
    bucket = urlparse(helm_env["AERODROME_DATA_ROOT"])
    assert bucket.scheme == "s3" and helm_env["AERODROME_S3_REGION"] in bucket.netloc, "name buckets by their region"
    assert environment(compose["minio"])["MINIO_SITE_REGION"] in allowed
    assert environment(compose["mlflow"])["AWS_DEFAULT_REGION"] in allowed


# --- Helm values against what Airflow and its providers define ----------------------------------------


def test_helm_executor_is_installed_and_runs_in_the_namespace_of_the_pods(helm, helm_env):
    import importlib.util

    executors = {
        "KubernetesExecutor": "airflow.providers.cncf.kubernetes.executors.kubernetes_executor",
        "CeleryExecutor": "airflow.providers.celery.executors.celery_executor",
    }
    assert helm["executor"] in executors, f"executor {helm['executor']}: use CeleryExecutor or KubernetesExecutor"
    module = executors[helm["executor"]]
    assert importlib.util.find_spec(module), f"{helm['executor']}: {module} is not installed in the image"
    assert helm["config"]["kubernetes_executor"]["namespace"] == helm_env["AERODROME_K8S_NAMESPACE"]
    assert helm["allowPodLaunching"], "task pods start the training pods"
    assert helm_env["AERODROME_TRAIN_BACKEND"] == "kubernetes"


def test_helm_config_options_exist_in_airflow(helm):
    """Each `config:` option is one Airflow or an installed provider defines (a typo would be ignored silently)."""
    import airflow
    from airflow.providers.cncf.kubernetes.get_provider_info import get_provider_info

    template = Path(airflow.__file__).parent / "config_templates" / "config.yml"
    known = {section: set(body["options"]) for section, body in yaml.safe_load(template.read_text()).items()}
    for section, body in get_provider_info()["config"].items():
        known.setdefault(section, set()).update(body["options"])
    for section, options in helm["config"].items():
        assert section in known, f"config.{section}: no such Airflow config section"
        unknown = sorted(set(options) - known[section])
        assert not unknown, f"config.{section}: no such options {unknown}"


def test_helm_values_hold_no_credentials_and_reference_every_secret(helm):
    inline = [s for s in strings(helm) if URL_PASSWORD.search(s)]
    assert not inline, f"URLs with a password in the Helm values: {inline}"
    for key in ("fernetKey", "apiSecretKey", "jwtSecret", "webserverSecretKey"):
        assert key not in helm, f"{key} inline: use {key}SecretName (or fernetKeySecretName) instead"
    assert helm["data"]["metadataSecretName"] and "metadataConnection" not in helm["data"]
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert helm[key], f"{key}: every API server and scheduler must share it"
    assert not helm["postgresql"]["enabled"], "the metadata database is external"


# --- security settings: signing keys, audit trail, residency ------------------------------------------

COMPOSE_VERIFIERS = ("airflow-scheduler", "gateway", "trainer")  # promotion, the gateway's model load
COMPOSE_SIGNERS = {"airflow-scheduler", "trainer"}  # registration (LocalExecutor training; the trainer image)


def volume_paths(service: dict[str, Any]) -> dict[str, str]:
    """Mount path -> named volume of a compose service."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", []) if isinstance(v, str)}


def db_region_tags(text: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """AERODROME_DB_REGIONS as the platform parses it (a wrong region name fails here)."""
    from aerodrome.settings import Settings

    monkeypatch.setenv("AERODROME_DB_REGIONS", text)
    return dict(Settings.from_env().db_regions)


def test_compose_verifiers_trust_the_keygen_public_key_and_only_signers_hold_the_private_key(compose):
    keygen = compose["signing-keygen"]
    assert "python -m aerodrome.security.signing keygen" in " ".join(keygen["entrypoint"])
    private_volume = volume_paths(keygen)["/opt/aerodrome/signing"]
    public_volume = volume_paths(keygen)["/opt/aerodrome/trusted-keys"]
    for name, service in compose.items():
        env, mounts = environment(service), volume_paths(service)
        if name in COMPOSE_VERIFIERS:
            trusted = env["AERODROME_SIGNING_TRUSTED_KEYS"]
            assert mounts[trusted] == public_volume, f"{name}: {trusted} is not the keygen's public key volume"
            assert env.get("AERODROME_REQUIRE_SIGNATURE", "true") == "true", f"{name}: unsigned models would load"
            assert service["depends_on"]["signing-keygen"]["condition"] == "service_completed_successfully", name
        holds_private = private_volume in mounts.values()
        if name in COMPOSE_SIGNERS:
            assert holds_private and mounts[str(Path(env["AERODROME_SIGNING_KEY"]).parent)] == private_volume, name
        elif name != "signing-keygen":
            assert not holds_private and "AERODROME_SIGNING_KEY" not in env, f"{name} must not get the private key"


def test_compose_audit_writers_share_one_dsn_from_env_and_tag_database_regions(compose, monkeypatch):
    from aerodrome.security.config import SecuritySettings
    from aerodrome.settings import Settings

    writers = ("airflow-scheduler", "airflow-apiserver", "airflow-triggerer", "gateway", "trainer")
    dsns = {environment(compose[name])["AERODROME_AUDIT_DSN"] for name in writers}
    assert len(dsns) == 1, f"every writer appends to one chain, got {dsns}"
    (dsn,) = dsns
    assert URL_PASSWORD.search(dsn).group(1).startswith("${AUDIT_DB_PASSWORD:?"), "the password comes from .env"
    assert "AUDIT_DB_PASSWORD" in environment(compose["postgres"]), "the init script creates the audit role"
    assert "create_role_and_database audit audit" in (ROOT / "docker/postgres/init-databases.sh").read_text()
    SecuritySettings(audit_dsn=dsn.replace("${AUDIT_DB_PASSWORD:?set AUDIT_DB_PASSWORD in .env}", "pw"))
    for name in writers:
        regions = environment(compose[name])["AERODROME_DB_REGIONS"]
        assert db_region_tags(regions, monkeypatch)["*"] in Settings.allowed_regions, f"{name}: {regions}"


def test_the_gateway_verifies_with_a_mounted_public_key_and_never_gets_the_private_key(rendered, helm):
    trusted_configmap = next(v["configMap"]["name"] for v in helm["workers"]["extraVolumes"] if "configMap" in v)
    for name, kinds in rendered.items():
        pod = kinds["Deployment"]["spec"]["template"]["spec"]
        env = container_env(kinds["Deployment"])
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        trusted = env["AERODROME_SIGNING_TRUSTED_KEYS"]["value"]
        assert volumes[mounts[trusted]]["configMap"]["name"] == trusted_configmap, f"{name}: not the workers' keys"
        assert "AERODROME_SIGNING_KEY" not in env, f"{name}: the gateway must not get the private key"
        assert not any("secret" in v for v in volumes.values()), f"{name}: a Secret volume on a verifier"


def test_helm_only_the_task_pods_sign_and_every_verifier_trusts_the_same_keys(helm, helm_env):
    workers = helm["workers"]
    env = {e["name"]: e["value"] for e in workers["env"]}
    mounts = {m["mountPath"]: m["name"] for m in workers["extraVolumeMounts"]}
    volumes = {v["name"]: v for v in workers["extraVolumes"]}
    key = Path(env["AERODROME_SIGNING_KEY"])
    secret = volumes[mounts[str(key.parent)]]["secret"]
    assert secret["secretName"] == helm_env["AERODROME_K8S_SIGNING_KEY_REF"], "the trainer pod mounts the same key"
    assert [i["path"] for i in secret["items"]] == [key.name] and secret["defaultMode"] == 0o400
    assert "configMap" in volumes[mounts[env["AERODROME_SIGNING_TRUSTED_KEYS"]]]
    assert "AERODROME_SIGNING_KEY" not in helm_env, "scheduler, API server, triggerer never sign"
    for component in ("apiServer", "scheduler", "triggerer", "dagProcessor"):
        assert not any(
            "secret" in v and v["secret"]["secretName"] == secret["secretName"]
            for v in helm[component].get("extraVolumes", [])
        ), component


def test_every_audit_writer_in_the_cluster_takes_the_dsn_from_one_secret(helm_secrets, rendered, helm_env, monkeypatch):
    from aerodrome.settings import Settings

    assert "AERODROME_AUDIT_DSN" in helm_secrets and "AERODROME_AUDIT_DSN" not in helm_env
    for name, kinds in rendered.items():
        ref = container_env(kinds["Deployment"])["AERODROME_AUDIT_DSN"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == helm_secrets["AERODROME_AUDIT_DSN"], f"{name}: another audit chain"
        regions = container_env(kinds["Deployment"])["AERODROME_DB_REGIONS"]["value"]
        assert json.loads(regions) == json.loads(helm_env["AERODROME_DB_REGIONS"]), name
    tags = db_region_tags(helm_env["AERODROME_DB_REGIONS"], monkeypatch)
    assert set(tags.values()) <= set(Settings.allowed_regions)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"env": {"AERODROME_SIGNING_KEY": "/keys/k.pem"}}, "only verifies"),
        ({"secret_env": {"AERODROME_SIGNING_KEY": ("signing", "ed25519.pem")}}, "only verifies"),
        ({"env": {"AERODROME_AUDIT_DSN": "postgresql://a:pw@db/audit"}}, "by Secret reference"),
    ],
)
def test_the_renderer_refuses_the_private_key_and_inline_credentials(extra, message):
    with pytest.raises(DeployError, match=message):
        GatewaySettings(**extra)


def test_the_trusted_keys_configmap_renders_as_valid_kubernetes():
    settings = GatewaySettings(data_root="s3://b/data", trusted_keys_configmap="trusted")
    deployment = gateway_manifests([FLIGHTS], settings)[0]
    validate(deployment)
    env = container_env(deployment)
    assert env["AERODROME_SIGNING_TRUSTED_KEYS"]["value"] == "/etc/aerodrome/trusted-keys"
    # no audit DSN: the JSONL file lives on the data volume, not in the read-only image
    assert env["AERODROME_AUDIT_LOG"]["value"].startswith("/opt/aerodrome/data/")


def test_the_training_pod_mounts_the_workers_signing_key_and_takes_the_audit_dsn_by_reference(helm, helm_env):
    from aerodrome_airflow.k8s import signing_key_mount, trainer_secret_env

    workers = {e["name"]: e["value"] for e in helm["workers"]["env"]}
    environ = {"AERODROME_K8S_SIGNING_KEY_REF": helm_env["AERODROME_K8S_SIGNING_KEY_REF"]} | workers
    (volume,), (mount,) = signing_key_mount(environ)
    assert volume.secret.secret_name == "aerodrome-signing-key" and volume.secret.default_mode == 0o400
    assert f"{mount.mount_path}/{volume.secret.items[0].path}" == workers["AERODROME_SIGNING_KEY"] and mount.read_only
    assert trainer_secret_env({})["AERODROME_AUDIT_DSN"] == (
        helm["secret"][[s["envName"] for s in helm["secret"]].index("AERODROME_AUDIT_DSN")]["secretName"],
        "dsn",
    )
    assert signing_key_mount({}) == ([], []), "no Secret named: nothing mounted (the embedded default)"
    with pytest.raises(ValueError, match="AERODROME_SIGNING_KEY"):
        signing_key_mount({"AERODROME_K8S_SIGNING_KEY_REF": "aerodrome-signing-key"})
