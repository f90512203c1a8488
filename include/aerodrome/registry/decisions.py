"""What a canary decides, as alias moves: crown the challenger, reject it, or restore the last champion.

Every move goes through `move_alias`, so each lands in the hash-chained history with who and why.
The previous champion keeps its version (and its place in the history) for a rollback.
"""

from __future__ import annotations

import logging
from typing import Any

from aerodrome.errors import AerodromeError
from aerodrome.registry.aliases import (
    CHALLENGER,
    CHAMPION,
    REJECTED,
    AliasMove,
    alias_history,
    alias_version,
    move_alias,
    registry_client,
)
from aerodrome.security import audit
from aerodrome.settings import Settings
from aerodrome.storage import Storage

log = logging.getLogger(__name__)


class DecisionError(AerodromeError):
    """The registry is not in the state a decision expects (e.g. the challenger changed meanwhile)."""


def _expect_challenger(client: Any, model: str, version: str) -> None:
    current = alias_version(client, model, CHALLENGER)
    if current != version:
        raise DecisionError(f"{model} @challenger is v{current}, not v{version}: this canary is stale")


def crown(settings: Settings, storage: Storage, model: str, version: str, actor: str, reason: str) -> list[dict]:
    """The challenger passed every step: it becomes `champion`; `challenger` is removed."""
    client = registry_client(settings.tracking_uri)
    _expect_challenger(client, model, version)
    moves = [
        move_alias(client, storage, AliasMove(model, CHAMPION, version, None, actor, reason)),
        move_alias(client, storage, AliasMove(model, CHALLENGER, None, None, actor, f"v{version} crowned")),
    ]
    store_reference(settings, storage, model, version)
    return moves


def store_reference(settings: Settings, storage: Storage, model: str, version: str) -> None:
    """The new champion's drift reference (best effort: the drift check builds a missing one itself)."""
    try:
        from aerodrome.drift.reference import build_reference
        from aerodrome.usecase import load_usecase

        build_reference(load_usecase(settings.usecases_dir / model), settings, storage, version)
    except Exception as exc:  # a crowned champion stays crowned; the nightly check retries
        log.warning(
            "%s v%s: reference statistics not stored (%s); the drift check will build them", model, version, exc
        )


def reject(
    settings: Settings, storage: Storage, model: str, version: str, actor: str, reason: str, details: dict
) -> list[dict]:
    """The challenger failed a step: alias `rejected` (with the reason on the version), `challenger` removed."""
    client = registry_client(settings.tracking_uri)
    _expect_challenger(client, model, version)
    client.set_model_version_tag(model, version, "canary.status", "rejected")
    client.set_model_version_tag(model, version, "canary.reason", reason[:4000])
    moves = [
        move_alias(client, storage, AliasMove(model, REJECTED, version, None, actor, reason, details)),
        move_alias(client, storage, AliasMove(model, CHALLENGER, None, None, actor, f"v{version} rejected")),
    ]
    champion = alias_version(client, model, CHAMPION)
    audit.record(
        "rollback",
        model,
        f"challenger v{version} rolled back, v{champion} serves: {reason}",
        actor=actor,
        versions={"model": model, "version": version, "champion": champion},
        settings=settings,
    )
    return moves


def previous_champion(storage: Storage, usecase: str) -> str | None:
    """The version that was champion before the current one, from the alias history."""
    crowned = [m for m in alias_history(storage, usecase) if m["alias"] == CHAMPION and m["version"]]
    return crowned[-1]["previous"] if crowned else None


def restore_champion(
    settings: Settings, storage: Storage, model: str, actor: str, reason: str, version: str | None = None
) -> dict:
    """Point `champion` back at `version` (default: the champion before the current one)."""
    target = version or previous_champion(storage, model)
    if not target:
        raise DecisionError(f"{model} has no earlier champion to roll back to (see its alias history)")
    client = registry_client(settings.tracking_uri)
    current = alias_version(client, model, CHAMPION)
    if current == target:
        raise DecisionError(f"{model} v{target} is the champion already")
    move = move_alias(client, storage, AliasMove(model, CHAMPION, target, None, actor, reason))
    audit.record(
        "rollback",
        model,
        f"@champion rolled back from v{current} to v{target}: {reason}",
        actor=actor,
        versions={"model": model, "version": target, "previous": current},
        settings=settings,
    )
    return move
