"""The training pod as Kubernetes would receive it (rendered with build_pod_request_obj, no cluster)."""

import json
from pathlib import Path

import pytest
from aerodrome.usecase import load_usecase
from aerodrome_airflow.training import TrainingBackend, last_json_line, trainer_arguments

ROOT = Path(__file__).resolve().parents[1]
FLIGHTS = load_usecase(ROOT / "include/usecases/flight_delay")


def render(**kwargs):
    from aerodrome_airflow.k8s import TrainingPodOperator

    op = TrainingPodOperator(
        task_id="train_model",
        resources=FLIGHTS.model.resources,
        trainer_arguments=trainer_arguments("flight_delay", "2013-01-01", "2014-01-01"),
        image="aerodrome/trainer:1",
        namespace="aerodrome",
        **kwargs,
    )
    return op, op.build_pod_request_obj(dry_run=True)


def test_gpu_resources_selector_and_tolerations_from_the_spec():
    op, pod = render()
    container = pod.spec.containers[0]
    assert op.deferrable and op.on_finish_action.value == "delete_pod"
    assert container.resources.limits["nvidia.com/gpu"] == str(FLIGHTS.model.resources.gpu) == "1"
    assert container.resources.requests == {"cpu": "4", "memory": "8Gi"}
    assert "nvidia.com/gpu" not in container.resources.requests
    assert pod.spec.node_selector == {"aerodrome.io/pool": "gpu"}
    assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in pod.spec.tolerations)
    assert container.command == ["python", "-m", "aerodrome.train.entrypoint"]
    assert container.args[:4] == ["--usecase", "flight_delay", "--start", "2013-01-01"]
    assert pod.metadata.labels["aerodrome.io/stage"] == "train"


TEST_SECRETS = {
    "MLFLOW_TRACKING_URI": "postgresql://mlflow:pw-in-uri-8c1f@db.internal:5432/mlflow",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-pw-51d0",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-7e2b",
    "AERODROME_REDIS_URL": "redis://:redis-pw-93aa@cache.internal:6379/0",
}


def serialized(pod) -> str:
    from kubernetes.client import ApiClient

    return json.dumps(ApiClient().sanitize_for_serialization(pod))


@pytest.mark.parametrize("host_paths", [None, ["/usr:ro", "/work/main", "/tmp/data"]], ids=["cluster", "host-paths"])
def test_settings_as_env_and_credentials_only_as_secret_refs(monkeypatch, host_paths):
    """Secrets (and URIs that may hold one) reach the pod by reference, also on the local cluster's host paths."""
    for name, value in TEST_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AERODROME_KMS_KEY_ID", "alias/aerodrome")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    _, pod = render(host_paths=host_paths)
    env = {e.name: e for e in pod.spec.containers[0].env}
    assert env["AERODROME_DATA_ROOT"].value and env["AERODROME_KMS_KEY_ID"].value == "alias/aerodrome"
    for name in (*TEST_SECRETS, "MLFLOW_TRACKING_USERNAME", "AWS_ACCESS_KEY_ID", "AERODROME_FEATURE_REGISTRY"):
        assert env[name].value is None and env[name].value_from.secret_key_ref.name.startswith("aerodrome-"), name
    tracking = env["MLFLOW_TRACKING_URI"].value_from.secret_key_ref
    assert (tracking.name, tracking.key, tracking.optional) == ("aerodrome-mlflow", "tracking-uri", False)
    assert env["MLFLOW_TRACKING_USERNAME"].value_from.secret_key_ref.optional  # Airflow has none: the pod may lack it
    spec = serialized(pod)
    leaked = [name for name, value in TEST_SECRETS.items() if value in spec or value.split("@")[0] in spec]
    assert not leaked, f"{leaked} in the rendered pod spec"


def test_secret_names_are_configurable_and_a_plain_credential_is_refused(monkeypatch):
    monkeypatch.setenv("AERODROME_K8S_SECRETS", json.dumps({"MLFLOW_TRACKING_URI": "team-mlflow/uri"}))
    _, pod = render()
    ref = {e.name: e for e in pod.spec.containers[0].env}["MLFLOW_TRACKING_URI"].value_from.secret_key_ref
    assert (ref.name, ref.key) == ("team-mlflow", "uri")
    with pytest.raises(ValueError, match="SOURCE_DB_PASSWORD: a credential would be written into the pod spec"):
        render(env_vars={"SOURCE_DB_PASSWORD": "x"})
    with pytest.raises(ValueError, match="DSN: a credential would be written"):
        render(env_vars={"DSN": "postgresql://u:p@h/db"})
    monkeypatch.setenv("AERODROME_K8S_SECRETS", json.dumps({"X": "no-key"}))
    with pytest.raises(ValueError, match='give "secret-name/key"'):
        render()


