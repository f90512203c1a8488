"""The Feast repository of a use case, generated from its spec: entities, views, one feature service.

Built in code (`RepoConfig`), not from a `feature_store.yaml`: the offline store is DuckDB over the
Parquet partitions written by `compute_features` (on an S3 data root fetched through `aerodrome.storage`:
`storage_offline_store`); the online store is SQLite or Redis as the settings
say. The registry is a file under `Settings.feature_repo_dir`, one per use case and online store, so
a materialization watermark always belongs to the store it describes; or, when
`AERODROME_FEATURE_REGISTRY` names a PostgreSQL database, Feast's SQL registry there, which the
pipelines and the gateway share across hosts.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from aerodrome.errors import SourceError, SpecError
from aerodrome.features.builders.base import EVENT_TIMESTAMP
from aerodrome.features.offline import view_glob, view_prefix
from aerodrome.settings import Settings
from aerodrome.storage import open_storage
from aerodrome.usecase import ColumnType, FeatureSpec, UseCase

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_config import RegistryConfig, RepoConfig

REGISTRY_CACHE_SECONDS = 60  # an online process sees a new apply within a minute
LOCK_NAMESPACE = "aerodrome.materialize"


@contextmanager
def quiet_dependencies() -> Iterator[None]:
    """Mute the DeprecationWarning ibis raises on DuckDB 2 at every offline read Feast makes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ibis\.")
        yield


def features_of(spec: UseCase) -> FeatureSpec:
    if spec.features is None:
        raise SpecError(f"use case {spec.name!r} declares no 'features' section")
    return spec.features


def project_name(spec: UseCase, settings: Settings) -> str:
    """Feast project: the use-case name, after `AERODROME_FEATURE_NAMESPACE` when one is set."""
    return f"{settings.feature_namespace}_{spec.name}" if settings.feature_namespace else spec.name


def service_name(spec: UseCase) -> str:
    return features_of(spec).service or spec.name


def repo_dir(spec: UseCase, settings: Settings) -> Path:
    return settings.feature_repo_dir / project_name(spec, settings)


def feature_refs(spec: UseCase) -> list[str]:
    """`view:feature` for every declared feature, in spec order."""
    return [f"{v.name}:{f}" for v in features_of(spec).views for f in v.features]


