"""Several gateway replicas as one gateway: shared traffic share, model versions, fault drills and canary window.

With `sync_seconds` > 0 (`AERODROME_GATEWAY_SYNC_SECONDS`; the autoscaled Kubernetes manifests set it)
every gateway process, e.g. each pod behind the Service, keeps in step with the others through the data
root (a folder the processes share, or S3), so an admin call that reaches one replica reaches them all:

* **control**: `serving/<uc>/traffic.json` (the challenger's share, the file a single gateway writes too),
  `serving/<uc>/models.json` (an admin reload: the versions loaded, forced or not, a fresh id) and
  `serving/<uc>/faults.json` (fault drills). Each replica reads the three small documents every
  `sync_seconds` and applies those whose bytes changed: a quiet poll is three small reads, and a replica
  goes to MLflow (and loads models) only after a reload was announced. The audit record stays with the
  replica the admin call reached.
* **window**: each replica writes what it served and the outcomes it received since its last write as a
  new, immutable segment `serving/<uc>/window/<minute>/<replica>-<n>.json` every `sync_seconds`.
  `GET /v1/{uc}/window` on any replica merges every replica's segments of the window (a segment read
  once is cached: it never changes) and judges the union, so an outcome posted to one replica meets the
  prediction another served. Minutes older than `retention_seconds` are deleted.

Why shared state rather than the canary asking each pod through a headless Service: outcomes arrive at
any pod, a pod removed by a scale-down or a drain takes its memory with it, the canary's trigger may run
outside the cluster, and the canary, the A/B test and their clients need no change.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from aerodrome.errors import SourceError
from aerodrome.serving.window import MAX_REQUESTS, Served, summarize
from aerodrome.storage import Storage

log = logging.getLogger("aerodrome.serving")

SLOT_SECONDS = 60  # one folder of window segments per minute: listed, read and deleted as a unit
RETENTION_SECONDS = 7200  # window segments kept (a canary step's analysis lasts 30 min by default)
SYNC_ENV = "AERODROME_GATEWAY_SYNC_SECONDS"


def traffic_key(usecase: str) -> str:
    return f"serving/{usecase}/traffic.json"


def models_key(usecase: str) -> str:
    return f"serving/{usecase}/models.json"


def faults_key(usecase: str) -> str:
    return f"serving/{usecase}/faults.json"


def window_prefix(usecase: str) -> str:
    return f"serving/{usecase}/window"


def replica_id() -> str:
    """This process among the replicas: the host (a pod's name), the PID and a random tail (every pod is PID 1)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def sync_seconds_from_env(environ: dict[str, str] | None = None) -> float:
    """`AERODROME_GATEWAY_SYNC_SECONDS` (default 0: a single gateway, nothing shared)."""
    raw = (os.environ if environ is None else environ).get(SYNC_ENV, "").strip()
    try:
        seconds = float(raw or 0)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ValueError(f"{SYNC_ENV}={raw!r} is not a number of seconds >= 0 (0 turns replica sync off)")
    return seconds


class ControlDocument:
    """A small JSON document every replica polls: `changed()` answers it only when its bytes changed."""

    def __init__(self, storage: Storage, key: str) -> None:
        self.storage, self.key = storage, key
        self.seen: bytes | None = None

    def changed(self) -> dict[str, Any] | None:
        try:
            data = self.storage.read_bytes(self.key)
        except SourceError:  # nobody wrote it yet
            return None
        if data == self.seen:
            return None
        self.seen = data
        return json.loads(data)

    def write(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc, sort_keys=True).encode()
        self.storage.write_bytes(self.key, data)
        self.seen = data  # this replica has applied it already

    def forget(self) -> None:
        """Read it as new at the next poll (applying it failed: try again)."""
        self.seen = None


class SharedWindow:
    """Every replica's requests and outcomes of one use case, as immutable segments under the data root."""

    def __init__(
        self, storage: Storage, usecase: str, task: str, replica: str, retention_seconds: float = RETENTION_SECONDS
    ) -> None:
        self.storage, self.task, self.replica = storage, task, replica
        self.prefix = window_prefix(usecase)
        self.retention_seconds = retention_seconds
        self._seq = 0
        self._lock = threading.Lock()
        self._segments: dict[str, dict[str, Any]] = {}  # key -> parsed segment (immutable once written)
        self._closed: dict[int, list[str]] = {}  # listings of minutes no replica writes to any more
        self._pruned_below: int | None = None

    def write(self, served: list[Served], labels: list[list[Any]], now: float | None = None) -> str | None:
        """One new segment of what this replica served and received since its last write (nothing: no segment)."""
        if not served and not labels:
            return None
        now = time.time() if now is None else now
        with self._lock:
            self._seq += 1
            key = f"{self.prefix}/{int(now // SLOT_SECONDS)}/{self.replica}-{self._seq:09d}.json"
        doc = {"replica": self.replica, "served": [s.as_row() for s in served], "labels": labels}
        self.storage.write_bytes(key, json.dumps(doc, separators=(",", ":")).encode())
        return key

    def merged(self, seconds: float, now: float | None = None) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """The window summary (as `TrafficWindow.summary`) over every replica's last `seconds`, and the replicas seen.

        Reads the newest minutes first and stops once `MAX_REQUESTS` requests are in, like one process's window.
        """
        now = time.time() if now is None else now
        since = now - min(seconds, self.retention_seconds)
        first = int(since // SLOT_SECONDS) - 1  # a segment is filed by its write time, a little after its requests
        served: list[Served] = []
        labels: dict[tuple[str, int], float] = {}
        replicas: set[str] = set()
        used: dict[str, dict[str, Any]] = {}
        for slot in range(int(now // SLOT_SECONDS), first - 1, -1):
            for key in self._keys(slot, now):
                segment = self._segments.get(key) or self._read(key)
                if segment is None:  # pruned meanwhile: older than the retention
                    continue
                used[key] = segment
                if segment["labels"] or any(s.at >= since for s in segment["served"]):
                    replicas.add(segment["replica"])
                served += segment["served"]
                labels.update(((rid, int(row)), float(value)) for rid, row, value in segment["labels"])
            if len(served) >= MAX_REQUESTS:
                break
        self._segments = used  # memory stays bounded by what the last window needed
        if len(served) > MAX_REQUESTS:
            served = sorted(served, key=lambda s: s.at)[-MAX_REQUESTS:]
        return summarize(self.task, served, labels, seconds, now), sorted(replicas)

    def _keys(self, slot: int, now: float) -> list[str]:
        if slot in self._closed:
            return self._closed[slot]
        keys = [k for k in self.storage.list(f"{self.prefix}/{slot}") if k.endswith(".json")]
        if (slot + 2) * SLOT_SECONDS < now:  # a minute ago and more: every replica has moved on to later folders
            self._closed[slot] = keys
        return keys

    def _read(self, key: str) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.storage.read_bytes(key))
        except SourceError:
            return None
        doc["served"] = [Served.from_row(row) for row in doc["served"]]
        return doc

    def prune(self, now: float | None = None) -> int:
        """Delete the minutes older than the retention (any replica may: deleting twice is harmless)."""
        now = time.time() if now is None else now
        cutoff = int((now - self.retention_seconds) // SLOT_SECONDS)
        if self._pruned_below is None:  # first time: whatever earlier replicas left behind
            slots = {int(k[len(self.prefix) + 1 :].split("/", 1)[0]) for k in self.storage.list(self.prefix)}
        else:
            slots = set(range(self._pruned_below, cutoff))
        gone = sorted(s for s in slots if s < cutoff)
        for slot in gone:
            self.storage.delete_prefix(f"{self.prefix}/{slot}")
            self._closed.pop(slot, None)
        self._pruned_below = cutoff
        return len(gone)


class SharedState:
    """One use case's state shared by the replicas: the control documents and the window."""

    def __init__(
        self,
        storage: Storage,
        usecase: str,
        task: str,
        replica: str | None = None,
        retention_seconds: float = RETENTION_SECONDS,
    ) -> None:
        self.replica = replica or replica_id()
        self.traffic = ControlDocument(storage, traffic_key(usecase))
        self.models = ControlDocument(storage, models_key(usecase))
        self.faults = ControlDocument(storage, faults_key(usecase))
        self.window = SharedWindow(storage, usecase, task, self.replica, retention_seconds)
