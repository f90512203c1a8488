"""Hash chains: each record carries the sha256 of the one before, so an edit, a removal or a reorder shows.

One format for every append-only log of the platform (the audit trail, a model's alias history):
a record is a JSON object with `seq` (1, 2, ...), its own fields, `prev_sha256` (the previous
record's `sha256`, or 64 zeros for the first) and `sha256` (over every other field, keys sorted).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


def record_digest(record: dict[str, Any]) -> str:
    """sha256 of a record's canonical JSON (keys sorted), its own `sha256` field left out."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def seal(body: dict[str, Any], seq: int, previous: str) -> dict[str, Any]:
    """`body` as record number `seq` chained after the record whose digest is `previous`."""
    record = {"seq": seq, **body, "prev_sha256": previous}
    record["sha256"] = record_digest(record)
    return record


@dataclass(frozen=True)
class ChainBreak:
    """The first record that does not fit the chain: its position (1-based) and why."""

    position: int
    reason: str


def first_break(records: Iterable[dict[str, Any] | None]) -> ChainBreak | None:
    """The first record (None = unreadable) that was edited, inserted, removed or reordered, or None when intact."""
    previous = GENESIS
    for position, record in enumerate(records, start=1):
        if record is None:
            return ChainBreak(position, "not a readable JSON record")
        if record_digest(record) != record.get("sha256"):
            return ChainBreak(position, "its content does not match its sha256 (edited)")
        if record.get("seq") != position:
            return ChainBreak(position, f"seq {record.get('seq')} where {position} belongs (removed or reordered)")
        if record.get("prev_sha256") != previous:
            return ChainBreak(position, "prev_sha256 is not the previous record's sha256 (removed or inserted)")
        previous = record["sha256"]
    return None
