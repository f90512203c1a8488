"""Trainer figures on the 2013 flights year: wall time per flavor, holdout quality, MLflow's share.

Setup (not timed): validated partitions for the year in a temporary data root, the features backfill,
and a fresh MLflow SQLite store under it (its one-off schema creation is reported on its own). Then:
  trainer       `python -m aerodrome.train.entrypoint --usecase flight_delay --start 2013-01-01
                --end 2014-01-01 --holdout-start 2013-10-01` as a subprocess on the local CPU, once per
                flavor (xgboost: the spec's params; pytorch: the MLP defaults): wall time of the command
                (imports included) and the fit alone, from its JSON result line;
  quality       holdout (Oct-Dec) ROC-AUC, PR-AUC (baseline: the positive rate, i.e. chance) and the
                weakest origin / carrier slice, per flavor;
  MLflow        logging + registration (params, metrics, curves, documents, pyfunc model with
                signature and input example, register, alias) as a share of the training run;
  fit baseline  bare `xgboost.train` on the same float32 arrays, same parameters and number of rounds
                (no early stopping, no encoding): the platform's fit / bare fit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from aerodrome.features import build_training_set, compute_features_range
from aerodrome.features.builders import builder_for
from aerodrome.settings import PROJECT_ROOT, Settings
from aerodrome.storage import LocalStorage
from aerodrome.usecase import load_usecase

from bench.bench_features import publish_year

USECASE = "flight_delay"
FLAVORS = ("xgboost", "pytorch")
LOG_MODEL_DEFAULT_S = 8.5  # stack notes: log_model inferring pip requirements (8-9 s)


def _environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AERODROME_DATA_ROOT=settings.data_root,
        AERODROME_FEATURE_REPO=str(settings.feature_repo),
        AERODROME_USECASES_DIR=str(settings.usecases_dir),
        MLFLOW_TRACKING_URI=settings.tracking_uri,
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    env.pop("AERODROME_FEATURE_NAMESPACE", None)
    return env


def _trainer(settings: Settings, flavor: str, start: str, end: str, holdout: str | None) -> tuple[dict, float]:
    args = ["--usecase", USECASE, "--start", start, "--end", end, "--flavor", flavor]
    args += ["--holdout-start", holdout] if holdout else []
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "aerodrome.train.entrypoint", *args],
        capture_output=True,
        text=True,
        env=_environment(settings),
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"trainer ({flavor}) failed: {done.stderr[-2000:]}")
    print("\n".join(line for line in done.stdout.splitlines() if line.startswith("[train")), flush=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def _evaluation(settings: Settings, run_id: str) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "evaluation.json", tmp)
        return json.loads(Path(path).read_text())


def _weakest(evaluation: dict, column: str) -> tuple[str, float, str]:
    slices = evaluation["holdout"]["slices"].get(column, {})
    scored = {v: m["roc_auc"] for v, m in slices.items() if "roc_auc" in m}
    value = min(scored, key=scored.get)
    listing = ", ".join(f"{v} {a:.3f}" for v, a in sorted(scored.items(), key=lambda kv: kv[1]))
    return value, scored[value], listing


def _flavor_rows(settings: Settings, flavor: str, result: dict, wall: float, full: bool) -> list[dict]:
    seconds, metrics = result["seconds"], result["metrics"]
    evaluation = _evaluation(settings, result["run_id"])
    fit = evaluation["fit"]
    mlflow_s = seconds["mlflow_log"] + seconds["mlflow_register"]
    rows = [
        {
            "name": f"{flavor}: trainer command, wall (imports included)",
            "value": round(wall, 1),
            "unit": "s",
            "note": f"training set {seconds['training_set']:.1f} s, fit {seconds['fit']:.1f} s, evaluate "
            f"{seconds['evaluate']:.1f} s, MLflow {mlflow_s:.2f} s (+{seconds['mlflow_import']:.1f} s import); "
            f"{result['rows']['train']:,} train / {result['rows']['validation']:,} validation / "
            f"{result['rows']['holdout']:,} holdout rows; device {result['device']}",
        },
        {
            "name": f"{flavor}: fit (training only)",
            "value": round(seconds["fit"], 1),
            "unit": "s",
            "note": f"best iteration {fit['best_iteration']} of {fit['iterations']} "
            f"({'rounds' if flavor == 'xgboost' else 'epochs'}), early stopping on validation",
        },
        {
            "name": f"{flavor}: holdout ROC-AUC" + (" (Oct-Dec)" if full else ""),
            "value": round(metrics["roc_auc"], 4),
            "unit": "",
            "goal": ">= 0.70" if full else None,
            "note": f"log-loss {metrics['log_loss']:.4f}; features known before scheduled departure only",
        },
        {
            "name": f"{flavor}: holdout PR-AUC",
            "value": round(metrics["pr_auc"], 4),
            "unit": "",
            "baseline": round(metrics["positive_rate"], 4),
            "note": "baseline = positive rate (a random ranking's PR-AUC)",
        },
    ]
    for column in ("origin", "carrier"):
        value, auc, listing = _weakest(evaluation, column)
        rows.append(
            {
                "name": f"{flavor}: weakest {column} slice ROC-AUC ({value})",
                "value": round(auc, 4),
                "unit": "",
                "note": listing
                if column == "origin"
                else f"{len(listing.split(','))} carriers; lowest: " + ", ".join(listing.split(", ")[:4]),
            }
        )
    rows.append(
        {
            "name": f"{flavor}: MLflow logging + registration, share of the training run",
            "value": round(100 * mlflow_s / seconds["total"], 2),
            "unit": "%",
            "goal": "< 10",
            "note": f"{mlflow_s:.2f} s of {seconds['total']:.1f} s (log {seconds['mlflow_log']:.2f}, register + alias "
            f"{seconds['mlflow_register']:.3f}); with `import mlflow` ({seconds['mlflow_import']:.1f} s): "
            f"{100 * (mlflow_s + seconds['mlflow_import']) / wall:.1f} % of the command's wall time; log_model "
            f"with inferred requirements alone costs ~{LOG_MODEL_DEFAULT_S:.0f} s (stack notes)",
        }
    )
    return rows


def _bare_fit_rows(spec, settings: Settings, storage: LocalStorage, start, end, holdout, rounds: int) -> list[dict]:
    """The platform's xgboost fit vs bare xgboost.train on the same arrays (in this process)."""
    import numpy as np
    import xgboost as xgb
    from aerodrome.features.builders.base import EVENT_TIMESTAMP
    from aerodrome.train.inputs import FeatureEncoding, model_columns
    from aerodrome.train.predictor import cpu_threads
    from aerodrome.train.split import plan_split
    from aerodrome.train.xgb import feature_matrix, feature_types, resolve_params, train_xgboost

    training = build_training_set(spec, settings, storage, start, end)
    split = plan_split(builder_for(spec).clock, start, end, holdout)
    masks = split.masks(training.frame[EVENT_TIMESTAMP])
    parts = {p: training.frame[m].reset_index(drop=True) for p, m in masks.items()}
    labels = {p: training.frame[training.label].to_numpy()[m] for p, m in masks.items()}
    numeric, categorical = model_columns(spec)
    encoding = FeatureEncoding.fit(parts["train"], numeric, categorical)
    params = {**spec.model.params, "n_estimators": rounds, "early_stopping_rounds": rounds}
    started = time.perf_counter()
    train_xgboost(
        "classification",
        encoding,
        (parts["train"], labels["train"]),
        (parts["validation"], labels["validation"]),
        params,
        42,
        "cpu",
    )
    ours = time.perf_counter() - started
    x_train = feature_matrix(encoding, parts["train"])
    booster_params, _, _ = resolve_params(params)
    booster_params.update(
        objective="binary:logistic", eval_metric="logloss", tree_method="hist", seed=42, nthread=cpu_threads()
    )
    started = time.perf_counter()
    dtrain = xgb.QuantileDMatrix(
        x_train, labels["train"], feature_types=feature_types(encoding), enable_categorical=True, max_bin=256
    )
    xgb.train(booster_params, dtrain, num_boost_round=rounds)
    bare = time.perf_counter() - started
    return [
        {
            "name": f"xgboost fit, {rounds} rounds: platform vs bare xgboost.train",
            "value": round(ours, 1),
            "unit": "s",
            "baseline": round(bare, 1),
            "note": f"same {x_train.shape[0]:,} x {x_train.shape[1]} float32 arrays and parameters; the platform also "
            f"encodes the frame and scores the validation part each round; {np.isnan(x_train).mean():.1%} missing",
        }
    ]