def redis_connection_string(url: str) -> str:
    """Feast's `host:port,db=N,password=...` from a `redis://[:password@]host:port/db` URL."""
    if "://" not in url:
        return url  # already in Feast's own format
    parsed = urlparse(url)
    parts = [f"{parsed.hostname or 'localhost'}:{parsed.port or 6379}"]
    db = parsed.path.strip("/")
    if db:
        parts.append(f"db={int(db)}")
    if parsed.password:
        parts.append(f"password={unquote(parsed.password)}")
    if parsed.username and parsed.username != "default":
        parts.append(f"username={unquote(parsed.username)}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def sql_registry_url(url: str) -> str:
    """SQLAlchemy URL of the SQL registry: a bare `postgresql://` gets the psycopg 3 driver, as Feast would."""
    return "postgresql+psycopg://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url


@contextmanager
def registry_lock(registry_url: str, project: str) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock on `project` in the SQL registry's database (one holder at a time)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    digest = hashlib.sha256(f"{LOCK_NAMESPACE}:{project}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    engine = create_engine(sql_registry_url(registry_url), poolclass=NullPool)
    try:
        # autocommit: the lock belongs to the session, which must not sit idle in a transaction meanwhile
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        engine.dispose()


def require_offline_rows(spec: UseCase, settings: Settings) -> None:
    """Fail with the fix when a view has no offline partition yet (DuckDB would only say 'no files')."""
    storage = open_storage(settings.data_root, settings)
    empty = [v.name for v in features_of(spec).views if not storage.partitions(view_prefix(spec, v.name))]
    if empty:
        raise SourceError(
            f"use case {spec.name!r}: no feature partitions under {storage.uri(view_prefix(spec, ''))} for "
            f"{', '.join(empty)}; run the features step (compute_features) for at least one interval first"
        )


def view_sources(spec: UseCase, settings: Settings) -> dict[str, str]:
    storage = open_storage(settings.data_root, settings)
    return {v.name: view_glob(storage, spec, v.name) for v in features_of(spec).views}


def _view_schema(spec: UseCase, name: str) -> str:
    view = features_of(spec).view(name)
    keys = {e: features_of(spec).entities[e].value for e in view.entities}
    return json.dumps([keys, {f: t.value for f, t in view.features.items()}], sort_keys=True)


def definitions_fingerprint(spec: UseCase, settings: Settings) -> str:
    """Hash of everything `apply` registers; equal hashes mean nothing to apply."""
    payload = {
        "project": project_name(spec, settings),
        "features": features_of(spec).model_dump(mode="json"),
        "description": spec.description,
        "sources": view_sources(spec, settings),
        "online_store": settings.online_store,
        "redis": hashlib.sha256(settings.redis_url.encode()).hexdigest() if settings.online_store == "redis" else "",
    }
    if settings.feature_registry:  # only then: a file-registry fingerprint stays as it was
        payload["registry"] = hashlib.sha256(settings.feature_registry.encode()).hexdigest()
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def registry_config(spec: UseCase, settings: Settings) -> RegistryConfig:
    """Feast's SQL registry when `feature_registry` is set, else the registry file of the use case."""
    if settings.feature_registry:
        from feast.infra.registry.sql import SqlRegistryConfig

        return SqlRegistryConfig(
            path=sql_registry_url(settings.feature_registry),
            cache_ttl_seconds=REGISTRY_CACHE_SECONDS,
            sqlalchemy_config_kwargs={"echo": False, "pool_pre_ping": True},  # the gateway holds it for days
        )
    from feast.repo_config import RegistryConfig

    return RegistryConfig(path=str(_registry_file(spec, settings)), cache_ttl_seconds=REGISTRY_CACHE_SECONDS)


def offline_store_config(settings: Settings) -> Any:
    """DuckDB over the Parquet partitions: read by DuckDB itself from a local data root, or fetched through
    `aerodrome.storage` (endpoint, TLS, region) for an S3 one (DuckDB's own S3 reader is a run-time download)."""
    if settings.remote_data_root:
        from aerodrome.features.storage_offline_store import StorageOfflineStoreConfig

        return StorageOfflineStoreConfig.of(settings)
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig

    return DuckDBOfflineStoreConfig()


def repo_config(spec: UseCase, settings: Settings) -> RepoConfig:
    from feast.repo_config import RepoConfig

    folder = repo_dir(spec, settings)
    folder.mkdir(parents=True, exist_ok=True)
    online: Any
    if settings.online_store == "redis":
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig

        online = RedisOnlineStoreConfig(connection_string=redis_connection_string(settings.redis_url))
    else:
        from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

        online = SqliteOnlineStoreConfig(path=str(folder / "online.db"))
    return RepoConfig(
        project=project_name(spec, settings),
        provider="local",
        registry=registry_config(spec, settings),
        online_store=online,
        offline_store=offline_store_config(settings),
        repo_path=folder,
        entity_key_serialization_version=3,
    )


def feature_repo(spec: UseCase, settings: Settings) -> FeatureStore:
    """A new `feast.FeatureStore` for the use case (the registry may not be applied yet)."""
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo_dir(spec, settings)), config=repo_config(spec, settings))


class StoreEntry:
    """A cached `FeatureStore` with the spec it was built for and its feature references."""

    __slots__ = ("spec", "store", "refs")

    def __init__(self, spec: UseCase, store: FeatureStore) -> None:
        self.spec, self.store, self.refs = spec, store, feature_refs(spec)


_STORES: dict[tuple[str, Settings], StoreEntry] = {}


def store_entry(spec: UseCase, settings: Settings) -> StoreEntry:
    """The process-wide store of a use case: built once, rebuilt only when the spec changes."""
    key = (spec.name, settings)
    entry = _STORES.get(key)
    if entry is not None and entry.spec is spec:  # the hot path of every online lookup
        return entry
    if entry is not None and entry.spec == spec:
        entry.spec = spec  # an equal copy: remember it so the next call takes the hot path
        return entry
    entry = _STORES[key] = StoreEntry(spec, feature_repo(spec, settings))
    return entry


def feature_store(spec: UseCase, settings: Settings) -> FeatureStore:
    """The process-wide `FeatureStore` of a use case (built once; reused by every call)."""
    return store_entry(spec, settings).store


def clear_store_cache() -> None:
    """Forget every cached store (e.g. after the registry was replaced on disk)."""
    _STORES.clear()


