"""Feast's DuckDB offline store over an `s3://` data root, reading the Parquet partitions through `aerodrome.storage`.

Feast's DuckDB store hands `s3://` paths to DuckDB, which reads them with its `httpfs` extension; that
extension is downloaded at run time (no wheel on PyPI matches DuckDB 2.0), and a pipeline may download
nothing. Here the same Feast point-in-time join runs on Arrow tables instead: the partitions that can
hold the rows a query asks for (the entity rows' time span widened by each view's TTL) are fetched with
the storage's boto3 client (endpoint override, TLS only, the region of the settings) and handed to DuckDB
in memory, so a training set reads its window, not the view's whole history. Writes to the offline store
go through `compute_features` alone.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import ibis
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast.data_source import DataSource
from feast.feature_view import FeatureView
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig, _write_data_source
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.ibis import (
    get_historical_features_ibis,
    pull_all_from_table_or_query_ibis,
    pull_latest_from_table_or_query_ibis,
)
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.infra.offline_stores.offline_utils import infer_event_timestamp_from_entity_df
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import RepoConfig
from pydantic import StrictBool, StrictStr

from aerodrome.errors import PermanentError, SourceError
from aerodrome.features.offline import DAY_SLACK
from aerodrome.ingest.partition import DATA_FILE
from aerodrome.settings import Settings
from aerodrome.storage import Storage, open_storage

log = logging.getLogger("aerodrome.features")
PARALLEL_READS = 8  # GETs in flight per view: a window of days is many small objects
STORE_TYPE = "aerodrome.features.storage_offline_store.StorageOfflineStore"


class StorageOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """The data root and how to reach it (the storage fields of `Settings`); no credentials: boto3's chain."""

    type: Literal["aerodrome.features.storage_offline_store.StorageOfflineStore"] = STORE_TYPE  # type: ignore[assignment]
    data_root: StrictStr
    usecases_dir: StrictStr
    s3_region: StrictStr
    s3_endpoint_url: StrictStr | None = None
    s3_allow_http_loopback: StrictBool = False

    @classmethod
    def of(cls, settings: Settings) -> StorageOfflineStoreConfig:
        return cls(
            data_root=settings.data_root,
            usecases_dir=str(settings.usecases_dir),
            s3_region=settings.s3_region,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_allow_http_loopback=settings.s3_allow_http_loopback,
        )

    def storage(self) -> Storage:
        """The data root, for reading (residency is checked by writers)."""
        settings = Settings(
            data_root=self.data_root,
            usecases_dir=Path(self.usecases_dir),
            s3_region=self.s3_region,
            s3_endpoint_url=self.s3_endpoint_url,
            s3_allow_http_loopback=self.s3_allow_http_loopback,
        )
        return open_storage(self.data_root, settings)


Span = tuple[date | None, date | None]


def view_key(config: StorageOfflineStoreConfig, source: DataSource) -> str:
    """The view's prefix under the data root, from its `FileSource` path `<root>/features/<uc>/<view>/*/<file>`."""
    root, suffix = config.data_root.rstrip("/") + "/", f"/*/{DATA_FILE}"
    path = source.path if isinstance(source, FileSource) else ""
    if not (path.startswith(root) and path.endswith(suffix)):
        raise PermanentError(
            f"Feast source {source.name!r} reads {path or type(source).__name__!r}, not a view's partitions under "
            f"{root} (…{suffix}): its definitions were applied for another data root; apply them again "
            f"(aerodrome.features.apply_definitions(spec, settings, force=True))"
        )
    return path[len(root) : -len(suffix)]


def parquet_table(storage: Storage, key: str, data: bytes) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(data))
    except pa.ArrowException as exc:
        raise SourceError(
            f"{storage.uri(key)}: not a readable Parquet file ({exc}); run the features step for that day again"
        ) from None


