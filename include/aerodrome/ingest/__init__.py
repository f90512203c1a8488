"""Ingestion: read one data interval from a source and write it as one raw Parquet partition.

Names are loaded on first use, so `aerodrome.ingest.datasets` (read when DAGs are built) imports no pandas.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "PartitionInfo": "partition",
    "partition_key": "partition",
    "read_partition": "partition",
    "write_partition": "partition",
    "IngestResult": "run",
    "ingest_interval": "run",
    "PostgresDsn": "sources",
    "read_file_drop": "sources",
    "read_postgres_interval": "sources",
    "dataset_name": "datasets",
    "dataset_spec": "datasets",
    "source_dataset": "datasets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aerodrome.ingest' has no attribute {name!r}")
    return getattr(import_module(f"aerodrome.ingest.{module}"), name)
