"""Where a registered model version's files are, as a URI KServe's storage initializer can read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from aerodrome.deploy.names import DeployError

# schemes KServe's storage initializer downloads from (pvc:// is mounted by the controller)
KSERVE_SCHEMES = frozenset({"s3", "gs", "pvc", "hdfs", "webhdfs", "https", "http", "oci", "hf"})


@dataclass(frozen=True)
class ModelLocation:
    model: str
    alias: str | None
    version: str
    storage_uri: str


def storage_uri(download_uri: str, artifacts_destination: str | None = None) -> str:
    """`download_uri` (MLflow's) as a KServe storageUri.

    `mlflow-artifacts:` URIs (a server started with `--serve-artifacts`) are relative to the
    server's `--artifacts-destination`, which must then be given.
    """
    parsed = urlparse(download_uri)
    if parsed.scheme == "mlflow-artifacts":
        if not artifacts_destination:
            raise DeployError(
                f"{download_uri} is proxied by the MLflow server: give its --artifacts-destination "
                "(e.g. s3://bucket/mlflow) so the files can be read directly, or the storage URI itself"
            )
        download_uri = f"{artifacts_destination.rstrip('/')}/{parsed.path.lstrip('/')}"
        parsed = urlparse(download_uri)
    if parsed.scheme not in KSERVE_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in sorted(KSERVE_SCHEMES))
        raise DeployError(
            f"{download_uri} is not a location KServe can read ({schemes}): keep MLflow artifacts on object "
            "storage, or give the storage URI itself (e.g. pvc://<claim>/<path>)"
        )
    return download_uri


def model_location(client: Any, model: str, alias: str, artifacts_destination: str | None = None) -> ModelLocation:
    """The version `alias` of `model` points at and its storage URI (`client`: an MlflowClient)."""
    from aerodrome.registry.aliases import alias_version

    version = alias_version(client, model, alias)
    if version is None:
        raise DeployError(
            f"model {model!r} has no @{alias} version in the MLflow registry: promote one first, "
            "or give the storage URI itself"
        )
    uri = client.get_model_version_download_uri(model, version)
    return ModelLocation(model, alias, version, storage_uri(uri, artifacts_destination))
