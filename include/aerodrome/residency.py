"""Data residency of connections: every database or cache the platform writes to must lie in an allowed region.

S3 buckets are checked by their real region (`aerodrome.storage.S3Storage.check_residency`); a database
host has no region of its own to ask, so it is tagged: `AERODROME_DB_REGIONS` (JSON host -> region, `"*"`
for every host not named) or the Airflow connection's extra `{"region": ...}`. A host on loopback is
this machine and needs no tag; any other untagged host is refused, since its region cannot be shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from aerodrome.errors import ResidencyError
from aerodrome.settings import Settings

LOOPBACK_HOSTS = ("", "localhost", "127.0.0.1", "::1")  # "" = a Unix socket


@dataclass(frozen=True)
class Connection:
    """A place data is written to: what it is (with the setting that names it) and its host."""

    what: str
    host: str
    region_tag: str | None = None  # from the connection itself (an Airflow connection's extra)


def uri_host(uri: str) -> str | None:
    """The network host of a connection URI; None for URIs without one (sqlite:, file:, a local path)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file", "sqlite") or parsed.scheme.startswith("sqlite+"):
        return None
    return parsed.hostname or ""


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.") or host.startswith("/")


def _policy(settings: Settings) -> str:
    return f"data may only be written to {', '.join(settings.allowed_regions)} (AERODROME_ALLOWED_REGIONS)"


def check_connection(connection: Connection, settings: Settings) -> None:
    """Refuse a connection whose host lies (or may lie) outside the allowed regions, naming host, region, policy."""
    host, tags = connection.host, dict(settings.db_regions)
    region = connection.region_tag or tags.get(host) or tags.get("*")
    if region is None:
        if is_loopback(host):
            return
        raise ResidencyError(
            f"{connection.what} at host {host!r} has no region tag, so its residency cannot be shown; "
            f'{_policy(settings)}. Tag it: AERODROME_DB_REGIONS=\'{{"{host}": "<region>"}}\' '
            'or the Airflow connection\'s extra {"region": "<region>"}'
        )
    if region not in settings.allowed_regions:
        raise ResidencyError(f"{connection.what} at host {host!r} is in region {region!r}; {_policy(settings)}")


def settings_connections(settings: Settings) -> list[Connection]:
    """The databases and caches the settings point at (MLflow store, Feast registry, Redis online store)."""
    found = []
    named = [
        ("the MLflow tracking store (MLFLOW_TRACKING_URI)", settings.mlflow_tracking_uri),
        ("the Feast registry (AERODROME_FEATURE_REGISTRY)", settings.feature_registry),
    ]
    if settings.online_store == "redis":
        named.append(("the Redis online store (AERODROME_REDIS_URL)", settings.redis_url))
    for what, uri in named:
        host = uri_host(uri) if uri else None
        if host is not None:
            found.append(Connection(what, host))
    return found


def check_connections(settings: Settings) -> None:
    """Check every connection the settings name; raises ResidencyError at the first one outside the policy."""
    for connection in settings_connections(settings):
        check_connection(connection, settings)
