"""Promotion: the candidate and the champion judged on the same recent holdout, then the gates decide.

`judge_candidate` loads both versions from MLflow (checking the candidate's artifact digest), builds
the candidate's holdout window once through the same point-in-time join as training, scores both
models on those rows overall and per slice, times a 1-row prediction, checks the signature against
the serving schema and compares with the naive baselines the trainer recorded. `apply_decision`
then moves `challenger` to a passing candidate (`champion` when none serves yet: a first model has
nothing to be canaried against), or records the reasons on the version. Nothing else changes.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aerodrome.errors import AerodromeError
from aerodrome.features.training import build_training_set
from aerodrome.registry.aliases import CHALLENGER, CHAMPION, AliasMove, alias_version, move_alias, registry_client
from aerodrome.registry.gates import (
    Gate,
    baseline_gate,
    digest_gate,
    latency_gate,
    metric_gate,
    signature_gate,
    slice_gate,
)
from aerodrome.registry.slice_noise import slice_noise
from aerodrome.security import audit
from aerodrome.security.digest import tree_sha256
from aerodrome.security.signing import SignatureCheck, artifact_gate, check_registered_artifact
from aerodrome.settings import Settings, redacted_uri
from aerodrome.storage import Storage
from aerodrome.train.evaluate import SLICE_MIN_ROWS, Evaluation, evaluate
from aerodrome.train.inputs import model_columns
from aerodrome.train.predictor import Predictor, load_predictor
from aerodrome.train.tracking import ARTIFACT_DIGEST_TAG, model_name, tracking_uri
from aerodrome.usecase import UseCase

LATENCY_CALLS = 200
Progress = Callable[[str], None]


class PromotionError(AerodromeError):
    """The candidate cannot be judged at all (unknown version, no holdout window, no rows)."""


@dataclass
class LoadedVersion:
    """One registered version, downloaded: its predictor, tags, run metrics and signature."""

    version: str
    predictor: Predictor | None  # None: the artifact's digest differs from the recorded one (not loaded)
    tags: dict[str, str]
    run_metrics: dict[str, float]
    signature_inputs: dict[str, str] | None
    digest: str
    provenance: SignatureCheck | None = None  # the Ed25519 signature of the whole model folder, checked


@dataclass
class PromotionReport:
    usecase: str
    model: str
    candidate: str
    champion: str | None
    metric: str
    holdout: dict[str, str]
    rows: int
    gates: list[Gate]
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failed(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]

    @property
    def target_alias(self) -> str:
        """Where a passing candidate goes: `challenger`, or `champion` when none serves yet."""
        return CHALLENGER if self.champion else CHAMPION

    def lines(self) -> list[str]:
        against = f"champion v{self.champion}" if self.champion else "no champion yet"
        where = f"the holdout {self.holdout['start']} .. {self.holdout['end']}" if self.holdout else "no holdout"
        out = [f"{self.model} v{self.candidate} vs {against} on {where} ({self.rows:,} events)"]
        out += [f"  [{'pass' if g.passed else 'FAIL'}] {g.name}: {g.detail}" for g in self.gates]
        verdict = (
            f"PASSED -> @{self.target_alias}" if self.passed else "REJECTED: " + ", ".join(g.name for g in self.failed)
        )
        return [*out, verdict]

    def as_dict(self) -> dict[str, Any]:
        return {
            "usecase": self.usecase,
            "model": self.model,
            "candidate": self.candidate,
            "champion": self.champion,
            "metric": self.metric,
            "holdout": self.holdout,
            "rows": self.rows,
            "passed": self.passed,
            "target_alias": self.target_alias if self.passed else None,
            "gates": [g.as_dict() for g in self.gates],
            "figures": self.figures,
            "seconds": self.seconds,
        }


def load_version(client: Any, settings: Settings, name: str, version: str, folder: Path) -> LoadedVersion:
    """Download one version into `folder` and load its predictor (the digest is of what was downloaded)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from aerodrome.train.pyfunc import PREDICTOR_ARTIFACT

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        registered = client.get_model_version(name, version)
    except MlflowException:
        where = redacted_uri(settings.tracking_uri)
        raise PromotionError(f"model {name!r} has no version {version!r} in {where}") from None
    with tracking_uri(settings.tracking_uri):
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(folder))
        )
    provenance = check_registered_artifact(local, registered, settings)  # before anything is parsed; alerted
    predictor_dir = local / "artifacts" / PREDICTOR_ARTIFACT
    if not predictor_dir.is_dir():
        raise PromotionError(f"{name} v{version}: no '{PREDICTOR_ARTIFACT}' folder in its artifact ({local})")
    signature = Model.load(str(local)).signature if provenance.passed else None
    inputs = None
    if signature is not None and signature.inputs is not None:
        inputs = {
            spec.name: str(spec.type.name if hasattr(spec.type, "name") else spec.type) for spec in signature.inputs
        }
    metrics = client.get_run(registered.run_id).data.metrics if registered.run_id else {}
    digest = tree_sha256(predictor_dir)
    intact = digest == registered.tags.get(ARTIFACT_DIGEST_TAG) and provenance.passed
    return LoadedVersion(
        version=str(version),
        predictor=load_predictor(predictor_dir) if intact else None,  # never deserialise an altered artifact
        tags=dict(registered.tags),
        run_metrics=dict(metrics),
        signature_inputs=inputs,
        digest=digest,
        provenance=provenance,
    )


