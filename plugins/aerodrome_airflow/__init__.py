"""Airflow adapters for the aerodrome library: the public API for hand-written DAGs.

Operators (one library call each), the assets that connect the DAGs, helpers for a task's partition
and its events, and `tasks`, the TaskFlow-friendly library calls. Names load on first use, so
`import aerodrome_airflow` (or `from aerodrome_airflow import features_asset`) costs no operator,
provider or library import at DAG parse time. Conventions: docs/authoring.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    # assets: `<zone>/<usecase>`, events keyed by day (`YYYY-MM-DD`) or version (`v<N>`)
    "zone_asset": "assets",
    "raw_asset": "assets",
    "validated_asset": "assets",
    "features_asset": "assets",
    "retrain_asset": "assets",
    "candidate_asset": "assets",
    "challenger_asset": "assets",
    "champion_asset": "assets",
    # partition stages
    "UseCaseOperator": "operators",
    "IngestPartitionOperator": "operators",
    "ValidatePartitionOperator": "operators",
    "PublishFeaturesOperator": "operators",
    "SweepPartitionsOperator": "operators",
    "AnnouncePartitionsOperator": "operators",
    # training and the registry
    "PlanTrainingWindowOperator": "candidates",
    "AnnounceCandidateOperator": "candidates",
    "LocalTrainingOperator": "training",
    "TrainingBackend": "training",
    "trainer_arguments": "training",
    "TrainingPodOperator": "k8s",
    "JudgeCandidateOperator": "promotion",
    "MoveAliasOperator": "promotion",
    # rollout and monitoring
    "CanaryStepOperator": "canary",
    "CrownChallengerOperator": "canary",
    "RollbackCanaryOperator": "canary",
    "RestoreChampionOperator": "canary",
    "ABTestOperator": "abtest",
    "ApplyABDecisionOperator": "abtest",
    "CheckDriftOperator": "drift",
    "CanaryWindowTrigger": "triggers",
    # helpers for a task of your own
    "partition_day": "operators",
    "announce": "operators",
    "form_param": "operators",
    "fail_without_retry": "operators",
    "build_usecase_dags": "dag_factory",
}
_MODULES = {"tasks"}

__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return import_module(f"aerodrome_airflow.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aerodrome_airflow' has no attribute {name!r}")
    return getattr(import_module(f"aerodrome_airflow.{module}"), name)


def __dir__() -> list[str]:
    return __all__
