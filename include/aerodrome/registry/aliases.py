"""Every alias move as an append-only, hash-chained record, because MLflow keeps no alias history.

Records live under `registry/<use case>/alias_moves/<seq>.json` in the data root: who moved which alias
(a DAG run, a user), when, from which version to which, and why (the gate results). Each record holds
the sha256 of the one before (`aerodrome.security.chain`), so an edited or removed record breaks the
chain at that point. Every move also goes to the platform's audit trail (`aerodrome.security.audit`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from aerodrome.errors import AerodromeError
from aerodrome.security import audit
from aerodrome.security.chain import GENESIS, first_break, seal
from aerodrome.storage import Storage

CANDIDATE, CHALLENGER, CHAMPION, REJECTED = "candidate", "challenger", "champion", "rejected"


class AliasLogError(AerodromeError):
    """The alias history was altered, or a record could not be appended."""


@dataclass(frozen=True)
class AliasMove:
    """One alias move of a registered model. `version` None = the alias was removed."""

    model: str
    alias: str
    version: str | None
    previous: str | None
    actor: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def _prefix(usecase: str) -> str:
    return f"registry/{usecase}/alias_moves"


def alias_history(storage: Storage, usecase: str) -> list[dict[str, Any]]:
    """Every recorded move of the use case's aliases, oldest first."""
    keys = sorted(k for k in storage.list(_prefix(usecase)) if k.endswith(".json"))
    return [json.loads(storage.read_bytes(k)) for k in keys]


def append_move(storage: Storage, usecase: str, move: AliasMove) -> dict[str, Any]:
    """Append `move` after the newest record (never overwriting one); returns the stored record."""
    history = alias_history(storage, usecase)
    seq = len(history) + 1
    record = seal(asdict(move), seq, history[-1]["sha256"] if history else GENESIS)
    key = f"{_prefix(usecase)}/{seq:08d}.json"
    if storage.exists(key):
        raise AliasLogError(f"{storage.uri(key)} exists already: another move was recorded at the same time; retry")
    storage.write_bytes(key, json.dumps(record, indent=2, sort_keys=True).encode())
    release = move.alias == CHAMPION and move.version is not None
    audit.record(
        "model_release" if release else "alias_move",
        usecase,
        f"{move.model} @{move.alias}: v{move.previous} -> v{move.version} ({move.reason})",
        actor=move.actor,
        versions={"model": move.model, "alias": move.alias, "version": move.version, "previous": move.previous},
        details={"history": storage.uri(key), **move.details},
    )
    return record


def verify_history(storage: Storage, usecase: str) -> int | None:
    """The sequence number of the first record that breaks the chain (edited, missing, reordered), or None."""
    broken = first_break(alias_history(storage, usecase))
    return broken.position if broken else None


def registry_client(tracking_uri: str) -> Any:
    """An MLflow client on one URI for tracking and registry (the settings' `tracking_uri`)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def alias_version(client: Any, model: str, alias: str) -> str | None:
    """The version `alias` of `model` points at now, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def move_alias(client: Any, storage: Storage, move: AliasMove) -> dict[str, Any]:
    """Point `move.alias` of `move.model` at `move.version` in MLflow (or remove it), then record the move.

    `move.previous` is filled from the registry as it was just before the move.
    """
    previous = alias_version(client, move.model, move.alias)
    if move.version is None:
        if previous is not None:
            client.delete_registered_model_alias(move.model, move.alias)
    else:
        client.set_registered_model_alias(move.model, move.alias, move.version)
    usecase = move.model
    return append_move(storage, usecase, AliasMove(**{**asdict(move), "previous": previous}))
