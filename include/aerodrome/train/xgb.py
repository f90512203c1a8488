"""XGBoost flavor: `hist` trees on the GPU when one is present (else every allowed CPU), early stopping.

Categories go in as XGBoost's native categorical features (codes, unknown = missing), numbers as
float32 with NaN for missing values: no one-hot blow-up, no imputation. The saved model is trimmed to
the best iteration, so serving needs no iteration range. Importing this module imports xgboost:
`aerodrome.train` loads it only for an xgboost model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from aerodrome.train.inputs import UNKNOWN, DeviceUnavailableError, FeatureEncoding, Frame, TrainingError, row_count
from aerodrome.train.predictor import FitReport, Predictor, check_params, cpu_threads, nvidia_gpu_present

MODEL_FILE = "model.ubj"
DEFAULTS: dict[str, Any] = {
    "n_estimators": 400,
    "learning_rate": 0.05,
    "max_depth": 6,
    "min_child_weight": 5.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "max_bin": 256,
    "early_stopping_rounds": 30,
}
RESERVED = {
    "objective": "from target.task",
    "eval_metric": "from target.task",
    "device": "--device",
    "seed": "--seed",
    "random_state": "--seed",
    "nthread": "the CPUs allowed to the process",
    "n_jobs": "the CPUs allowed to the process",
    "tree_method": "always hist",
}
OBJECTIVES = {"classification": ("binary:logistic", "logloss"), "regression": ("reg:squarederror", "rmse")}
CURVES = {"classification": "validation_log_loss", "regression": "validation_rmse"}
PROGRESS_EVERY = 50


def xgboost_device(requested: str = "auto") -> str:
    """`cuda` when asked for or (auto) when this xgboost build has CUDA and a GPU is visible; else `cpu`."""
    cuda = bool(xgb.build_info().get("USE_CUDA")) and nvidia_gpu_present()
    if requested == "cuda" and not cuda:
        raise DeviceUnavailableError(
            "--device cuda: no NVIDIA GPU is visible or this xgboost build has no CUDA support"
        )
    return "cuda" if requested in ("cuda", "auto") and cuda else "cpu"


def feature_matrix(encoding: FeatureEncoding, frame: Frame) -> np.ndarray:
    """Numbers, then category codes as XGBoost wants them (0-based, unknown = NaN), as float32."""
    codes = encoding.codes(frame).astype(np.float32) - 1
    codes[codes == UNKNOWN - 1] = np.nan
    return np.hstack([encoding.numbers(frame), codes])


def feature_types(encoding: FeatureEncoding) -> list[str]:
    return ["q"] * len(encoding.numeric) + ["c"] * len(encoding.categories)


class XGBoostPredictor(Predictor):
    flavor = "xgboost"

    def __init__(self, task: str, encoding: FeatureEncoding, booster: Any) -> None:
        super().__init__(task, encoding)
        self.booster = booster

    def predict(self, frame: Frame) -> np.ndarray:
        if row_count(frame) == 0:
            return np.zeros(0)
        return np.asarray(self.booster.inplace_predict(feature_matrix(self.encoding, frame)), dtype=np.float64)

    def set_threads(self, threads: int) -> None:
        self.booster.set_param({"nthread": threads})

    def save_weights(self, folder: Path) -> dict[str, Any]:
        (folder / MODEL_FILE).write_bytes(bytes(self.booster.save_raw("ubj")))
        return {"file": MODEL_FILE, "rounds": self.booster.num_boosted_rounds()}

    @classmethod
    def load(cls, folder: Path, task: str, encoding: FeatureEncoding, config: dict[str, Any]) -> XGBoostPredictor:
        booster = xgb.Booster()
        booster.load_model(bytearray((folder / config["file"]).read_bytes()))
        booster.set_param({"device": "cpu", "nthread": cpu_threads()})
        return cls(task, encoding, booster)


def resolve_params(params: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """XGBoost parameters from the spec/CLI over the defaults: (booster params, rounds, early-stopping rounds)."""
    check_params("xgboost", params, RESERVED)
    merged = {**DEFAULTS, **params}
    n_estimators = merged.pop("n_estimators")
    rounds = int(merged.pop("num_boost_round", n_estimators))
    patience = int(merged.pop("early_stopping_rounds"))
    if rounds < 1 or patience < 1:
        raise TrainingError("xgboost: n_estimators and early_stopping_rounds must be at least 1")
    return merged, rounds, patience


def train_xgboost(
    task: str,
    encoding: FeatureEncoding,
    train: tuple[pd.DataFrame, np.ndarray],
    validation: tuple[pd.DataFrame, np.ndarray],
    params: dict[str, Any],
    seed: int,
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> tuple[XGBoostPredictor, FitReport]:
    """Fit on `train`, stop early on `validation` (log-loss or RMSE); deterministic for a seed and CPU count."""
    started = time.perf_counter()
    booster_params, rounds, patience = resolve_params(params)
    objective, metric = OBJECTIVES[task]
    device = xgboost_device(device)
    threads = cpu_threads()
    booster_params.update(
        objective=objective, eval_metric=metric, tree_method="hist", device=device, seed=seed, nthread=threads
    )
    names, types = encoding.columns, feature_types(encoding)
    max_bin = int(booster_params.get("max_bin", DEFAULTS["max_bin"]))
    dtrain = xgb.QuantileDMatrix(
        feature_matrix(encoding, train[0]),
        train[1],
        feature_names=names,
        feature_types=types,
        enable_categorical=True,
        max_bin=max_bin,
        nthread=threads,
    )
    dvalid = xgb.QuantileDMatrix(
        feature_matrix(encoding, validation[0]),
        validation[1],
        feature_names=names,
        feature_types=types,
        enable_categorical=True,
        ref=dtrain,
        nthread=threads,
    )
    history: dict[str, dict[str, list[float]]] = {}
    callbacks = [_Progress(progress, metric)] if progress else []
    booster = xgb.train(
        booster_params,
        dtrain,
        num_boost_round=rounds,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=patience,
        evals_result=history,
        verbose_eval=False,
        callbacks=callbacks,
    )
    best = int(booster.best_iteration)
    iterations = booster.num_boosted_rounds()
    booster = booster[: best + 1]
    booster.set_param({"device": "cpu"})  # score and serve on the host; the GPU was for fitting
    report = FitReport(
        flavor="xgboost",
        device=device,
        params={**booster_params, "n_estimators": rounds, "early_stopping_rounds": patience},
        best_iteration=best,
        iterations=iterations,
        curve={CURVES[task]: [float(v) for v in history["validation"][metric]]},
        seconds=time.perf_counter() - started,
    )
    return XGBoostPredictor(task, encoding, booster), report


class _Progress(xgb.callback.TrainingCallback):
    """A progress line every `PROGRESS_EVERY` rounds."""

    def __init__(self, progress: Callable[[str], None], metric: str) -> None:
        super().__init__()
        self.progress, self.metric = progress, metric

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        if (epoch + 1) % PROGRESS_EVERY == 0:
            loss = evals_log["validation"][self.metric][-1]
            self.progress(f"xgboost round {epoch + 1}: validation {self.metric} {loss:.5f}")
        return False


fit = train_xgboost  # the flavor interface of aerodrome.train.run.fit