def definitions(spec: UseCase, settings: Settings) -> list[Any]:
    """Feast objects declared by the spec: entities, one feature view per spec view, the service."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.data_format import ParquetFormat
    from feast.types import Bool, Float64, Int64, String

    features = features_of(spec)
    value_types = {
        ColumnType.string: ValueType.STRING,
        ColumnType.int: ValueType.INT64,
        ColumnType.bool: ValueType.BOOL,
    }
    dtypes = {
        ColumnType.string: String,
        ColumnType.int: Int64,
        ColumnType.float: Float64,
        ColumnType.bool: Bool,
    }
    entities = {
        name: Entity(name=name, join_keys=[name], value_type=value_types[kind], tags={"usecase": spec.name})
        for name, kind in features.entities.items()
    }
    sources = view_sources(spec, settings)
    views = [
        FeatureView(
            name=view.name,
            entities=[entities[e] for e in view.entities],
            ttl=timedelta(hours=view.ttl_hours),
            schema=[Field(name=e, dtype=dtypes[features.entities[e]]) for e in view.entities]
            + [Field(name=f, dtype=dtypes[t]) for f, t in view.features.items()],
            source=FileSource(
                name=f"{spec.name}__{view.name}",
                path=sources[view.name],
                file_format=ParquetFormat(),
                timestamp_field=EVENT_TIMESTAMP,
            ),
            online=True,
            description=view.description,
            tags={"usecase": spec.name, "compute": view.kind or view.computation},
            owner=spec.owner,
        )
        for view in features.views
    ]
    service = FeatureService(name=service_name(spec), features=views, description=spec.description, owner=spec.owner)
    return [*entities.values(), *views, service]


def _state_file(spec: UseCase, settings: Settings) -> Path:
    return repo_dir(spec, settings) / f"definitions.{settings.online_store}.json"


def _registry_file(spec: UseCase, settings: Settings) -> Path:
    return repo_dir(spec, settings) / f"registry.{settings.online_store}.db"


def _registry_readable(spec: UseCase, settings: Settings) -> bool:
    """Whether the registry can be listed: a SQL registry always, a file once an apply wrote it."""
    return bool(settings.feature_registry) or _registry_file(spec, settings).is_file()


def registry_exists(spec: UseCase, settings: Settings) -> bool:
    """Whether the use case's Feast definitions were applied: the registry file exists, or the SQL
    registry holds feature views of the project (a registry query; building the store creates none)."""
    if not settings.feature_registry:
        return _registry_file(spec, settings).is_file()
    return bool(feature_store(spec, settings).list_feature_views(allow_cache=False))


def apply_definitions(spec: UseCase, settings: Settings, force: bool = False) -> bool:
    """Register the spec's definitions in Feast when they changed; True when an apply ran.

    Unchanged definitions cost a hash and a file read (no Feast import), plus one registry query on a
    SQL registry (another host may have reset it). Materialization watermarks
    survive an apply (feast #2905): they are read before and restored if an apply dropped them; only
    a view whose keys or features changed starts over, so its new columns reach the online store.
    """
    fingerprint = definitions_fingerprint(spec, settings)
    state_file = _state_file(spec, settings)
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    if not force and state.get("fingerprint") == fingerprint and registry_exists(spec, settings):
        return False
    store = feature_store(spec, settings)
    project = project_name(spec, settings)
    objects = definitions(spec, settings)
    declared = {v.name for v in features_of(spec).views}
    registered = _registry_readable(spec, settings)
    existing = {fv.name: fv for fv in store.list_feature_views(allow_cache=False)} if registered else {}
    applied = state.get("views", {})  # the schema each view had when last applied here
    reshaped = {n for n in existing if n in declared and n in applied and applied[n] != _view_schema(spec, n)}
    for name in reshaped:
        store.delete_feature_view(name)
    watermarks = {n: list(fv.materialization_intervals) for n, fv in existing.items() if n not in reshaped}
    stale = [fv for n, fv in existing.items() if n not in declared]
    stale += [s for s in store.list_feature_services() if s.name != service_name(spec)] if registered else []
    store.apply(objects, objects_to_delete=stale, partial=not stale)
    for name, intervals in watermarks.items():
        if name not in declared or not intervals:
            continue
        view = store.get_feature_view(name)
        if not view.materialization_intervals:  # the apply dropped the watermark: put it back
            for start, end in intervals:
                store.registry.apply_materialization(view, project, start, end, commit=True)
    store.refresh_registry()
    state = {"fingerprint": fingerprint, "views": {n: _view_schema(spec, n) for n in sorted(declared)}}
    state_file.write_text(json.dumps(state, indent=2, sort_keys=True))
    return True
