"""Asset names that connect the per-use-case DAGs (ingest -> validate -> features -> train)."""

from __future__ import annotations

from airflow.sdk import Asset


def raw_asset(usecase: str) -> Asset:
    return Asset(name=f"raw/{usecase}", uri=f"x-aerodrome://raw/{usecase}", group="aerodrome")


def validated_asset(usecase: str) -> Asset:
    return Asset(name=f"validated/{usecase}", uri=f"x-aerodrome://validated/{usecase}", group="aerodrome")


def features_asset(usecase: str) -> Asset:
    return Asset(name=f"features/{usecase}", uri=f"x-aerodrome://features/{usecase}", group="aerodrome")
