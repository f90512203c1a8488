"""Errors a user can act on: each names the thing that is wrong and the fix."""


class AerodromeError(Exception):
    """Base class for errors that carry a readable, actionable message."""


class SpecError(AerodromeError):
    """A use-case spec is invalid (unknown field, missing column, bad value)."""


class SourceError(AerodromeError):
    """A data source is missing, unreadable, corrupt or unreachable."""


class SchemaError(AerodromeError):
    """Source data does not match the schema declared in the use-case spec."""


class ResidencyError(AerodromeError):
    """A storage location lies outside the allowed data-residency regions."""
