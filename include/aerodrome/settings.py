"""Platform settings from environment variables: backends are chosen here, never in DAG code."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aerodrome.errors import PermanentError

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


class SettingsError(PermanentError, ValueError):
    """Settings that cannot work together (e.g. an S3 data root with a local-only store); names the setting to set."""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _region_tags(text: str | None) -> dict[str, str]:
    """`AERODROME_DB_REGIONS`: JSON object host -> region (`"*"`: every host not named)."""
    tags = json_object(text, "AERODROME_DB_REGIONS")
    wrong = [host for host, region in tags.items() if not isinstance(region, str) or not region]
    if wrong:
        raise SettingsError(
            f"AERODROME_DB_REGIONS: the region of {', '.join(map(repr, wrong))} must be a region name such as "
            '"me-central-1" (the object maps a database host to its region, e.g. {"db.internal": "me-central-1"})'
        )
    return tags


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
    # encryption at rest: every S3 object is written with SSE-KMS under this key (empty: the account's aws/s3 key)
    kms_key_id: str | None = None
    # in transit: S3 only over https; plain http only to a loopback endpoint and only when this says so (tests)
    s3_allow_http_loopback: bool = False
    # residency of database/cache hosts (MLflow, Feast registry, Redis): (host, region) pairs, "*" for any other
    # host; a dict is accepted and kept as sorted pairs (settings stay hashable)
    db_regions: tuple[tuple[str, str], ...] = ()
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
        object.__setattr__(self, "db_regions", tuple(sorted(dict(self.db_regions).items())))
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
    def remote_data_root(self) -> bool:
        return "://" in self.data_root

    @property
    def feature_repo_dir(self) -> Path:
        """Local folder for Feast registries and the SQLite online store (default: data root).

        With an S3 data root nothing shared may hide on this host's disk: the folder must be named
        (`AERODROME_FEATURE_REPO`, a volume every host mounts), or the registry and the online store
        must be services (`AERODROME_FEATURE_REGISTRY` + `AERODROME_ONLINE_STORE=redis`; the folder then
        holds only generated definitions).
        """
        if self.feature_repo:
            return Path(self.feature_repo)
        if not self.remote_data_root:
            return Path(self.data_root) / "feature_repo"
        if self.feature_registry and self.online_store == "redis":
            return PROJECT_ROOT / ".aerodrome" / "feature_repo"
        local = "Feast registry" if not self.feature_registry else "SQLite online store"
        raise SettingsError(
            f"AERODROME_DATA_ROOT={self.data_root} keeps the data on S3, but the {local} would stay on this "
            "host's disk: set AERODROME_FEATURE_REGISTRY=postgresql://user:password@host/feast and "
            "AERODROME_ONLINE_STORE=redis (shared services), or AERODROME_FEATURE_REPO=<a volume every host mounts>"
        )

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking and registry URI: the setting, else `sqlite:///<data root>/mlflow/mlflow.db`.

        With an S3 data root there is no local default (a SQLite file cannot live on S3, and a copy on one
        host's disk would silently split the registry): MLFLOW_TRACKING_URI must be set.
        """
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if self.remote_data_root:
            raise SettingsError(
                f"AERODROME_DATA_ROOT={self.data_root} keeps the data on S3, but MLflow would keep its runs and "
                "registry in a SQLite file on this host: set MLFLOW_TRACKING_URI to a PostgreSQL database "
                f"(postgresql://user:password@host/mlflow; artifacts then go to {self.mlflow_artifact_root}) "
                "or to an MLflow tracking server (https://...)"
            )
        return f"sqlite:///{self._mlflow_dir() / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> str:
        """Where new MLflow experiments keep artifacts: `<data root>/mlflow/artifacts` (S3 included)."""
        if "://" in self.data_root:
            return f"{self.data_root.rstrip('/')}/mlflow/artifacts"
        return str(Path(self.data_root).resolve() / "mlflow" / "artifacts")

    def _mlflow_dir(self) -> Path:
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
            kms_key_id=os.environ.get("AERODROME_KMS_KEY_ID", "").strip() or None,
            s3_allow_http_loopback=_flag("AERODROME_S3_ALLOW_HTTP_LOOPBACK"),
            db_regions=tuple(_region_tags(os.environ.get("AERODROME_DB_REGIONS")).items()),
            online_store=_env("AERODROME_ONLINE_STORE", "sqlite").lower(),
            redis_url=_env("AERODROME_REDIS_URL", "redis://127.0.0.1:6379/0"),
            feature_repo=os.environ.get("AERODROME_FEATURE_REPO") or None,
            feature_namespace=_env("AERODROME_FEATURE_NAMESPACE", ""),
            feature_registry=os.environ.get("AERODROME_FEATURE_REGISTRY", "").strip() or None,
            mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "").strip() or None,
        )