def read_partitions(storage: Storage, prefix: str, span: Span) -> pa.Table:
    """Every `date=` partition of `prefix` whose day lies in `span` (None: open), as one Arrow table."""
    first, last = span
    days = [p.removeprefix("date=") for p in storage.partitions(prefix)]
    if not days:
        raise SourceError(f"{storage.uri(prefix)}: no feature partitions; run the features step first")
    wanted = [d for d in days if (first is None or first.isoformat() <= d) and (last is None or d <= last.isoformat())]
    keys = [f"{prefix}/date={d}/{DATA_FILE}" for d in wanted or days[-1:]]  # none wanted: one, for the schema
    with ThreadPoolExecutor(PARALLEL_READS) as pool:
        tables = [
            parquet_table(storage, key, data)
            for key, data in zip(keys, pool.map(storage.read_bytes, keys), strict=True)
        ]
    table = pa.concat_tables(tables, promote_options="default")
    return table if wanted else table.schema.empty_table()


def partition_reader(config: StorageOfflineStoreConfig, spans: dict[str, Span]) -> Callable[[DataSource, str], Any]:
    """Feast's `data_source_reader`: a view's partitions in its span, in memory (`spans` by source name)."""
    storage = config.storage()

    def read(source: DataSource, repo_path: str) -> Any:
        began = time.perf_counter()
        span = spans.get(source.name, (None, None))
        table = read_partitions(storage, view_key(config, source), span)
        seconds = time.perf_counter() - began
        log.info("offline %s: %d rows of days %s .. %s read in %.2fs", source.name, table.num_rows, *span, seconds)
        return ibis.memtable(table)

    return read


def _day(moment: datetime | pd.Timestamp) -> date:
    stamp = pd.Timestamp(moment)
    return (stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)).date()


def stamp_span(start: datetime | None, end: datetime | None) -> Span:
    """The partitions that can hold rows stamped in [start, end]: a day's rows lie within `DAY_SLACK` of it."""
    return (None if start is None else _day(start) - DAY_SLACK, None if end is None else _day(end) + DAY_SLACK)


class StorageOfflineStore(DuckDBOfflineStore):
    """DuckDB's point-in-time join (Feast's ibis code) on partitions fetched through the storage abstraction."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        spans: dict[str, Span] = {}  # a SQL entity query (no frame) reads every partition
        if isinstance(entity_df, pd.DataFrame) and len(entity_df):
            column = infer_event_timestamp_from_entity_df(entity_df.dtypes.to_dict())
            stamps = pd.to_datetime(entity_df[column], utc=True)
            for view in feature_views:
                ttl = view.ttl if view.ttl and view.ttl > timedelta(0) else None
                spans[view.batch_source.name] = stamp_span(
                    None if ttl is None else stamps.min() - ttl, stamps.max().to_pydatetime()
                )
        return get_historical_features_ibis(
            config=config,
            feature_views=feature_views,
            feature_refs=feature_refs,
            entity_df=entity_df,
            registry=registry,
            project=project,
            full_feature_names=full_feature_names,
            data_source_reader=partition_reader(config.offline_store, spans),
            data_source_writer=_write_data_source,
            **kwargs,
        )

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig, data_source: DataSource, *args: Any, start_date: datetime, end_date: datetime, **kwargs: Any
    ) -> RetrievalJob:
        return _pull(pull_latest_from_table_or_query_ibis, config, data_source, args, start_date, end_date, kwargs)

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        *args: Any,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        **kwargs: Any,
    ) -> RetrievalJob:
        return _pull(pull_all_from_table_or_query_ibis, config, data_source, args, start_date, end_date, kwargs)

    @staticmethod
    def offline_write_batch(config: RepoConfig, feature_view: FeatureView, table: pa.Table, progress: Any) -> None:
        raise PermanentError(
            f"feature view {feature_view.name!r}: the offline store under {config.offline_store.data_root} is "
            "written by the features step (aerodrome.features.compute_features), not through Feast"
        )


def _pull(
    ibis_pull: Any,
    config: RepoConfig,
    data_source: DataSource,
    args: tuple,
    start_date: datetime | None,
    end_date: datetime | None,
    kwargs: dict[str, Any],
) -> RetrievalJob:
    """Feast's ibis pull (latest rows, or all rows) reading only the partitions of the stamp span."""
    span = {data_source.name: stamp_span(start_date, end_date)}
    return ibis_pull(
        config,
        data_source,
        *args,
        start_date=start_date,
        end_date=end_date,
        data_source_reader=partition_reader(config.offline_store, span),
        data_source_writer=_write_data_source,
        **kwargs,
    )