def test_local_cluster_profile_mounts_host_paths():
    _, pod = render(host_paths=["/usr:ro", "/work/main", "/tmp/data"], hostnetwork=True, image_pull_policy="Never")
    mounts = {m.mount_path: m.read_only for m in pod.spec.containers[0].volume_mounts}
    assert mounts == {"/usr": True, "/work/main": False, "/tmp/data": False} and pod.spec.host_network
    assert pod.spec.containers[0].image_pull_policy == "Never"


def test_backend_is_chosen_by_settings(monkeypatch):
    from aerodrome_airflow.k8s import TrainingPodOperator
    from aerodrome_airflow.training import LocalTrainingOperator

    assert isinstance(
        TrainingBackend().operator("t", FLIGHTS.model.resources, ["--usecase", "x"]), LocalTrainingOperator
    )
    monkeypatch.setenv("AERODROME_TRAIN_BACKEND", "kubernetes")
    assert isinstance(TrainingBackend().operator("t", FLIGHTS.model.resources, ["--usecase", "x"]), TrainingPodOperator)
    monkeypatch.setenv("AERODROME_TRAIN_BACKEND", "slurm")
    with pytest.raises(ValueError, match="use 'local' or 'kubernetes'"):
        TrainingBackend()


def test_trainer_arguments_skip_empty_options_and_result_line():
    args = trainer_arguments("uc", "2013-01-01", "2013-02-01", "None", 7, "", "{}")
    assert args == ["--usecase", "uc", "--start", "2013-01-01", "--end", "2013-02-01", "--seed", "7"]
    assert "--params" in trainer_arguments("uc", "a", "b", params='{"max_depth": 4}')
    assert last_json_line('progress\n{"version": "3"}\n') == {"version": "3"}
    with pytest.raises(ValueError, match="no JSON result"):
        last_json_line("done\n")


def test_cluster_resource_override_for_a_cpu_only_cluster(monkeypatch):
    monkeypatch.setenv("AERODROME_TRAIN_BACKEND", "kubernetes")
    monkeypatch.setenv("AERODROME_K8S_RESOURCES", '{"gpu": 0, "cpu": "1", "memory": "2Gi", "node_selector": {}}')
    op = TrainingBackend().operator("t", FLIGHTS.model.resources, ["--usecase", "x"])
    container = op.build_pod_request_obj(dry_run=True).spec.containers[0]
    assert container.resources.limits == {"cpu": "1", "memory": "2Gi"}
    assert not op.node_selector and not op.tolerations
    monkeypatch.setenv("AERODROME_K8S_RESOURCES", '{"gpus": 0}')
    with pytest.raises(ValueError, match="AERODROME_K8S_RESOURCES: gpus: unknown field"):
        TrainingBackend().resources(FLIGHTS.model.resources)
    monkeypatch.setenv("AERODROME_K8S_RESOURCES", "gpu=0")
    with pytest.raises(ValueError, match="AERODROME_K8S_RESOURCES is not valid JSON"):
        TrainingBackend()


def test_trainer_exit_codes_decide_whether_airflow_retries():
    from aerodrome_airflow.training import trainer_failure
    from airflow.sdk.exceptions import AirflowFailException

    bad_window = trainer_failure(3, "trainer pod p", "error: cannot split the window\n")
    assert isinstance(bad_window, AirflowFailException)
    assert str(bad_window).startswith("trainer pod p ended with exit code 3 (the window, data or parameters")
    assert "error: cannot split the window" in str(bad_window) and "not retried" in str(bad_window)
    crash = trainer_failure(1, "the trainer", "")
    assert not isinstance(crash, AirflowFailException) and "not retried" not in str(crash)
    assert "killed by a signal" in str(trainer_failure(137, "trainer pod p", ""))


