"""Platform settings from environment variables: backends are chosen here, never in DAG code."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ONLINE_STORES = ("sqlite", "redis")
SQL_REGISTRY_SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://")


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def json_object(text: str | None, what: str) -> dict[str, Any]:
    """A JSON object given as text (a setting or an option); empty, "None" or "null" mean none given."""
    text = (text or "").strip()
    if text in ("", "None", "null"):
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object of name -> value, not {type(value).__name__}: {text!r}")
    return value


def redacted_uri(uri: str) -> str:
    """A URI without its password (database URIs may carry one)."""
    if "@" not in uri or "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


@dataclass(frozen=True)
class Settings:
    """Where data lives and which engines run it.

    `data_root` is a local folder or an `s3://bucket/prefix` URI; every stage writes below it
    (`landing/`, `raw/`, `validated/`, `quarantine/`, ...).
    """

    data_root: str
    usecases_dir: Path
    s3_region: str = "me-central-1"
    allowed_regions: tuple[str, ...] = field(default=("me-central-1",))
    s3_endpoint_url: str | None = None
    # features: the Feast online store, its Redis connection, where registries live, a project prefix
    online_store: str = "sqlite"
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)  # may hold a password
    feature_repo: str | None = None
    feature_namespace: str = ""
    # the Feast registry: empty = a SQLite file per use case under feature_repo_dir; a postgresql:// URL =
    # Feast's SQL registry, shared by the pipelines and the gateway (one online store per database)
    feature_registry: str | None = field(default=None, repr=False)  # may hold a password
    # MLflow: tracking/registry URI (MLFLOW_TRACKING_URI); unset = SQLite under the data root
    mlflow_tracking_uri: str | None = field(default=None, repr=False)  # a database URI may hold a password

    def __post_init__(self) -> None:
        if self.online_store not in ONLINE_STORES:
            raise ValueError(
                f"AERODROME_ONLINE_STORE={self.online_store!r} is not supported "
                f"(use one of: {', '.join(ONLINE_STORES)})"
            )
        if self.feature_registry and not self.feature_registry.startswith(SQL_REGISTRY_SCHEMES):
            raise ValueError(
                f"AERODROME_FEATURE_REGISTRY={redacted_uri(self.feature_registry)!r} is not supported "
                "(leave it empty for the local registry file, or give a postgresql://user:password@host/db URL)"
            )

    @property
    def feature_repo_dir(self) -> Path:
        """Local folder for Feast registries and the SQLite online store (default: data root)."""
        if self.feature_repo:
            return Path(self.feature_repo)
        if "://" in self.data_root:
            return PROJECT_ROOT / ".aerodrome" / "feature_repo"
        return Path(self.data_root) / "feature_repo"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking and registry URI: the setting, else `sqlite:///<data root>/mlflow/mlflow.db`."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self._mlflow_dir() / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> str:
        """Where new MLflow experiments keep artifacts: `<data root>/mlflow/artifacts` (S3 included)."""
        if "://" in self.data_root:
            return f"{self.data_root.rstrip('/')}/mlflow/artifacts"
        return str(Path(self.data_root).resolve() / "mlflow" / "artifacts")

    def _mlflow_dir(self) -> Path:
        if "://" in self.data_root:  # SQLite cannot live on S3: keep it with the local project state
            return PROJECT_ROOT / ".aerodrome" / "mlflow"
        return Path(self.data_root).resolve() / "mlflow"

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            data_root=_env("AERODROME_DATA_ROOT", str(PROJECT_ROOT / ".aerodrome" / "data")),
            usecases_dir=Path(_env("AERODROME_USECASES_DIR", str(PROJECT_ROOT / "include" / "usecases"))),
            s3_region=_env("AERODROME_S3_REGION", "me-central-1"),
            allowed_regions=tuple(
                r.strip() for r in _env("AERODROME_ALLOWED_REGIONS", "me-central-1").split(",") if r.strip()
            ),
            s3_endpoint_url=os.environ.get("AERODROME_S3_ENDPOINT_URL") or None,
            online_store=_env("AERODROME_ONLINE_STORE", "sqlite").lower(),
            redis_url=_env("AERODROME_REDIS_URL", "redis://127.0.0.1:6379/0"),
            feature_repo=os.environ.get("AERODROME_FEATURE_REPO") or None,
            feature_namespace=_env("AERODROME_FEATURE_NAMESPACE", ""),
            feature_registry=os.environ.get("AERODROME_FEATURE_REGISTRY", "").strip() or None,
            mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "").strip() or None,
        )
