"""The model's input from a request, built exactly as the training set builds it.

A request carries what is known at the prediction moment: the raw source columns of the event(s),
without the columns known only later (`model.leaky_columns` and the target, which are ignored).
`request_events` passes each row through the use case's own builder (`event_row`, the function that
also makes every training event), so request-time features cannot be computed differently online;
`model_frame` adds the looked-up Feast features under the same names the training set uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aerodrome.errors import AerodromeError
from aerodrome.features.builders import builder_for
from aerodrome.train.inputs import leaky_columns
from aerodrome.usecase import UseCase


class RequestError(AerodromeError):
    """A prediction request the gateway cannot answer as sent (unknown or missing columns, bad values)."""


def request_columns(spec: UseCase) -> list[str]:
    """The raw columns a request must carry: every declared column except those known only later."""
    later = set(leaky_columns(spec))
    return [c for c in spec.columns if c not in later]


def request_events(spec: UseCase, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Events (event timestamp, join keys, request features) of the raw `rows`: the builder's `event_row`."""
    builder = builder_for(spec)
    allowed, wanted = set(spec.columns), request_columns(spec)
    events = []
    for n, row in enumerate(rows):
        unknown = sorted(c for c in row if c not in allowed)
        if unknown:
            raise RequestError(
                f"row {n}: unknown column(s) {', '.join(unknown)}; {spec.name} takes: {', '.join(wanted)}"
            )
        missing = [c for c in wanted if c not in row]
        if missing:
            raise RequestError(f"row {n}: missing column(s) {', '.join(missing)} (each row needs: {', '.join(wanted)})")
        try:
            events.append(builder.event_row(row))
        except AerodromeError as exc:
            raise RequestError(f"row {n}: {exc}") from None
        except (TypeError, ValueError, OverflowError) as exc:  # a value of the wrong kind or range
            raise RequestError(f"row {n}: {type(exc).__name__}: {exc}") from None
    return events


# A missing join key (a flight without a tail number) matches no feature row, as in the training
# set's point-in-time join; Feast cannot look up a null, so it looks up a value no entity has.
NO_ENTITY = {"string": "\x00missing", "int": -(2**62), "float": float("-inf")}


def entity_rows(spec: UseCase, events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Feast entity rows (every join key of `features.entities`) of `events`; a null key matches nothing."""
    kinds = {k: str(t) for k, t in spec.features.entities.items()} if spec.features else {}
    return [
        {k: NO_ENTITY.get(kind, "\x00missing") if event[k] is None else event[k] for k, kind in kinds.items()}
        for event in events
    ]


def model_frame(
    events: Sequence[Mapping[str, Any]], looked_up: Mapping[str, Sequence[Any]], features: Sequence[str]
) -> dict[str, list[Any]]:
    """Columns (name -> one value per event): the event's values and each looked-up feature (missing: NaN).

    Plain columns, not a DataFrame: a predictor encodes both the same way (`FeatureEncoding`), and a
    1-row DataFrame costs more than the model call.
    """
    columns: dict[str, list[Any]] = {name: [event[name] for event in events] for name in (events[0] if events else ())}
    columns.update({name: [_float(v) for v in looked_up[name]] for name in features})
    return columns


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)
