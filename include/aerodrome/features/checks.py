"""Checks of a `features:` section against the spec's columns and folder, cheap enough for spec load.

`validate_features` reads no data and imports nothing of the use case (module:function targets are
parsed, not imported): it names every column, function, file and second source the section refers to
that does not exist, every window longer than the schedule, and every view over the target or a leaky
column stamped at the event time itself (a label leak), each as `<field>: <problem>. Fix: <fix>`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from aerodrome.columns import ColumnType
from aerodrome.features.hooks import check_hook
from aerodrome.features.spec import FeatureDef, FeatureSpec, FeatureView, Holiday

NUMERIC = (ColumnType.int, ColumnType.float, ColumnType.bool)
SOURCE_DATASET = "{usecase}__{source}"  # a second source's dataset name in raw/ and validated/


def window_days(definition: FeatureDef) -> float:
    """Days a trailing window spans, its lag included."""
    span = (definition.days or 0) + (definition.hours or 0) / 24
    unit = 1 if definition.days else 1 / 24
    return span + definition.lag * unit


def calendar_types(features: FeatureSpec) -> dict[str, ColumnType]:
    return {c: ColumnType.bool if isinstance(p, Holiday) else ColumnType.int for c, p in features.calendar.items()}


def validate_features(
    features: FeatureSpec | None,
    columns: Mapping[str, ColumnType],
    usecase_dir: str | Path | None,
    *,
    sources: Mapping[str, Mapping[str, ColumnType]] | None = None,
    schedule_days: int | None = None,
    event_timestamp: str | None = None,
    target: str | None = None,
    leaky_columns: Sequence[str] = (),
) -> list[str]:
    """Every problem of the section, `features.<field>: <problem>. Fix: <fix>`; empty when it is sound.

    `sources`: the use case's second sources (name -> columns), for `asof` views; `schedule_days`: the
    schedule's length when it has an end, so a window longer than all the data is refused; `target` and
    `leaky_columns` (`model.leaky_columns`): outcomes a view may read only once known (`leak_problems`).
    """
    if features is None:
        return []
    folder = Path(usecase_dir) if usecase_dir else None
    problems: list[str] = []

    def problem(field: str, text: str, fix: str) -> None:
        problems.append(f"features.{field}: {text}. Fix: {fix}")

    for i, view in enumerate(features.views):
        if view.hook:
            found = check_hook(view.hook, "compute", folder)
            if found:
                problem(f"views[{i}].compute", *found)
    if not features.declarative:
        return problems

    raw = dict(columns)
    derived: dict[str, ColumnType] = {}
    for i, step in enumerate(features.derive):
        found = check_hook(step.function, "derive", folder)
        if found:
            problem(f"derive[{i}].function", *found)
        for column, kind in step.columns.items():
            if column in raw or column in derived:
                problem(f"derive[{i}].columns.{column}", "the column exists already", "give it its own name")
            derived[column] = kind
    calendar = calendar_types(features)
    for column, part in features.calendar.items():
        if column in raw:
            problem(f"calendar.{column}", "a source column has this name", "give the calendar column its own name")
        if isinstance(part, Holiday):
            problems += _holiday_problems(f"features.calendar.{column}.holiday", part.holiday, folder)
    every = {**raw, **calendar, **derived}

    event = features.event_time
    moment = event.column if event else event_timestamp
    if moment is not None and raw.get(moment) is not ColumnType.timestamp:
        problem("event_time.column", f"{moment!r} is not a timestamp column", "name a column of type timestamp")
    if event and event.add_minutes and raw.get(event.add_minutes) not in NUMERIC:
        problem("event_time.add_minutes", f"{event.add_minutes!r} is not a numeric column", "name an int/float column")
    for key in features.entities:
        if key not in raw and key not in calendar:
            problem(f"entities.{key}", "is neither a source column nor a calendar column", "add it to either")
    for name in features.request_features:
        if name not in raw and name not in calendar:
            problem(
                "request_features",
                f"{name!r} is neither a source column nor a calendar column",
                "list columns a request carries (or calendar columns of the event time)",
            )

    for i, view in enumerate(features.views):
        where = f"views[{i}]"
        if view.kind in ("trailing", "lag"):
            known = view.known_at
            if known is not None and every.get(known) is not ColumnType.timestamp:
                problem(f"{where}.known_at", f"{known!r} is not a timestamp column", "name a timestamp column")
            for name, definition in view.definitions.items():
                column = definition.column
                field = f"{where}.features.{name}.column"
                if column is not None and column not in every:
                    problem(field, f"no column {column!r}", f"use one of {', '.join(sorted(every))}")
                elif (
                    column is not None
                    and definition.agg in ("mean", "sum", "min", "max", "std")
                    and (every[column] not in NUMERIC)
                ):
                    problem(field, f"agg {definition.agg!r} needs a numeric column", "name an int/float column")
                if view.kind == "trailing" and schedule_days is not None and window_days(definition) > schedule_days:
                    problem(
                        f"{where}.features.{name}.days",
                        f"the window ({window_days(definition):g} days) is longer than the schedule "
                        f"({schedule_days} days of data)",
                        "shorten the window or extend schedule.end_date",
                    )
        if view.kind == "asof":
            problems += _asof_problems(f"features.{where}", view, sources)
    outcomes = list(dict.fromkeys([target, *leaky_columns] if target else leaky_columns))
    problems += leak_problems(features, outcomes, {c for c in (moment, event_timestamp) if c})
    return problems


def leak_problems(features: FeatureSpec, outcomes: Sequence[str], event_columns: set[str]) -> list[str]:
    """Views that read an outcome column (the target, `model.leaky_columns`) stamped no later than the event.

    A `lag` or `trailing` row is stamped at its `known_at` (default: the event time) plus `known_after_minutes`,
    and the point-in-time join takes every row stamped at or before the prediction moment: a view over the
    target stamped at the event time hands each row its own outcome. A feature over an outcome column passes
    when its stamp is strictly after its event: the view names a `known_at` column other than the event time
    (`event_columns`: the event-time column and `event_timestamp`),
    or `known_after_minutes` > 0, or the feature itself is served later (`lag`: `days`/`hours` after its event;
    `trailing`: `lag` >= 1 window unit, so the window ends a day/hour before the stamp). Computed views
    (`module:function`, `derive`) are the function's responsibility: their columns are not traced.
    """
    problems = []
    outcome_set = set(outcomes)
    for i, view in enumerate(features.views):
        if view.kind not in ("lag", "trailing") or not outcome_set:
            continue
        if view.known_after_minutes > 0 or (view.known_at is not None and view.known_at not in event_columns):
            continue
        leaking = {
            name: d.column
            for name, d in view.definitions.items()
            if d.column in outcome_set and not _served_later(view, d)
        }
        if not leaking:
            continue
        reads = ", ".join(f"{name} ({column!r})" for name, column in leaking.items())
        stamp = f"known_at {view.known_at!r}, the event time itself" if view.known_at else "the event time"
        seen = "its own outcome before it is" if view.kind == "lag" else "outcomes before they are"
        later = "or serve the feature later (days: N or hours: N)" if view.kind == "lag" else "or give it lag: 1"
        problems.append(
            f"features.views[{i}].known_at: view {view.name!r} reads the outcome column(s) {reads} (the target or "
            f"model.leaky_columns) stamped at {stamp}, so a training row sees {seen} known (a label leak). "
            f"Fix: set known_at: <column when the outcome is known> or known_after_minutes: N on the view, "
            f"{later}"
        )
    return problems


def _served_later(view: FeatureView, definition: FeatureDef) -> bool:
    """A feature whose rows are stamped strictly after their events whatever `known_at` says."""
    if view.kind == "lag":
        return bool(definition.days or definition.hours)
    return definition.lag >= 1


def _holiday_problems(field: str, name: str, folder: Path | None) -> list[str]:
    path = (folder / name) if folder else Path(name)
    if not path.is_file():
        return [f"{field}: calendar file {path} not found. Fix: add a CSV with a 'date' column to the use-case folder"]
    with path.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    if "date" not in header:
        return [f"{field}: {path} has no 'date' column (header: {header}). Fix: name the column of days 'date'"]
    return []


def _asof_problems(where: str, view: FeatureView, sources: Mapping[str, Mapping[str, ColumnType]] | None) -> list[str]:
    assert view.source is not None and view.time is not None
    if not sources or view.source not in sources:
        declared = ", ".join(sorted(sources or {})) or "none"
        return [
            f"{where}.source: no second source {view.source!r} (declared: {declared}). Fix: declare it under "
            "'sources:' so it is ingested and validated, or name a declared one"
        ]
    have = sources[view.source]
    wanted = {f"{where}.time": view.time}
    wanted |= {f"{where}.on.{e}": (view.on or {}).get(e, e) for e in view.entities}
    wanted |= {f"{where}.features.{n}.column": d.column or n for n, d in view.definitions.items()}
    out = [
        f"{field}: source {view.source!r} has no column {column!r}. Fix: use one of {', '.join(sorted(have))}"
        for field, column in wanted.items()
        if column not in have
    ]
    if view.time in have and have[view.time] is not ColumnType.timestamp:
        out.append(f"{where}.time: {view.time!r} is not a timestamp column of {view.source!r}. Fix: name one")
    return out
