"""Validate raw partitions against each use case's Great Expectations suite (importing this loads GX)."""

from aerodrome.validate.gate import ValidationFailed, ValidationOutcome, release_partition, validate_partition
from aerodrome.validate.report import Failure
from aerodrome.validate.suite import build_suite, suite_parameters

__all__ = [
    "Failure",
    "ValidationFailed",
    "ValidationOutcome",
    "build_suite",
    "release_partition",
    "suite_parameters",
    "validate_partition",
]