def ended_pod(code: int, reason: str = "Error", message: str = ""):
    from kubernetes.client import models as k8s

    _, pod = render()
    terminated = k8s.V1ContainerStateTerminated(exit_code=code, reason=reason, message=message)
    status = k8s.V1ContainerStatus(
        name="base",
        state=k8s.V1ContainerState(terminated=terminated),
        ready=False,
        restart_count=0,
        image="i",
        image_id="",
    )
    pod.metadata.name = "train-model-x"
    pod.status = k8s.V1PodStatus(phase="Failed", container_statuses=[status])
    return pod


def test_pod_reports_the_trainer_exit_code_and_last_lines():
    from aerodrome_airflow.k8s import trainer_termination

    _, pod = render()
    assert pod.spec.containers[0].termination_message_policy == "FallbackToLogsOnError"
    assert trainer_termination(ended_pod(3, message="error: bad window"), "base") == (3, "Error", "error: bad window")
    assert trainer_termination(ended_pod(3), "sidecar") is None


def failing_cleanup(monkeypatch, error: Exception, pod):
    """Run TrainingPodOperator.cleanup with the base operator's cleanup raising `error` (no cluster needed)."""
    from aerodrome_airflow.k8s import TrainingPodOperator
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    def base_cleanup(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(KubernetesPodOperator, "cleanup", base_cleanup)
    op, _ = render()
    assert isinstance(op, TrainingPodOperator)
    with pytest.raises(Exception) as raised:
        op.cleanup(pod, pod)
    return raised.value


def test_cleanup_turns_a_failed_trainer_into_its_exit_code(monkeypatch):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

    log = "\n".join(f"[train {i}s] progress" for i in range(60)) + "\nerror: cannot split the window"
    bad_window = failing_cleanup(monkeypatch, AirflowException("Pod returned a failure"), ended_pod(3, message=log))
    assert isinstance(bad_window, AirflowFailException)
    assert "trainer pod train-model-x ended with exit code 3" in str(bad_window)
    assert str(bad_window).count("progress") == 4 and "error: cannot split the window" in str(bad_window)

    oom = failing_cleanup(monkeypatch, AirflowException("failed"), ended_pod(137, reason="OOMKilled"))
    assert not isinstance(oom, AirflowFailException) and "(OOMKilled) ended with exit code 137" in str(oom)

    original = AirflowException("Pod returned a failure: sidecar crashed")
    assert failing_cleanup(monkeypatch, original, ended_pod(0, reason="Completed")) is original
    skip = AirflowSkipException("exit code 99: skipping")
    assert failing_cleanup(monkeypatch, skip, ended_pod(99)) is skip


def test_a_bad_cluster_override_does_not_break_the_local_backend(monkeypatch):
    monkeypatch.setenv("AERODROME_K8S_RESOURCES", "gpu=0")
    assert TrainingBackend().resources(FLIGHTS.model.resources) == FLIGHTS.model.resources


def test_pod_template_is_the_base_and_the_spec_resources_win(tmp_path):
    import shutil

    from aerodrome.errors import SpecError
    from aerodrome_airflow.k8s import TrainingPodOperator

    folder = tmp_path / "flight_delay"
    shutil.copytree(ROOT / "include/usecases/flight_delay", folder)
    (folder / "gpu-pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  annotations: {team: risk}\n"
        "spec:\n  serviceAccountName: trainer\n  priorityClassName: batch-gpu\n"
        "  containers:\n  - name: base\n    resources: {limits: {cpu: '1', nvidia.com/gpu: '8'}}\n"
    )
    spec_file = folder / "usecase.yaml"
    spec_file.write_text(spec_file.read_text().replace("gpu: 1,", "gpu: 1, pod_template: gpu-pod.yaml,"))
    spec = load_usecase(folder)
    assert spec.model.resources.pod_template == str((folder / "gpu-pod.yaml").resolve())
    op = TrainingPodOperator(
        task_id="train_model",
        resources=spec.model.resources,
        trainer_arguments=["--usecase", "flight_delay"],
        image="aerodrome/trainer:1",
        namespace="aerodrome",
    )
    pod = op.build_pod_request_obj(dry_run=True)
    assert pod.spec.service_account_name == "trainer" and pod.spec.priority_class_name == "batch-gpu"
    assert pod.metadata.annotations["team"] == "risk"
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"  # the spec wins over the template
    (folder / "gpu-pod.yaml").unlink()
    with pytest.raises(SpecError, match=r"model.resources.pod_template: .*gpu-pod.yaml not found"):
        load_usecase(folder)
