"""The prediction log: every served prediction (and every outcome posted later), durable within a second.

`log()` only appends to a buffer (the request path never waits for a disk); a background thread
writes the buffer every `flush_seconds` as one new file
`predictions/<use case>/date=YYYY-MM-DD/part-<ms>-<pid>-<n>-<writer>.parquet` (the day of the event the
prediction is about; `<writer>` is random per process, so gateway replicas sharing a data root never
collide), so a crash loses at most the last unflushed second and a file is never rewritten. Outcomes
(labels) go the same way to `labels/<use case>/date=<day they arrived>/`. `compact_day` merges a day's
small files into one once the day is over.
"""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

from aerodrome.storage import Storage

ZONE = "predictions"


def day_prefix(usecase: str, day: str, zone: str = ZONE) -> str:
    return f"{zone}/{usecase}/date={day}"


class PredictionLog:
    """Buffered, append-only prediction records of every use case, flushed by a daemon thread."""

    def __init__(self, storage: Storage, flush_seconds: float = 1.0) -> None:
        self.storage = storage
        self.flush_seconds = flush_seconds
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._files = 0
        self._writer = uuid.uuid4().hex[:8]  # gateway pods all run as PID 1: the PID alone is not unique
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self.written = 0

    def start(self) -> PredictionLog:
        """Start flushing (again, after `close`); a second call while running does nothing."""
        if not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()
        return self

    def log(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            self._buffer.extend(records)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def flush(self) -> int:
        """Write what is buffered (one file per use case and day); returns the records written."""
        with self._lock:
            pending, self._buffer = self._buffer, []
        if not pending:
            return 0
        import pyarrow as pa
        import pyarrow.parquet as pq

        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for record in pending:
            groups[(record.pop("zone", ZONE), record["usecase"], record["event_day"])].append(record)
        for (zone, usecase, day), records in groups.items():
            self._files += 1
            sink = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(records), sink)
            name = f"part-{int(time.time() * 1000)}-{os.getpid()}-{self._files}-{self._writer}.parquet"
            self.storage.write_bytes(f"{day_prefix(usecase, day, zone)}/{name}", sink.getvalue())
        self.written += len(pending)
        return len(pending)

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush()


def read_day(storage: Storage, usecase: str, day: str, zone: str = ZONE) -> Any:
    """Every logged prediction (or, with zone `labels`, outcome) of one day as a pandas frame (empty when none)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = sorted(k for k in storage.list(day_prefix(usecase, day, zone)) if k.endswith(".parquet"))
    tables = [pq.read_table(io.BytesIO(storage.read_bytes(k))) for k in keys]
    # a file whose feature was missing in every row has it as a null column: promote it to the others' type
    return pa.concat_tables(tables, promote_options="default").to_pandas() if tables else pd.DataFrame()


def compact_day(storage: Storage, usecase: str, day: str) -> int:
    """Merge a day's files into one `compacted-<ms>.parquet`; the merged files move to `predictions/.merged/`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    prefix = day_prefix(usecase, day)
    keys = sorted(k for k in storage.list(prefix) if k.endswith(".parquet"))
    if len(keys) < 2:
        return 0
    frame = read_day(storage, usecase, day)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    storage.write_bytes(f"{prefix}/compacted-{int(time.time() * 1000)}.parquet", sink.getvalue())
    for key in keys:
        storage.move_prefix(key, key.replace(f"{prefix}/", f"{ZONE}/.merged/{usecase}/date={day}/", 1))
    return len(frame)