def holdout_window(tags: dict[str, str]) -> tuple[datetime, datetime]:
    """[holdout start, window end) of a version, from the tags the trainer set."""
    try:
        end = datetime.fromisoformat(tags["window"].split(" .. ")[1])
        return datetime.fromisoformat(tags["holdout_start"]), end
    except (KeyError, IndexError, ValueError):
        raise PromotionError(
            "the version has no 'window'/'holdout_start' tags: it was not registered by the trainer"
        ) from None


def one_row_p99_ms(predictor: Predictor, frame: pd.DataFrame, calls: int = LATENCY_CALLS) -> tuple[float, float]:
    """(p50, p99) of predicting one row, in milliseconds, over `calls` rows of `frame` after a warm-up.

    Measured as the gateway serves it: one thread per call, the row as plain columns.
    """
    predictor.set_threads(1)
    columns = list(predictor.encoding.columns)
    rows = [{c: [v] for c, v in frame.iloc[i % len(frame)][columns].items()} for i in range(calls)]
    for row in rows[:10]:
        predictor.predict(row)
    spent = []
    for row in rows:
        began = time.perf_counter()
        predictor.predict(row)
        spent.append((time.perf_counter() - began) * 1000)
    return float(np.percentile(spent, 50)), float(np.percentile(spent, 99))


