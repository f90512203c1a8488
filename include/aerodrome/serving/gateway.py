"""The gateway's logic, without HTTP: per use case the champion and challenger, routing, predict, log.

Routing is deterministic by the request's routing key (sha256 into 10,000 buckets), so one client
stays on one model while the weight holds. A challenger that raises falls back to the champion for
that request (the client gets an answer; the error counts against the challenger). Reloading
models and changing weights swap whole objects, so a request in flight finishes on what it started
with. Models are loaded from MLflow by alias and refused when their Ed25519 signature (or the
predictor digest recorded at training) does not verify: the version serving keeps serving, and the
refusal is alerted and audited. Every traffic change is audited.

A single process by default; with `sync_seconds` > 0 several replicas share one data root and act as
one gateway (traffic share, reloads, fault drills and the canary window: `aerodrome.serving.replicas`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aerodrome.errors import AerodromeError
from aerodrome.registry.aliases import CHALLENGER, CHAMPION
from aerodrome.serving.faults import Fault
from aerodrome.serving.inputs import entity_rows, model_frame, request_events
from aerodrome.serving.predlog import PredictionLog
from aerodrome.serving.replicas import SLOT_SECONDS, SharedState, replica_id, traffic_key
from aerodrome.serving.window import Served, TrafficWindow
from aerodrome.settings import Settings
from aerodrome.storage import Storage
from aerodrome.usecase import UseCase

BUCKETS = 10_000
log = logging.getLogger("aerodrome.serving")


class NoModelError(AerodromeError):
    """The use case has no champion to serve yet."""


@dataclass(frozen=True)
class ServedModel:
    alias: str
    version: str
    predictor: Any
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


@dataclass(frozen=True)
class Answer:
    request_id: str
    usecase: str
    alias: str
    version: str
    predictions: list[float]
    fallback: bool
    latency_ms: float


def warm_up(predictor: Any, rounds: int = 3) -> None:
    """Predict a few empty rows (missing numbers, unknown categories) so lazy set-up happens before traffic."""
    encoding = predictor.encoding
    columns = {**{c: [float("nan")] for c in encoding.numeric}, **{c: [None] for c in encoding.categories}}
    for _ in range(rounds):
        predictor.predict(columns)


def bucket(routing_key: str) -> int:
    """The traffic bucket (0..9,999) of a routing key: the same key always lands in the same bucket."""
    return int.from_bytes(hashlib.sha256(routing_key.encode()).digest()[:8], "big") % BUCKETS


class UseCaseService:
    """What the gateway serves for one use case."""

    def __init__(
        self,
        spec: UseCase,
        settings: Settings,
        storage: Storage,
        predictions: PredictionLog,
        shared: SharedState | None = None,
    ) -> None:
        self.spec = spec
        self.shared = shared  # None: one process; else the state every replica shares
        self.settings = settings
        self.storage = storage
        self.predictions = predictions
        self.models: dict[str, ServedModel] = {}
        self.challenger_percent = 0.0
        from aerodrome.features.builders import builder_for

        self.features = [f for v in spec.features.views for f in v.features] if spec.features else []
        self.clock = builder_for(spec).clock
        # what a prediction-log record carries besides ids: the entity keys, then every model feature
        self.log_keys = list(spec.features.entities) if spec.features else []
        request = list(spec.features.request_features) if spec.features else []
        self.log_numbers = [c for c in dict.fromkeys([*request, *self.features]) if c not in self.log_keys]
        self._reload_lock = threading.Lock()
        self.reader: Any = None  # the online store reader, opened by `warm` or the first request
        self.window = TrafficWindow(spec.target.task, keep_pending=shared is not None)
        self.faults: dict[str, Fault] = {}
        if shared is not None:
            shared.models.changed()  # the models load from the aliases at start: a past reload is no news
            self.follow()
        elif storage.exists(traffic_key(spec.name)):
            self.challenger_percent = float(
                json.loads(storage.read_bytes(traffic_key(spec.name)))["challenger_percent"]
            )

    # -- models and traffic ---------------------------------------------------------------------
    def reload(self, force: bool = False, announce: bool = False) -> dict[str, str | None]:
        """Load the versions the aliases point at now (unchanged ones kept unless `force`); swap them in at once.

        `announce` (an admin call) has every other replica reload too.
        """
        from aerodrome.registry.aliases import alias_version, registry_client
        from aerodrome.registry.promote import load_version

        with self._reload_lock:
            client = registry_client(self.settings.tracking_uri)
            fresh: dict[str, ServedModel] = {}
            for alias in (CHAMPION, CHALLENGER):
                version = alias_version(client, self.spec.name, alias)
                current = self.models.get(alias)
                if version is None:
                    continue
                if current is not None and current.version == version and not force:
                    fresh[alias] = current
                    continue
                with tempfile.TemporaryDirectory(prefix="aerodrome-serve-") as tmp:
                    loaded = load_version(client, self.settings, self.spec.name, version, Path(tmp))
                if loaded.predictor is None:
                    why = loaded.provenance.detail if loaded.provenance else "artifact digest differs from training"
                    kept = f"v{current.version} keeps serving" if current is not None else "nothing served"
                    log.error("%s v%s (@%s) refused: %s; %s", self.spec.name, version, alias, why, kept)
                    if current is not None:
                        fresh[alias] = current
                    continue
                loaded.predictor.set_threads(1)  # requests run side by side; a 1-row call gains nothing from more
                warm_up(loaded.predictor)  # the first prediction pays one-off costs: never a client's
                fresh[alias] = ServedModel(alias, version, loaded.predictor)
            self.models = fresh
        if self.reader is not None:
            self.warm()  # the feature definitions may have changed too: read them again
        versions = self.versions()
        if announce and self.shared is not None:
            self.shared.models.write(
                {"models": versions, "force": force, "id": uuid.uuid4().hex, "by": self.shared.replica, "at": _now()}
            )
        return versions

    def warm(self) -> None:
        """Open the Feast store now (seconds of imports and registry reads), not on the first request."""
        from aerodrome.features.repo import registry_exists, store_entry

        if self.features and registry_exists(self.spec, self.settings):  # never create one: the pipelines do
            from aerodrome.features.online import OnlineReader

            store_entry(self.spec, self.settings).store.list_feature_views()
            self.reader = OnlineReader(self.spec, self.settings)
            nobody = {key: None for key in self.spec.features.entities}  # matches no row: opens the online store
            self.reader.read(entity_rows(self.spec, [nobody]))

    def status(self) -> dict[str, Any]:
        """What serves now: the version per alias and the challenger's traffic share."""
        return {"models": self.versions(), "challenger_percent": self.challenger_percent}

    def versions(self) -> dict[str, str | None]:
        models = self.models
        return {alias: (models[alias].version if alias in models else None) for alias in (CHAMPION, CHALLENGER)}

    def set_traffic(self, challenger_percent: float, actor: str | None = None) -> None:
        """Give the challenger `challenger_percent` % of the traffic; `actor` (who asks) goes to the audit trail."""
        from aerodrome.security import audit

        if not 0 <= challenger_percent <= 100:
            raise ValueError(f"challenger_percent must lie in 0..100, not {challenger_percent}")
        before, self.challenger_percent = self.challenger_percent, float(challenger_percent)
        record = {"challenger_percent": self.challenger_percent, "at": _now()}
        if self.shared is not None:
            self.shared.traffic.write({**record, "by": self.shared.replica})
        else:
            self.storage.write_bytes(traffic_key(self.spec.name), json.dumps(record).encode())
        versions = self.versions()
        audit.record(
            "traffic",
            self.spec.name,
            f"challenger traffic {before:g} % -> {self.challenger_percent:g} %",
            actor=actor or f"gateway admin API ({audit.default_actor()})",
            versions={"model": self.spec.name, **versions},
            details={"from_percent": before, "to_percent": self.challenger_percent},
            settings=self.settings,
        )

    def route(self, routing_key: str) -> ServedModel:
        models = self.models
        if CHAMPION not in models:
            raise NoModelError(
                f"{self.spec.name} has no @champion yet: promote a model first (promote_{self.spec.name})"
            )
        challenger = models.get(CHALLENGER)
        if challenger is not None and bucket(routing_key) < self.challenger_percent * BUCKETS / 100:
            return challenger
        return models[CHAMPION]

    # -- predictions ------------------------------------------------------------------------------
    def predict(
        self, rows: list[dict[str, Any]], request_id: str | None = None, routing_key: str | None = None
    ) -> tuple[Answer, list[str]]:
        """Predict `rows`; returns the answer and the errors met (a challenger's, answered by the champion)."""
        began = time.perf_counter()
        request_id = request_id or uuid.uuid4().hex
        events = request_events(self.spec, rows)
        entities = entity_rows(self.spec, events)
        key = routing_key or ("|".join(str(v) for v in entities[0].values()) if entities else request_id)
        looked_up = self._look_up(entities) if self.features else {}
        frame = model_frame(events, looked_up, self.features)
        chosen, errors = self.route(key), []
        try:
            values = self._predict_with(chosen, frame)
        except Exception as exc:  # a challenger's fault must not fail the client's request
            if chosen.alias != CHALLENGER:
                raise
            errors.append(f"{chosen.alias} v{chosen.version}: {type(exc).__name__}: {exc}")
            self.window.record(Served(time.time(), chosen.alias, chosen.version, request_id, 0.0, (), True))
            chosen = self.models[CHAMPION]
            values = self._predict_with(chosen, frame)
        latency = (time.perf_counter() - began) * 1000
        answer = Answer(
            request_id, self.spec.name, chosen.alias, chosen.version, [float(v) for v in values], bool(errors), latency
        )
        predictions = tuple(answer.predictions)
        self.window.record(Served(time.time(), chosen.alias, chosen.version, request_id, latency, predictions, False))
        self.predictions.log(self._records(answer, events, frame))
        return answer, errors

    def _look_up(self, entities: list[dict[str, Any]]) -> dict[str, list[Any]]:
        reader = self.reader
        if reader is None:
            from aerodrome.features.online import OnlineReader

            reader = self.reader = OnlineReader(self.spec, self.settings)
        return reader.read(entities)

    def _predict_with(self, model: ServedModel, frame: Any) -> Any:
        fault = self.faults.get(model.alias)
        if fault is None:
            return model.predictor.predict(frame)
        return fault.apply(model.predictor.predict, frame, self.spec.target.task == "classification")

    def set_fault(self, alias: str, fault: Fault | None) -> None:
        """Start (or with None, end) a fault drill on `alias`."""
        faults = dict(self.faults)
        if fault is None:
            faults.pop(alias, None)
        else:
            faults[alias] = fault
        self.faults = faults
        log.warning("%s: fault drill on @%s: %s", self.spec.name, alias, fault or "ended")
        if self.shared is not None:
            drills = {a: dataclasses.asdict(f) for a, f in faults.items()}
            self.shared.faults.write({"faults": drills, "by": self.shared.replica, "at": _now()})

    # -- replicas ---------------------------------------------------------------------------------
    def follow(self) -> list[str]:
        """Apply what an admin call to another replica changed (models first, then traffic, then drills).

        A reload that fails (the registry unreachable) is tried again at the next poll; traffic and drills
        are applied meanwhile.
        """
        shared, applied = self.shared, []
        if shared is None:
            return applied
        announced = shared.models.changed()
        if announced is not None:
            try:
                versions = self.reload(bool(announced.get("force")))
            except Exception as exc:
                shared.models.forget()
                log.error(
                    "%s: reload announced by %s failed (next poll retries): %s", self.spec.name, announced["by"], exc
                )
            else:
                applied.append(f"models {versions}")
                if versions != announced["models"]:  # the aliases moved again since, or a version was refused here
                    log.warning(
                        "%s: %s announced %s; here %s", self.spec.name, announced["by"], announced["models"], versions
                    )
        traffic = shared.traffic.changed()
        if traffic is not None:
            self.challenger_percent = float(traffic["challenger_percent"])
            applied.append(f"challenger {self.challenger_percent:g} %")
        drills = shared.faults.changed()
        if drills is not None:
            self.faults = {alias: Fault(**fault) for alias, fault in drills.get("faults", {}).items()}
            applied.append(f"fault drills {sorted(self.faults) or 'none'}")
        if applied:
            log.info("%s: following %s", self.spec.name, "; ".join(applied))
        return applied

    def flush_window(self) -> str | None:
        """Share what this replica served and received since its last flush (the key written, or None)."""
        if self.shared is None:
            return None
        served, labels = self.window.drain()
        return self.shared.window.write(served, labels)

    def window_summary(self, seconds: float) -> dict[str, Any]:
        """Per alias over the last `seconds` (`GET /v1/{usecase}/window`): this process's, or every replica's."""
        if self.shared is None:
            return {"aliases": self.window.summary(seconds)}
        self.flush_window()
        aliases, replicas = self.shared.window.merged(seconds)
        return {"aliases": aliases, "replicas": replicas}

    def add_labels(self, labels: list[dict[str, Any]]) -> int:
        """Outcomes of earlier requests (request_id, row, label): kept for the online metric and logged."""
        received = datetime.now(UTC)
        for item in labels:
            self.window.label(str(item["request_id"]), int(item.get("row", 0)), float(item["label"]))
        day = received.strftime("%Y-%m-%d")
        self.predictions.log(
            [
                {
                    "zone": "labels",
                    "usecase": self.spec.name,
                    "event_day": day,
                    "received_at": received,
                    "request_id": str(item["request_id"]),
                    "row": int(item.get("row", 0)),
                    "label": float(item["label"]),
                }
                for item in labels
            ]
        )
        return len(labels)

    def _records(self, answer: Answer, events: list[dict[str, Any]], frame: Any) -> list[dict[str, Any]]:
        """One log record per row: ids, times, alias, version, entity keys, every feature, the prediction."""
        import numpy as np

        from aerodrome.features.builders.base import EVENT_TIMESTAMP

        served_at = datetime.now(UTC)
        keys, numbers = self.log_keys, self.log_numbers
        values = np.array([frame[c] for c in numbers], dtype=np.float64).T if numbers else np.zeros((len(events), 0))
        tz = self.clock.tz
        out = []
        for i, event in enumerate(events):
            stamp = event[EVENT_TIMESTAMP]
            record = {
                "request_id": answer.request_id,
                "row": i,
                "usecase": answer.usecase,
                "served_at": served_at,
                "event_timestamp": stamp,
                "event_day": stamp.astimezone(tz).strftime("%Y-%m-%d"),  # the partition day of the event
                "alias": answer.alias,
                "model_version": answer.version,
                "prediction": answer.predictions[i],
                "fallback": answer.fallback,
                "latency_ms": answer.latency_ms,
            }
            record.update({k: event[k] for k in keys})
            record.update({name: (None if v != v else float(v)) for name, v in zip(numbers, values[i], strict=True)})
            out.append(record)
        return out


