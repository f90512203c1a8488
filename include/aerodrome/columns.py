"""The column types a spec declares, and the strict base of every spec model (shared by `usecase` and `features`)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown fields are errors; a loaded spec is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnType(StrEnum):
    string = "string"
    int = "int"
    float = "float"
    bool = "bool"
    timestamp = "timestamp"
