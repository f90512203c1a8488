"""What goes into a model: the feature list, the leak guard, and the encoding shared by training and serving.

A model sees the training set's features (request features and Feast features) as numbers and a few
columns as categories. `FeatureEncoding` is fitted on the training rows only and travels with the
model, so serving encodes a request exactly as training did: numbers as float32, categories as codes
(0 = missing or never seen in training).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from aerodrome.errors import AerodromeError
from aerodrome.usecase import ColumnType, UseCase

UNKNOWN = 0  # category code of a missing value or one never seen in the training rows
MIN_CATEGORY_ROWS = 20  # rarer training values share the unknown code (a tail number seen twice says little)
MAX_CATEGORY_LEVELS = 1000


class TrainingError(AerodromeError):
    """Training cannot go on: a bad window, an empty split part, an unknown parameter."""


class DeviceUnavailableError(TrainingError):
    """The requested accelerator is not visible here: often the node (driver, device plugin), so retryable."""


class LeakageError(TrainingError):
    """A feature is only known after the prediction moment (or is the target itself)."""


def leaky_columns(spec: UseCase) -> list[str]:
    """Columns a model of `spec` may never see: the declared `model.leaky_columns` and the target."""
    return list(dict.fromkeys([*spec.model.leaky_columns, spec.target.column]))


def check_no_leakage(spec: UseCase, features: Iterable[str]) -> None:
    """Refuse a feature list that names a column known only after the prediction moment."""
    forbidden = set(leaky_columns(spec))
    leaking = [f for f in features if f in forbidden]
    if leaking:
        raise LeakageError(
            f"use case {spec.name!r}: feature(s) {', '.join(leaking)} are only known after the prediction "
            f"moment (model.leaky_columns / target {spec.target.column!r}); remove them from "
            f"features.request_features or the feature views"
        )


def declared_features(spec: UseCase) -> list[str]:
    """Numeric features the spec declares: request features, then every view's features in spec order."""
    if spec.features is None:
        raise TrainingError(f"use case {spec.name!r} declares no 'features' section: nothing to train on")
    return [*spec.features.request_features, *(f for v in spec.features.views for f in v.features)]


def categorical_columns(spec: UseCase, numeric: Sequence[str]) -> list[str]:
    """`model.categorical`, or by default the string entity keys that are not numeric features."""
    if spec.model.categorical is not None:
        return list(spec.model.categorical)
    entities = spec.features.entities if spec.features else {}
    return [e for e, kind in entities.items() if kind is ColumnType.string and e not in numeric]


def model_columns(spec: UseCase) -> tuple[list[str], list[str]]:
    """(numeric, categorical) model inputs of `spec`, checked against the leak guard."""
    numeric = declared_features(spec)
    categorical = [c for c in categorical_columns(spec, numeric) if c not in numeric]
    check_no_leakage(spec, [*numeric, *categorical])
    return numeric, categorical


# What a predictor scores: a DataFrame (training, evaluation, the MLflow pyfunc) or plain columns
# (column -> one value per row), which the gateway builds for a request without pandas' overhead.
Frame = pd.DataFrame | Mapping[str, Sequence[Any]]


def row_count(frame: Frame) -> int:
    if isinstance(frame, pd.DataFrame):
        return len(frame)
    return len(next(iter(frame.values()))) if frame else 0


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


@dataclass(frozen=True)
class FeatureEncoding:
    """Model inputs in a fixed order: `numeric` columns, then `categories` (column -> vocabulary)."""

    numeric: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categories]

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        numeric: Sequence[str],
        categorical: Sequence[str],
        min_rows: int = MIN_CATEGORY_ROWS,
        max_levels: int = MAX_CATEGORY_LEVELS,
    ) -> FeatureEncoding:
        """Vocabularies from `frame` (the training rows): values seen at least `min_rows` times, most frequent first."""
        missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
        if missing:
            raise TrainingError(f"the training set has no column(s) {', '.join(missing)}")
        categories = {}
        for column in categorical:
            counts = frame[column].dropna().astype(str).value_counts()
            counts = counts[counts >= min_rows]
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_levels]  # ties by value: stable
            categories[column] = tuple(value for value, _ in ranked)
        return cls(tuple(numeric), categories)

    def _require(self, frame: Frame) -> None:
        present = frame.columns if isinstance(frame, pd.DataFrame) else frame
        missing = [c for c in self.columns if c not in present]
        if missing:
            raise TrainingError(
                f"model input lacks column(s) {', '.join(missing)} (expected: {', '.join(self.columns)})"
            )

    def numbers(self, frame: Frame) -> np.ndarray:
        """Numeric features as float32 (rows, numeric); missing values are NaN."""
        self._require(frame)
        try:
            if isinstance(frame, pd.DataFrame):
                values = frame[list(self.numeric)].astype("float64")
                return values.to_numpy(dtype=np.float32, na_value=np.nan)
            if not self.numeric:
                return np.zeros((row_count(frame), 0), dtype=np.float32)
            # None -> NaN, as pandas does; one (numeric, rows) array, transposed
            return np.array([frame[c] for c in self.numeric], dtype=np.float64).T.astype(np.float32)
        except (TypeError, ValueError) as exc:
            raise TrainingError(f"a numeric feature holds a value that is not a number: {exc}") from None

    def codes(self, frame: Frame) -> np.ndarray:
        """Category codes as int64 (rows, categorical): 1.. for known values, `UNKNOWN` otherwise."""
        self._require(frame)
        lookups, rows = self._lookups, row_count(frame)
        plain = not isinstance(frame, pd.DataFrame)
        columns = [
            np.fromiter(
                (
                    lookups[c].get(str(v), 0) if not _missing(v) else 0
                    for v in (frame[c] if plain else frame[c].tolist())
                ),
                dtype=np.int64,
                count=rows,
            )
            for c in self.categories
        ]
        return np.column_stack(columns) if columns else np.zeros((rows, 0), dtype=np.int64)

    @functools.cached_property
    def _lookups(self) -> dict[str, dict[str, int]]:
        """Per categorical column: value -> code (1-based, in vocabulary order)."""
        return {c: {v: i + 1 for i, v in enumerate(vocab)} for c, vocab in self.categories.items()}

    def model_input(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The columns a served model takes, as plain types: numbers as float64, categories as str or None."""
        self._require(frame)
        out = frame[list(self.numeric)].astype("float64").reset_index(drop=True)
        for column in self.categories:
            values = frame[column].astype("string").astype(object).reset_index(drop=True)
            out[column] = values.where(values.notna(), None)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"numeric": list(self.numeric), "categories": {c: list(v) for c, v in self.categories.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureEncoding:
        return cls(tuple(data["numeric"]), {c: tuple(v) for c, v in data["categories"].items()})
