"""The model's input from a request, built exactly as the training set builds it.

A request carries what is known at the prediction moment: the raw source columns of the event(s),
without the columns known only later (`model.leaky_columns` and the target; any sent are ignored).
`request_events` passes them through the use case's own builder (`entity_frame`, the function that
makes the training events), so request-time features cannot be computed differently online;
`model_frame` adds the looked-up Feast features under the same names the training set uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from aerodrome.errors import AerodromeError
from aerodrome.features.builders import builder_for
from aerodrome.features.builders.base import DAY
from aerodrome.schema import conform
from aerodrome.train.inputs import leaky_columns
from aerodrome.usecase import UseCase


class RequestError(AerodromeError):
    """A prediction request the gateway cannot answer as sent (unknown or missing columns, bad values)."""


def request_columns(spec: UseCase) -> list[str]:
    """The raw columns a request must carry: every declared column except those known only later."""
    later = set(leaky_columns(spec))
    return [c for c in spec.columns if c not in later]


def request_events(spec: UseCase, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Events (event timestamp, entity keys, request features) of the raw `rows`, via the use case's builder."""
    frame = pd.DataFrame(list(rows))
    unknown = sorted(c for c in frame.columns if c not in spec.columns)
    if unknown:
        raise RequestError(
            f"unknown column(s) {', '.join(unknown)}; {spec.name} takes: {', '.join(request_columns(spec))}"
        )
    wanted = request_columns(spec)
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise RequestError(f"missing column(s) {', '.join(missing)} (each row needs: {', '.join(wanted)})")
    for column in spec.columns:
        if column not in wanted:
            frame[column] = None  # known only after the prediction moment: never taken from a request
    try:
        frame = conform(frame, spec.columns, "request")
    except AerodromeError as exc:
        raise RequestError(str(exc)) from None
    builder = builder_for(spec)
    stamps = frame[spec.event_timestamp]
    if stamps.isna().any():
        raise RequestError(f"{spec.event_timestamp} is required in every row")
    frame[DAY] = builder.clock.local_day(stamps)
    return builder.entity_frame(frame).reset_index(drop=True)


def entity_rows(spec: UseCase, events: pd.DataFrame) -> list[dict[str, Any]]:
    """Feast entity rows (every join key of `features.entities`) of `events`, as plain Python values."""
    keys = list(spec.features.entities) if spec.features else []
    plain = events[keys].astype(object).where(events[keys].notna(), None)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in plain.to_dict("records")]


def model_frame(events: pd.DataFrame, looked_up: Mapping[str, Sequence[Any]], features: Sequence[str]) -> pd.DataFrame:
    """`events` with each looked-up feature as a column (missing values NaN): what a predictor takes."""
    values = pd.DataFrame({name: pd.to_numeric(pd.Series(looked_up[name], dtype=object)) for name in features})
    return pd.concat([events.reset_index(drop=True), values.astype("float64")], axis=1)
