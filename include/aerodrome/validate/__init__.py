"""Validate raw partitions against each use case's Great Expectations suite.

The names below load lazily: importing `aerodrome.validate.custom` (the spec check) must not load GX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aerodrome.validate.gate import ValidationFailed, ValidationOutcome, release_partition, validate_partition
    from aerodrome.validate.report import Failure
    from aerodrome.validate.suite import build_suite, suite_parameters

_HOMES = {
    "Failure": "report",
    "ValidationFailed": "gate",
    "ValidationOutcome": "gate",
    "build_suite": "suite",
    "release_partition": "gate",
    "suite_parameters": "suite",
    "validate_partition": "gate",
}
__all__ = [
    "Failure",
    "ValidationFailed",
    "ValidationOutcome",
    "build_suite",
    "release_partition",
    "suite_parameters",
    "validate_partition",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
