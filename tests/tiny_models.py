"""Small real models registered through the real trainer's MLflow path, for tests of signing and auditing.

A 5-round XGBoost regressor on 200 synthetic rows, logged and registered by `log_candidate` (the
function the trainer uses) into a SQLite MLflow store: seconds, not the minutes of a flights model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from aerodrome.settings import Settings
from aerodrome.train.inputs import FeatureEncoding
from aerodrome.train.tracking import RunRecord, log_candidate
from aerodrome.usecase import UseCase, load_usecase
from conftest import ROOT

SPEC: UseCase = load_usecase(ROOT / "include/usecases/store_demand")


def settings_in(root: Path) -> Settings:
    """Settings of a fresh data root with its own SQLite MLflow store."""
    return Settings(
        data_root=str(root / "data"),
        usecases_dir=ROOT / "include/usecases",
        feature_repo=str(root / "repo"),
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
    )


def register_tiny_model(settings: Settings, seed: int = 0) -> str:
    """Train and register one version of `store_demand` (alias `candidate`); returns its version."""
    from aerodrome.train.xgb import train_xgboost

    rng = np.random.default_rng(seed)
    numeric = ["a", "b"]
    frame = pd.DataFrame({numeric[0]: rng.normal(size=200), numeric[1]: rng.normal(size=200)})
    target = frame[numeric[0]] * 2 + rng.normal(scale=0.1, size=200)
    encoding = FeatureEncoding.fit(frame, numeric, [])
    predictor, _ = train_xgboost(
        "regression", encoding, (frame, target.to_numpy()), (frame, target.to_numpy()), {"n_estimators": 5}, seed
    )
    record = RunRecord(f"tiny-{seed}", {"seed": seed}, {"mae": float(np.abs(target).mean())}, {})
    return log_candidate(settings, SPEC, record, predictor, frame.head(5)).version


def stored_model_folder(settings: Settings, version: str) -> Path:
    """The version's model folder in the artifact store (local files), as the registry points at it."""
    from aerodrome.registry.aliases import registry_client

    uri = registry_client(settings.tracking_uri).get_model_version_download_uri(SPEC.name, version)
    return Path(uri.removeprefix("file://"))


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
