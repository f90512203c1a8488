"""Ingestion: read one data interval from a source and write it as one raw Parquet partition."""

from aerodrome.ingest.partition import PartitionInfo, partition_key, read_partition, write_partition
from aerodrome.ingest.run import IngestResult, ingest_interval
from aerodrome.ingest.sources import PostgresDsn, read_file_drop, read_postgres_interval

__all__ = [
    "IngestResult",
    "PartitionInfo",
    "PostgresDsn",
    "ingest_interval",
    "partition_key",
    "read_file_drop",
    "read_partition",
    "read_postgres_interval",
    "write_partition",
]
