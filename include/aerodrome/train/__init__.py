"""Training: the trainer entrypoint's library. A use case's training set, split by time, fitted, judged, registered.

`train_model` builds the training set (Feast point-in-time join), splits it by time (train /
validation / recent holdout), fits XGBoost or a PyTorch MLP as the spec says (CUDA when present),
evaluates overall and per slice, and logs everything to MLflow, registering a version with alias
`candidate`. Names are loaded on first use: importing this package stays cheap, and xgboost, torch
and mlflow are imported only by the calls that need them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "TrainingResult": "run",
    "train_model": "run",
    "TimeSplit": "split",
    "plan_split": "split",
    "FeatureEncoding": "inputs",
    "LeakageError": "inputs",
    "TrainingError": "inputs",
    "check_no_leakage": "inputs",
    "leaky_columns": "inputs",
    "model_columns": "inputs",
    "Evaluation": "evaluate",
    "evaluate": "evaluate",
    "DataFingerprint": "lineage",
    "data_fingerprint": "lineage",
    "Predictor": "predictor",
    "load_predictor": "predictor",
    "CANDIDATE_ALIAS": "tracking",
    "model_name": "tracking",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aerodrome.train' has no attribute {name!r}")
    return getattr(import_module(f"aerodrome.train.{module}"), name)
