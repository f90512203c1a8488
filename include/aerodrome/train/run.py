"""One training of a use case's model: training set -> time split -> fit -> evaluate -> MLflow candidate.

`train_model` is what the trainer entrypoint runs (in a pod or a local subprocess) and what tests call
in-process. MLflow metric names: the holdout's unprefixed (`roc_auc`, `pr_auc`, `log_loss` or `mae`,
`rmse`; per slice `slice.<column>.<value>.<metric>`), the validation part's under `validation.`; the
validation curve per round/epoch as `validation_log_loss` / `validation_rmse` with steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib import import_module
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from aerodrome.features.builders import builder_for
from aerodrome.features.builders.base import EVENT_TIMESTAMP
from aerodrome.features.training import build_training_set
from aerodrome.registry.aliases import AliasMove, append_move
from aerodrome.settings import Settings
from aerodrome.storage import Storage
from aerodrome.train.baselines import naive_baselines
from aerodrome.train.evaluate import METRICS, Evaluation, evaluate, score
from aerodrome.train.inputs import FeatureEncoding, TrainingError, check_no_leakage, leaky_columns, model_columns
from aerodrome.train.lineage import airflow_origin, code_version, data_fingerprint, training_days
from aerodrome.train.predictor import FitReport, Predictor
from aerodrome.train.split import PARTS, TimeSplit, plan_split
from aerodrome.train.tracking import RunRecord, log_candidate
from aerodrome.usecase import UseCase

DEFAULT_SEED = 42
EXAMPLE_ROWS = 5
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainingResult:
    """What a training produced: the registered version and the holdout figures (the entrypoint's JSON line)."""

    run_id: str
    model_name: str
    version: str
    alias: str
    model_uri: str
    flavor: str
    device: str
    metrics: dict[str, float]
    data_fingerprint: str
    split: dict[str, str]
    rows: dict[str, int]
    seconds: dict[str, float]

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def model_params(spec: UseCase, flavor: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The spec's `model.params` when it trains this flavor, then the overrides (e.g. from the UI)."""
    base = dict(spec.model.params) if flavor == spec.model.flavor else {}
    return {**base, **(overrides or {})}


FLAVOR_MODULES = {"xgboost": "aerodrome.train.xgb", "pytorch": "aerodrome.train.torch_mlp"}


def flavor_module(flavor: str) -> ModuleType:
    """The module of one flavor (`resolve_params`, `fit`); its library is imported only here."""
    if flavor not in FLAVOR_MODULES:
        raise TrainingError(f"unknown model flavor {flavor!r} (use {' or '.join(FLAVOR_MODULES)})")
    return import_module(FLAVOR_MODULES[flavor])


def check_flavor_params(flavor: str, params: dict[str, Any]) -> None:
    """Refuse an unknown flavor or parameter before any data is read (imports the flavor's library)."""
    flavor_module(flavor).resolve_params(params)


def fit(
    flavor: str,
    task: str,
    encoding: FeatureEncoding,
    train: tuple[pd.DataFrame, np.ndarray],
    validation: tuple[pd.DataFrame, np.ndarray],
    params: dict[str, Any],
    seed: int,
    device: str = "auto",
    progress: Progress | None = None,
) -> tuple[Predictor, FitReport]:
    """Fit one flavor (its library is imported only here)."""
    return flavor_module(flavor).fit(task, encoding, train, validation, params, seed, device, progress)


def _check_parts(task: str, split: TimeSplit, labels: dict[str, np.ndarray]) -> None:
    for part in PARTS:
        y = labels[part]
        if len(y) == 0:
            raise TrainingError(
                f"the {part} part ({split.as_params()}) holds no labelled event: widen the window or move the "
                f"holdout/validation start"
            )
        if task == "classification" and len(np.unique(y)) < 2:
            raise TrainingError(f"the {part} part holds only label {int(y[0])}: a classifier needs both classes")


def _description(spec: UseCase, split: TimeSplit, holdout: Evaluation, report: FitReport) -> str:
    task_metrics = METRICS[spec.target.task]
    figures = ", ".join(f"{m} {holdout.overall[m]:.4f}" for m in task_metrics if m in holdout.overall)
    worst = holdout.worst_slice(task_metrics[0])
    weakest = f"; weakest slice {worst[0]} ({worst[2]} {worst[1]:.4f})" if worst else ""
    return (
        f"{report.flavor} on {report.device}. Holdout {split.holdout_start:%Y-%m-%d} .. {split.end:%Y-%m-%d}: "
        f"{figures} over {int(holdout.overall['rows']):,} events{weakest}."
    )


def train_model(
    spec: UseCase,
    settings: Settings,
    storage: Storage,
    start: datetime,
    end: datetime,
    *,
    holdout_start: datetime | None = None,
    validation_start: datetime | None = None,
    seed: int = DEFAULT_SEED,
    flavor: str | None = None,
    params: dict[str, Any] | None = None,
    device: str = "auto",
    progress: Progress | None = None,
) -> TrainingResult:
    """Train on the events of `[start, end)` and register the model as the use case's `candidate`."""
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    task = spec.target.task
    flavor = flavor or spec.model.flavor
    params = model_params(spec, flavor, params)
    numeric, categorical = model_columns(spec)  # the leak guard runs before any data is read
    check_flavor_params(flavor, params)
    builder = builder_for(spec)
    split = plan_split(builder.clock, start, end, holdout_start, validation_start)

    clock = time.perf_counter()
    first_day = pd.Timestamp(split.start).tz_convert(builder.clock.tz).date()
    last_day = pd.Timestamp(split.end).tz_convert(builder.clock.tz).date()
    fingerprint = data_fingerprint(spec, storage, *training_days(first_day, last_day, builder.lookback_days))
    seconds["data_fingerprint"] = time.perf_counter() - clock
    say(
        f"data: {len(fingerprint.partitions)} validated partitions {fingerprint.first} .. {fingerprint.last}, "
        f"fingerprint {fingerprint.sha256[:12]}"
    )

    clock = time.perf_counter()
    training = build_training_set(spec, settings, storage, split.start, split.end)
    seconds["training_set"] = time.perf_counter() - clock
    check_no_leakage(spec, training.feature_columns)
    if list(training.feature_columns) != numeric:
        raise TrainingError(f"the training set's features {training.feature_columns} differ from the spec's {numeric}")
    say(
        f"training set: {training.rows_out:,} events x {len(numeric)} features in {seconds['training_set']:.1f} s "
        f"({training.unlabelled:,} without a label left out)"
    )

    frame = training.frame
    masks = split.masks(frame[EVENT_TIMESTAMP])
    all_labels = frame[training.label].to_numpy()
    parts = {part: frame[mask].reset_index(drop=True) for part, mask in masks.items()}
    labels = {part: all_labels[mask] for part, mask in masks.items()}
    _check_parts(task, split, labels)
    rows = {part: int(mask.sum()) for part, mask in masks.items()}
    say(
        "split: "
        + ", ".join(f"{p} {rows[p]:,}" for p in PARTS)
        + f" (validation from {split.validation_start:%Y-%m-%d %H:%M},"
        + f" holdout from {split.holdout_start:%Y-%m-%d %H:%M} UTC)"
    )

    encoding = FeatureEncoding.fit(parts["train"], numeric, categorical)
    predictor, report = fit(
        flavor,
        task,
        encoding,
        (parts["train"], labels["train"]),
        (parts["validation"], labels["validation"]),
        params,
        seed,
        device,
        say,
    )
    seconds["fit"] = report.seconds
    say(
        f"fit: {flavor} on {report.device} in {report.seconds:.1f} s, best iteration {report.best_iteration} "
        f"of {report.iterations}"
    )

    clock = time.perf_counter()
    holdout = evaluate(
        task, parts["holdout"], labels["holdout"], predictor.predict(parts["holdout"]), list(spec.model.slices)
    )
    validation = score(task, labels["validation"], predictor.predict(parts["validation"]))
    baselines = baseline_scores(spec, parts, labels, numeric)
    seconds["evaluate"] = time.perf_counter() - clock
    headline = {m: holdout.overall[m] for m in (*METRICS[task], "positive_rate") if m in holdout.overall}
    say("holdout: " + ", ".join(f"{k} {v:.4f}" for k, v in headline.items()))
    judged = spec.promotion.metric
    say(
        f"naive baselines on the holdout ({judged}): "
        + ", ".join(f"{name} {m[judged]:.4f}" for name, m in baselines.items() if judged in m)
    )

    version = code_version()
    features = {
        "numeric": list(encoding.numeric),
        "categorical": {c: len(v) for c, v in encoding.categories.items()},
        "refused": leaky_columns(spec),
    }
    record = run_record(
        spec, flavor, seed, split, fingerprint.sha256, version, report, rows, holdout, validation, features, seconds
    )
    record.metrics.update(
        {f"baseline.{name}.{metric}": value for name, m in baselines.items() for metric, value in m.items()}
    )
    record.documents.update(
        {
            "features.json": features,
            "data_manifest.json": fingerprint.manifest(),
            "evaluation.json": {
                "split": split.as_params(),
                "rows": rows,
                "holdout": {"overall": holdout.overall, "slices": holdout.slices},
                "validation": validation,
                "baselines": baselines,
                "fit": asdict(report),
            },
        }
    )
    example = encoding.model_input(parts["holdout"].head(EXAMPLE_ROWS))
    logged = log_candidate(settings, spec, record, predictor, example)
    origin = airflow_origin()
    actor = f"{origin['dag_id']} / {origin['run_id']}" if origin.get("run_id") else "trainer"
    move = AliasMove(logged.model_name, logged.alias, logged.version, logged.previous, actor, "registered by training")
    append_move(storage, spec.name, move)
    seconds.update({f"mlflow_{k}": v for k, v in logged.seconds.items()})
    seconds["total"] = time.perf_counter() - started
    say(
        f"registered {logged.model_name} version {logged.version} as @{logged.alias} (run {logged.run_id}); "
        f"MLflow {logged.seconds['log'] + logged.seconds['register']:.2f} s"
    )
    return TrainingResult(
        run_id=logged.run_id,
        model_name=logged.model_name,
        version=logged.version,
        alias=logged.alias,
        model_uri=logged.model_uri,
        flavor=flavor,
        device=report.device,
        metrics=headline,
        data_fingerprint=fingerprint.sha256,
        split=split.as_params(),
        rows={**rows, "unlabelled": training.unlabelled},
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )


def baseline_scores(
    spec: UseCase, parts: dict[str, pd.DataFrame], labels: dict[str, np.ndarray], numeric: list[str]
) -> dict[str, dict[str, float]]:
    """The task's naive baselines scored on the holdout (name -> metrics; `note` says what each used)."""
    found = naive_baselines(
        spec.target.task,
        parts["train"],
        labels["train"],
        parts["holdout"],
        labels["holdout"],
        numeric=numeric,
        series_keys=spec.entity_keys,
        timestamp=EVENT_TIMESTAMP,
    )
    return {b.name: score(spec.target.task, labels["holdout"], b.predictions) for b in found}


def run_record(
    spec: UseCase,
    flavor: str,
    seed: int,
    split: TimeSplit,
    fingerprint: str,
    version: str,
    report: FitReport,
    rows: dict[str, int],
    holdout: Evaluation,
    validation: dict[str, float],
    features: dict[str, Any],
    seconds: dict[str, float],
) -> RunRecord:
    """Params, metrics, tags and version tags of one training run."""
    numeric = features["numeric"]
    params = {
        **report.params,
        "usecase": spec.name,
        "flavor": flavor,
        "device": report.device,
        "seed": seed,
        **split.as_params(),
        "data_fingerprint": fingerprint,
        "code_version": version,
        "n_features": len(numeric) + len(features["categorical"]),
        "features": ",".join(numeric),
        "categorical": ",".join(features["categorical"]),
    }
    metrics = {
        **holdout.flat(),
        **{f"validation.{k}": v for k, v in validation.items()},
        **{f"split.{part}.rows": float(n) for part, n in rows.items()},
        "best_iteration": float(report.best_iteration),
        "iterations": float(report.iterations),
        **{f"seconds.{k}": v for k, v in seconds.items()},
    }
    tags = {
        "aerodrome.data_fingerprint": fingerprint,
        "aerodrome.code_version": version,
        "aerodrome.flavor": flavor,
        "aerodrome.device": report.device,
        "mlflow.note.content": _description(spec, split, holdout, report),
    }
    tags |= {f"aerodrome.airflow.{key}": value for key, value in airflow_origin().items()}
    if version.startswith("git:"):
        tags["mlflow.source.git.commit"] = version.removeprefix("git:").removesuffix("-dirty")
    judged = spec.promotion.metric
    version_tags = {
        "data_fingerprint": fingerprint,
        "code_version": version,
        "flavor": flavor,
        "window": f"{split.start.isoformat()} .. {split.end.isoformat()}",
        "holdout_start": split.holdout_start.isoformat(),
        **{f"airflow_{key}": value for key, value in airflow_origin().items() if key != "try_number"},
    }
    if judged in holdout.overall:
        version_tags[f"holdout_{judged}"] = f"{holdout.overall[judged]:.6f}"
    return RunRecord(
        run_name=f"{flavor}-{split.start:%Y%m%d}-{split.end:%Y%m%d}-seed{seed}",
        params=params,
        metrics=metrics,
        tags=tags,
        curves=report.curve,
        version_tags=version_tags,
    )
