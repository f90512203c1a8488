"""What each model did lately: a bounded in-memory record of requests, for the canary's analysis.

Per alias the window summary gives requests, errors (a challenger that raised and was answered by the
champion), latency p50/p99, a sample of predictions (for the distribution shift) and, where the
outcomes have arrived (`POST /v1/{usecase}/labels`), the online metric on the labelled part.
`summarize` computes it from any set of requests and labels: one process's (`TrafficWindow`), or the
union every gateway replica shares (`aerodrome.serving.replicas`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_REQUESTS = 200_000
MAX_LABELS = 500_000
SAMPLE = 2_000

Labels = Mapping[tuple[str, int], float]  # (request id, row) -> outcome


@dataclass(frozen=True)
class Served:
    at: float  # time.time()
    alias: str
    version: str
    request_id: str
    latency_ms: float
    predictions: tuple[float, ...]
    error: bool

    def as_row(self) -> list[Any]:
        """A compact JSON-able row (the shared window's segments)."""
        return [self.at, self.alias, self.version, self.request_id, self.latency_ms, list(self.predictions), self.error]

    @classmethod
    def from_row(cls, row: list[Any]) -> Served:
        at, alias, version, request_id, latency_ms, predictions, error = row
        return cls(float(at), alias, version, request_id, float(latency_ms), tuple(predictions), bool(error))


class TrafficWindow:
    """One process's recent requests and labels; with `keep_pending`, also what arrived since the last `drain`."""

    def __init__(self, task: str, keep_pending: bool = False) -> None:
        self.task = task
        self._served: deque[Served] = deque(maxlen=MAX_REQUESTS)
        self._labels: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()
        self.keep_pending = keep_pending
        self._pending: tuple[list[Served], list[list[Any]]] = ([], [])

    def record(self, served: Served) -> None:
        self._served.append(served)
        if self.keep_pending:
            with self._lock:
                self._pending[0].append(served)

    def label(self, request_id: str, row: int, value: float) -> None:
        with self._lock:
            if len(self._labels) >= MAX_LABELS:
                self._labels.pop(next(iter(self._labels)))
            self._labels[(request_id, row)] = float(value)
            if self.keep_pending:
                self._pending[1].append([request_id, row, float(value)])

    def drain(self) -> tuple[list[Served], list[list[Any]]]:
        """Requests and labels recorded since the last call (each returned once), for the shared window."""
        with self._lock:
            pending, self._pending = self._pending, ([], [])
        return pending

    def summary(self, seconds: float) -> dict[str, dict[str, Any]]:
        """Per alias: requests, errors, error_rate, p50/p99 latency, prediction sample, online metric."""
        return summarize(self.task, list(self._served), self._labels, seconds)


def summarize(
    task: str, served: Iterable[Served], labels: Labels, seconds: float, now: float | None = None
) -> dict[str, dict[str, Any]]:
    """Per alias over the last `seconds` of `served`: the figures the canary judges (see the module docstring)."""
    since = (time.time() if now is None else now) - seconds
    recent = sorted((s for s in served if s.at >= since), key=lambda s: s.at)
    out: dict[str, dict[str, Any]] = {}
    for alias in sorted({s.alias for s in recent}):
        mine = [s for s in recent if s.alias == alias]
        answered = [s for s in mine if not s.error]
        latency = np.array([s.latency_ms for s in answered]) if answered else np.array([np.nan])
        predictions = [p for s in answered for p in s.predictions]
        out[alias] = {
            "versions": sorted({s.version for s in mine}),
            "requests": len(mine),
            "errors": len(mine) - len(answered),
            "error_rate": (len(mine) - len(answered)) / len(mine),
            "p50_ms": float(np.nanpercentile(latency, 50)) if answered else None,
            "p99_ms": float(np.nanpercentile(latency, 99)) if answered else None,
            "predictions": predictions[-SAMPLE:],
            **_online(task, answered, labels),
        }
    return out


def _online(task: str, answered: list[Served], labels: Labels) -> dict[str, Any]:
    pairs = [
        (labels[(s.request_id, i)], p)
        for s in answered
        for i, p in enumerate(s.predictions)
        if (s.request_id, i) in labels
    ]
    rows = sum(len(s.predictions) for s in answered)
    if not pairs:
        return {"labelled": 0, "label_coverage": 0.0}
    y, p = (np.array(v, dtype=float) for v in zip(*pairs, strict=True))
    figures: dict[str, Any] = {"labelled": len(pairs), "label_coverage": len(pairs) / max(rows, 1)}
    if task == "classification":
        clipped = np.clip(p, 1e-7, 1 - 1e-7)
        figures["online_log_loss"] = float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))
        figures["online_accuracy"] = float(np.mean((p >= 0.5) == (y >= 0.5)))
    else:
        figures["online_mae"] = float(np.mean(np.abs(p - y)))
    return figures
