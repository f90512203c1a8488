"""Raw partitions: `raw/<usecase>/date=YYYY-MM-DD/part-0.parquet` plus a deterministic manifest."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aerodrome.storage import Storage

DATA_FILE = "part-0.parquet"
MANIFEST_FILE = "_manifest.json"


def partition_key(zone: str, usecase: str, ds: str) -> str:
    return f"{zone}/{usecase}/date={ds}"


@dataclass(frozen=True)
class PartitionInfo:
    key: str
    uri: str
    rows: int
    sha256: str
    source: str


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def write_partition(storage: Storage, key: str, frame: pd.DataFrame, source: str) -> PartitionInfo:
    """Replace the partition at `key` with `frame`; a re-run of the same interval overwrites it."""
    data = _parquet_bytes(frame)
    info = PartitionInfo(
        key=key,
        uri=storage.uri(key),
        rows=len(frame),
        sha256=hashlib.sha256(data).hexdigest(),
        source=source,
    )
    manifest = json.dumps(asdict(info), indent=2, sort_keys=True).encode()
    storage.replace_prefix(key, {DATA_FILE: data, MANIFEST_FILE: manifest})
    return info


def read_partition(storage: Storage, key: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(storage.read_bytes(f"{key}/{DATA_FILE}")))


def read_manifest(storage: Storage, key: str) -> PartitionInfo:
    return PartitionInfo(**json.loads(storage.read_bytes(f"{key}/{MANIFEST_FILE}")))
