"""Asset names that connect the per-use-case DAGs (ingest -> validate -> features -> train)."""

from __future__ import annotations

from airflow.sdk import Asset


def zone_asset(zone: str, usecase: str) -> Asset:
    """The asset of one storage zone of a use case: `<zone>/<usecase>`, e.g. `scores/flight_delay`."""
    return Asset(name=f"{zone}/{usecase}", uri=f"x-aerodrome://{zone}/{usecase}", group="aerodrome")


def raw_asset(usecase: str) -> Asset:
    return zone_asset("raw", usecase)


def validated_asset(usecase: str) -> Asset:
    return zone_asset("validated", usecase)


def features_asset(usecase: str) -> Asset:
    return zone_asset("features", usecase)


def retrain_asset(usecase: str) -> Asset:
    """Train on the week in the partition key now: set by the sweep (a week that cannot complete) or drift."""
    return zone_asset("retrain_requested", usecase)


def candidate_asset(usecase: str) -> Asset:
    """A training run registered a new MLflow version (alias `candidate`); the event carries the version."""
    return zone_asset("candidate", usecase)


def challenger_asset(usecase: str) -> Asset:
    """A version passed its promotion gates and took the alias `challenger` (keyed `v<version>`)."""
    return zone_asset("challenger", usecase)


def champion_asset(usecase: str) -> Asset:
    """The alias `champion` moved: the version in the key now serves all traffic."""
    return zone_asset("champion", usecase)