class Gateway:
    """Every use case with features, served from one process; with `sync_seconds` > 0, one replica of several."""

    def __init__(
        self,
        specs: list[UseCase],
        settings: Settings,
        storage: Storage,
        flush_seconds: float = 1.0,
        sync_seconds: float = 0.0,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.predictions = PredictionLog(storage, flush_seconds)
        self.sync_seconds = sync_seconds
        self.replica = replica_id() if sync_seconds > 0 else None
        self.services = {
            s.name: UseCaseService(
                s,
                settings,
                storage,
                self.predictions,
                SharedState(storage, s.name, s.target.task, self.replica) if self.replica else None,
            )
            for s in specs
            if s.features
        }
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None

    def start(self) -> Gateway:
        """Start the prediction log and load every use case's models (again after `close`: kept if unchanged)."""
        self.predictions.start()
        for name, service in self.services.items():
            try:
                log.info("%s: serving %s", name, service.reload())
                service.warm()
            except Exception as exc:  # one use case's registry problem must not stop the others
                log.error("%s: not ready: %s", name, exc)
        if self.replica and (self._follower is None or not self._follower.is_alive()):
            self._stop.clear()
            self._follower = threading.Thread(target=self._follow, name="replica-sync", daemon=True)
            self._follower.start()
        return self

    def sync(self) -> None:
        """One round of replica sync: apply the others' admin calls, share this replica's window."""
        for name, service in self.services.items():
            for step in (service.follow, service.flush_window):
                try:
                    step()
                except Exception:  # the data root may be back at the next round
                    log.exception("%s: replica sync (%s) failed", name, step.__name__)

    def _follow(self) -> None:
        pruned = 0.0
        while not self._stop.wait(self.sync_seconds):
            self.sync()
            if time.time() - pruned >= SLOT_SECONDS:
                pruned = time.time()
                for name, service in self.services.items():
                    try:
                        service.shared.window.prune()
                    except Exception:
                        log.exception("%s: pruning the shared window failed", name)

    def close(self) -> None:
        if self._follower is not None:
            self._stop.set()
            self._follower.join()
            for service in self.services.values():
                service.flush_window()  # what this replica served last still counts
        self.predictions.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