def run(quick: bool = False) -> list[dict]:
    spec = load_usecase(PROJECT_ROOT / "include" / "usecases" / USECASE)
    clock = builder_for(spec).clock
    first = date(2013, 1, 1)
    last = date(2013, 3, 31) if quick else date(2013, 12, 31)
    start, end = first.isoformat(), ("2013-04-01" if quick else "2014-01-01")
    holdout = None if quick else "2013-10-01"
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="aerodrome-bench-train-") as tmp:
        storage = LocalStorage(Path(tmp, "data"))
        settings = Settings(
            data_root=storage.root,
            usecases_dir=PROJECT_ROOT / "include" / "usecases",
            feature_repo=f"{tmp}/repo",
        )
        flights = publish_year(storage, spec, last)
        compute_features_range(spec, storage, first, last)
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        started = time.perf_counter()
        from aerodrome.train.tracking import tracking_uri

        with tracking_uri(settings.tracking_uri):
            from mlflow import MlflowClient

            MlflowClient(tracking_uri=settings.tracking_uri).search_experiments()
        results.append(
            {
                "name": "MLflow SQLite store creation (once per store, not per run)",
                "value": round(time.perf_counter() - started, 2),
                "unit": "s",
                "note": f"schema migrations; setup for {flights:,} flights, {start} .. {end}",
            }
        )
        fitted = {}
        for flavor in FLAVORS:
            result, wall = _trainer(settings, flavor, start, end, holdout)
            fitted[flavor] = result
            results += _flavor_rows(settings, flavor, result, wall, full=not quick)
        rounds = _evaluation(settings, fitted["xgboost"]["run_id"])["fit"]["iterations"]
        holdout_at = clock.start_of(date.fromisoformat(holdout)).to_pydatetime() if holdout else None
        results += _bare_fit_rows(
            spec,
            settings,
            storage,
            clock.start_of(first).to_pydatetime(),
            clock.start_of(date.fromisoformat(end)).to_pydatetime(),
            holdout_at,
            rounds,
        )
    return results


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
