"""Errors a user can act on: each names the thing that is wrong and the fix."""


class AerodromeError(Exception):
    """Base class for errors that carry a readable, actionable message."""


class PermanentError(AerodromeError):
    """An error no retry can fix (a bad spec, data that contradicts it): the Airflow task fails at once."""


class SpecError(PermanentError):
    """A use-case spec is invalid (unknown field, missing column, bad value)."""


class SpecProblem(ValueError):
    """One problem of a spec field, raised from a spec model's validator (pydantic wraps ValueErrors).

    `load_usecase` turns it into `<usecase>: <file>: <field>: <problem>. Fix: <fix>`; `field` is the
    dotted path from the spec's top (`promotion.metric`, `features.views[2].compute`).
    """

    def __init__(self, field: str, problem: str, fix: str) -> None:
        super().__init__(f"{field}: {problem}. Fix: {fix}")
        self.field, self.problem, self.fix = field, problem, fix


class SourceError(AerodromeError):
    """A data source is missing, unreadable, corrupt or unreachable."""


class SchemaError(PermanentError):
    """Source data does not match the schema declared in the use-case spec."""


class ResidencyError(PermanentError):
    """A storage location lies outside the allowed data-residency regions."""