def recorded_baselines(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """`baseline.<name>.<metric>` run metrics as name -> metric -> value."""
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if key.startswith("baseline.") and key.count(".") == 2:
            _, name, metric = key.split(".")
            out.setdefault(name, {})[metric] = value
    return out


def judge_candidate(
    spec: UseCase, settings: Settings, storage: Storage, version: str, progress: Progress | None = None
) -> PromotionReport:
    """Judge candidate `version` against the current champion on the candidate's holdout window."""
    say = progress or (lambda _message: None)
    clock: dict[str, float] = {}
    began = time.perf_counter()
    name = model_name(spec)
    policy = spec.promotion
    metric = str(policy.metric)
    client = registry_client(settings.tracking_uri)
    champion = alias_version(client, name, CHAMPION)
    if champion == str(version):
        raise PromotionError(f"{name} v{version} is the champion already: nothing to promote")
    with tempfile.TemporaryDirectory(prefix="aerodrome-promote-") as tmp:
        candidate = load_version(client, settings, name, version, Path(tmp) / "candidate")
        reigning = load_version(client, settings, name, champion, Path(tmp) / "champion") if champion else None
    clock["load"] = time.perf_counter() - began
    if reigning is not None and reigning.predictor is None:
        raise PromotionError(f"the champion {name} v{champion}'s artifact differs from the one registered: investigate")
    integrity = artifact_gate(
        digest_gate(candidate.tags.get(ARTIFACT_DIGEST_TAG), candidate.digest), candidate.provenance
    )
    if candidate.predictor is None:
        say(f"{name} v{version}: {integrity.detail}; not loaded, not judged further")
        return PromotionReport(spec.name, name, str(version), champion, metric, {}, 0, [integrity])
    start, end = holdout_window(candidate.tags)
    say(f"judging {name} v{version} against {'v' + champion if champion else 'no champion'}")

    mark = time.perf_counter()
    holdout = build_training_set(spec, settings, storage, start, end)
    frame, labels = holdout.frame, holdout.frame[holdout.label].to_numpy()
    clock["holdout"] = time.perf_counter() - mark
    say(f"holdout {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC: {len(frame):,} events")

    mark = time.perf_counter()
    task, slices = spec.target.task, list(spec.model.slices)
    ours_p = candidate.predictor.predict(frame)
    judged: dict[str, Evaluation] = {"candidate": evaluate(task, frame, labels, ours_p, slices)}
    noise: dict[str, float] = {}
    if reigning is not None:
        theirs_p = reigning.predictor.predict(frame)
        judged["champion"] = evaluate(task, frame, labels, theirs_p, slices)
        noise = slice_noise(metric, frame, labels, ours_p, theirs_p, slices, SLICE_MIN_ROWS)
    p50, p99 = one_row_p99_ms(candidate.predictor, frame)
    clock["score"] = time.perf_counter() - mark

    numeric, categorical = model_columns(spec)
    ours, theirs = judged["candidate"], judged.get("champion")
    baselines = recorded_baselines(candidate.run_metrics)
    gates = [
        integrity,
        signature_gate(candidate.signature_inputs, numeric, categorical),
        metric_gate(
            metric, ours.overall.get(metric), theirs.overall.get(metric) if theirs else None, policy.min_improvement
        ),
        slice_gate(
            metric,
            ours.slices,
            theirs.slices if theirs else None,
            policy.max_slice_regression,
            noise,
            policy.slice_alpha,
        ),
        baseline_gate(metric, ours.overall.get(metric), baselines, policy.min_baseline_margin),
        latency_gate(p99, policy.latency_budget_ms),
    ]
    clock["total"] = time.perf_counter() - began
    figures = {
        "candidate": ours.overall,
        "champion": theirs.overall if theirs else None,
        "baselines": baselines,
        "latency_ms": {"p50": round(p50, 3), "p99": round(p99, 3)},
        "slices": {"candidate": ours.slices, "champion": theirs.slices if theirs else None, "gain_se": noise},
    }
    return PromotionReport(
        usecase=spec.name,
        model=name,
        candidate=str(version),
        champion=champion,
        metric=metric,
        holdout={"start": start.isoformat(), "end": end.isoformat()},
        rows=len(frame),
        gates=gates,
        figures=figures,
        seconds={k: round(v, 3) for k, v in clock.items()},
    )


def report_key_of(usecase: str, version: str) -> str:
    return f"registry/{usecase}/promotions/v{version}.json"


def report_key(spec: UseCase, version: str) -> str:
    return report_key_of(spec.name, version)


def record_verdict(spec: UseCase, settings: Settings, storage: Storage, report: PromotionReport) -> str:
    """Store the report (`registry/<use case>/promotions/v<version>.json`) and tag the version with the verdict."""
    key = report_key(spec, report.candidate)
    storage.write_bytes(key, json.dumps(report.as_dict(), indent=2, default=str).encode())
    summary = "; ".join(f"{g.name}: {g.detail}" for g in report.failed)[:4000]
    tags = {
        "promotion.status": "passed" if report.passed else "rejected",
        "promotion.gates": ",".join(f"{g.name}={'pass' if g.passed else 'fail'}" for g in report.gates),
        "promotion.reasons": summary or "all gates passed",
        "promotion.against": report.champion or "none",
        "promotion.report": storage.uri(key),
    }
    client = registry_client(settings.tracking_uri)
    for name, value in tags.items():
        client.set_model_version_tag(report.model, report.candidate, name, value)
    audit.record(
        "promotion",
        spec.name,
        f"{report.model} v{report.candidate} {tags['promotion.status']}: {tags['promotion.reasons']}",
        versions={"model": report.model, "version": report.candidate, "champion": report.champion},
        details={"gates": [g.as_dict() for g in report.gates], "report": storage.uri(key)},
        settings=settings,
    )
    return key


def promote(settings: Settings, storage: Storage, verdict: dict[str, Any], actor: str) -> dict[str, Any]:
    """Move the alias a passed verdict (a stored report) names to its candidate; returns the recorded move.

    Refuses a verdict that failed, or one judged against a champion that has changed since.
    """
    client = registry_client(settings.tracking_uri)
    model, version = verdict["model"], verdict["candidate"]
    if not verdict.get("passed"):
        raise PromotionError(f"{model} v{version} did not pass its gates: it cannot be promoted")
    if alias_version(client, model, CHAMPION) != verdict["champion"]:
        raise PromotionError(
            f"{model} v{version} was judged against champion v{verdict['champion']}, but the champion is now "
            f"v{alias_version(client, model, CHAMPION)}: judge it again"
        )
    against = f"v{verdict['champion']}" if verdict["champion"] else "no champion"
    move = AliasMove(
        model=model,
        alias=verdict["target_alias"],
        version=version,
        previous=None,
        actor=actor,
        reason=f"promotion gates passed against {against}",
        details={"gates": verdict["gates"], "report": report_key_of(verdict["usecase"], version)},
    )
    recorded = move_alias(client, storage, move)
    if move.alias == CHAMPION:  # a first champion: its drift reference, as `crown` stores one
        from aerodrome.registry.decisions import store_reference

        store_reference(settings, storage, model, version)
    return recorded


def apply_decision(
    spec: UseCase, settings: Settings, storage: Storage, report: PromotionReport, actor: str
) -> dict[str, Any] | None:
    """Record the verdict; a pass also moves the alias. Returns the alias move, or None when rejected."""
    record_verdict(spec, settings, storage, report)
    return promote(settings, storage, report.as_dict(), actor) if report.passed else None
