"""Features: compute point-in-time correct feature rows, serve them through Feast, build training sets.

The step of one day, `publish_day`: `compute_features` (offline Parquet) -> `apply_definitions` (only
when the definitions changed) -> `materialize` (online store) -> `check_freshness`. Training reads them back
with `build_training_set`; serving with `online_features`. Names are loaded on first use, so
importing this package stays cheap (Feast is imported only by the calls that need it).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "FeatureWriteResult": "offline",
    "compute_features": "offline",
    "compute_features_range": "offline",
    "read_validated": "offline",
    "apply_definitions": "repo",
    "definitions": "repo",
    "feature_refs": "repo",
    "feature_repo": "repo",
    "feature_store": "repo",
    "project_name": "repo",
    "FreshnessResult": "online",
    "MaterializeResult": "online",
    "check_freshness": "online",
    "materialize": "online",
    "online_features": "online",
    "PublishedDay": "publish",
    "publish_day": "publish",
    "FeatureJoinError": "training",
    "TrainingSet": "training",
    "build_training_set": "training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aerodrome.features' has no attribute {name!r}")
    return getattr(import_module(f"aerodrome.features.{module}"), name)
