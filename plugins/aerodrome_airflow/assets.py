"""Asset names that connect the per-use-case DAGs (ingest -> validate -> features -> train)."""

from __future__ import annotations

from airflow.sdk import Asset


def _zone_asset(zone: str, usecase: str) -> Asset:
    return Asset(name=f"{zone}/{usecase}", uri=f"x-aerodrome://{zone}/{usecase}", group="aerodrome")


def raw_asset(usecase: str) -> Asset:
    return _zone_asset("raw", usecase)


def validated_asset(usecase: str) -> Asset:
    return _zone_asset("validated", usecase)


def features_asset(usecase: str) -> Asset:
    return _zone_asset("features", usecase)


def retrain_asset(usecase: str) -> Asset:
    """Set by the drift check when drift exceeds the policy; schedules the training DAG."""
    return _zone_asset("retrain_requested", usecase)
