"""MLflow: one run per training, the model logged as a pyfunc, registered and given the alias `candidate`.

The tracking URI always comes from the settings (never MLflow's cwd default); with a database backend
new experiments keep their artifacts under `<data root>/mlflow/artifacts`. Everything a run records
goes in as few calls as possible: one batch for params, metrics, curves and tags, one file per
document, the model with explicit pip requirements (MLflow's own inference costs seconds). The
logged model folder is hashed and signed (Ed25519, `aerodrome.security.signing`) before the version
is registered with the signature as tags; the signing is audited.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from aerodrome.registry.aliases import alias_version, registry_client
from aerodrome.security.digest import tree_sha256
from aerodrome.settings import Settings
from aerodrome.train.predictor import Predictor
from aerodrome.usecase import UseCase

CANDIDATE_ALIAS = "candidate"
ARTIFACT_DIGEST_TAG = "artifact_sha256"  # sha256 of the predictor folder (aerodrome.security.digest)
MODEL_ARTIFACT = "model"
FLAVOR_PACKAGES = {"xgboost": ["xgboost"], "pytorch": ["torch"]}
SERVING_PACKAGES = ["mlflow", "cloudpickle", "numpy", "pandas", "pydantic", "pyyaml"]
PARAM_VALUE_LIMIT = 6000  # MLflow refuses longer param values


def model_name(spec: UseCase) -> str:
    """Registered model of a use case: its name (`models:/flight_delay@candidate`)."""
    return spec.name


def experiment_name(spec: UseCase) -> str:
    return f"aerodrome/{spec.name}"


@dataclass
class RunRecord:
    """What one training run logs."""

    run_name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    curves: dict[str, list[float]] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)  # artifact file (.json) -> content
    version_tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggedCandidate:
    run_id: str
    experiment_id: str
    model_name: str
    version: str
    alias: str
    model_uri: str
    seconds: dict[str, float]
    previous: str | None = None  # the version the alias pointed at before


def pip_requirements(flavor: str) -> list[str]:
    """Pinned requirements of the served model, from this environment (local tags such as +cpu dropped)."""
    pins = []
    for package in [*SERVING_PACKAGES, *FLAVOR_PACKAGES[flavor]]:
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def _local_database(uri: str) -> bool:
    return uri.split(":", 1)[0].split("+")[0] in ("sqlite", "postgresql", "mysql", "mssql")


@contextmanager
def tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API pointed at `uri` for the duration, then exactly as before.

    `mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI: the variables and MLflow's module
    state are put back, so a later `Settings.from_env()` in the same process never sees this URI.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_state
    from mlflow.tracking._tracking_service import utils as tracking_state

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    environ = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    before_tracking, before_registry = tracking_state._tracking_uri, registry_state._registry_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_state.set_tracking_uri(before_tracking)
        registry_state._registry_uri = before_registry
        for name, value in environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ensure_experiment(client: Any, name: str, artifact_location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:  # created meanwhile by a concurrent run
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def log_candidate(
    settings: Settings, spec: UseCase, record: RunRecord, predictor: Predictor, example: pd.DataFrame
) -> LoggedCandidate:
    """Log `record` and `predictor` as one MLflow run, register a version and point `candidate` at it."""
    started = time.perf_counter()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.models import infer_signature

    from aerodrome.train import pyfunc

    imported = time.perf_counter()
    uri = settings.tracking_uri
    name = model_name(spec)
    with tracking_uri(uri), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*``noload`` loader strategy is deprecated")  # MLflow's own
        client = registry_client(uri)
        exp_name = experiment_name(spec)
        artifacts = f"{settings.mlflow_artifact_root}/{spec.name}" if _local_database(uri) else None
        experiment_id = ensure_experiment(client, exp_name, artifacts)
        with mlflow.start_run(experiment_id=experiment_id, run_name=record.run_name, tags=record.tags) as run:
            run_id = run.info.run_id
            params = [Param(k, str(v)[:PARAM_VALUE_LIMIT]) for k, v in record.params.items()]
            client.log_batch(run_id, params=params, tags=[RunTag("aerodrome.usecase", spec.name)])
            for file, content in record.documents.items():
                mlflow.log_dict(content, file)
            with tempfile.TemporaryDirectory(prefix="aerodrome-model-") as tmp:
                folder = predictor.save(Path(tmp) / pyfunc.PREDICTOR_ARTIFACT)
                # checked again before the model may serve (aerodrome.registry.gates)
                record.version_tags[ARTIFACT_DIGEST_TAG] = tree_sha256(folder)
                signature = infer_signature(example, predictor.predict(example))
                info = mlflow.pyfunc.log_model(
                    name=MODEL_ARTIFACT,
                    python_model=pyfunc.__file__,  # models from code: no pickle in the artifact
                    artifacts={pyfunc.PREDICTOR_ARTIFACT: str(folder)},
                    signature=signature,
                    input_example=example,
                    pip_requirements=pip_requirements(predictor.flavor),
                )
            # metrics after the model, already linked to it: logged before, MLflow would re-read every
            # metric's history (one query each, one HTTP call each against a server) to link them
            now = int(time.time() * 1000)
            metrics = [Metric(k, float(v), now, 0, model_id=info.model_id) for k, v in record.metrics.items()]
            metrics += [
                Metric(k, float(v), now, step) for k, curve in record.curves.items() for step, v in enumerate(curve)
            ]
            client.log_batch(run_id, metrics=metrics)
        logged = time.perf_counter()
        record.version_tags.update(sign_logged_model(info.model_uri, name, run_id, settings))
        registered = mlflow.register_model(info.model_uri, name, tags=record.version_tags)
        previous = alias_version(client, name, CANDIDATE_ALIAS)
        client.set_registered_model_alias(name, CANDIDATE_ALIAS, registered.version)
    audit_signature(settings, name, str(registered.version), run_id, record.version_tags)
    done = time.perf_counter()
    return LoggedCandidate(
        run_id=run_id,
        experiment_id=experiment_id,
        model_name=name,
        version=str(registered.version),
        alias=CANDIDATE_ALIAS,
        model_uri=f"models:/{name}/{registered.version}",
        previous=previous,
        seconds={"import": imported - started, "log": logged - imported, "register": done - logged},
    )


def sign_logged_model(model_uri: str, name: str, run_id: str, settings: Settings) -> dict[str, str]:
    """The signature tags of a logged model: its folder as stored (downloaded back), hashed and signed."""
    import mlflow

    from aerodrome.security.signing import sign_model

    with tempfile.TemporaryDirectory(prefix="aerodrome-sign-") as tmp:
        folder = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        return sign_model(folder, name, run_id, settings)


def audit_signature(settings: Settings, name: str, version: str, run_id: str, tags: dict[str, str]) -> None:
    from aerodrome.security import audit
    from aerodrome.security.signing import HASH_TAG, KEY_TAG

    audit.record(
        "artifact_signed",
        name,
        f"{name} v{version} registered and signed by key {tags[KEY_TAG]} (sha256 {tags[HASH_TAG][:12]})",
        versions={"model": name, "version": version, "run_id": run_id},
        details={"sha256": tags[HASH_TAG], "key_id": tags[KEY_TAG]},
        settings=settings,
    )


def version_trained_by(model_name: str, dag_id: str, run_id: str, tracking_uri: str) -> dict[str, str] | None:
    """The newest model version a given Airflow DAG run registered (by its lineage tags), or None.

    Works the same whichever backend trained it (a local subprocess or a pod that returns nothing to
    Airflow): the version carries `airflow_dag_id` / `airflow_run_id` tags.
    """

    client = registry_client(tracking_uri)
    found = [
        v
        for v in client.search_model_versions(f"name = '{model_name}'")
        if v.tags.get("airflow_dag_id") == dag_id and v.tags.get("airflow_run_id") == run_id
    ]
    if not found:
        return None
    newest = max(found, key=lambda v: int(v.version))
    return {
        "model": model_name,
        "version": str(newest.version),
        "run_id": newest.run_id,
        "model_uri": f"models:/{model_name}/{newest.version}",
        "window": newest.tags.get("window", ""),
        "data_fingerprint": newest.tags.get("data_fingerprint", ""),
    }
