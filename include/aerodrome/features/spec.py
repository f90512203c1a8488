"""The `features:` section of a use-case spec: entities, views and how each view is computed.

A view is computed one of three ways:

- a declarative `kind` (no Python): `trailing` aggregates per entity over N days or hours, `lag` (the
  latest known value of a column, N events back, or N days/hours ago), `asof` (rows of a second
  ingested source, e.g. hourly weather, joined as of the event time);
- `compute: module:function`, a function of the use case's folder or of any installed package
  (signature in `aerodrome.features.hooks`);
- a legacy builder computation (`features.builder` names a builder in `aerodrome.features.builders`).

Event-level columns are declared once: `event_time` (the prediction moment), `calendar` parts of it
(hour, weekday, month, holiday flag...), `derive` functions that add columns to every row (e.g. the
moment an outcome became known), and `request_features` passed through from the request. Feature names
are free: the declared name is the column name.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from aerodrome.columns import ColumnType, StrictModel
from aerodrome.errors import SpecProblem

KINDS = ("trailing", "lag", "asof")
AGGREGATES = ("mean", "sum", "count", "min", "max", "std", "share")
CALENDAR_PARTS = ("hour", "weekday", "month", "day", "minute_of_day", "day_of_year", "week")
RESERVED_COLUMNS = ("event_timestamp", "_day")
CONDITION = re.compile(r"^\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>.+?)\s*$")
NULL_TESTS = {"is null": "isnull", "is not null": "notnull"}


def parse_condition(text: str) -> tuple[str, Any]:
    """`"> 15"` -> (">", 15); `"is null"` -> ("isnull", None). Raises ValueError with the accepted forms."""
    lowered = " ".join(text.lower().split())
    if lowered in NULL_TESTS:
        return NULL_TESTS[lowered], None
    match = CONDITION.match(text)
    if not match:
        raise ValueError(
            f"condition {text!r} is not one of '<op> <value>' (op: > >= < <= == !=, e.g. '> 15') or 'is null' / "
            "'is not null'"
        )
    return match["op"], yaml.safe_load(match["value"])


class FeatureDef(StrictModel):
    """How one feature of a declarative view is computed (which fields apply depends on the view's kind).

    trailing: `agg` over `column` (not for `count`) in a window of `days` or `hours`, ending `lag` windows
    units before the stamp; `share` is the fraction of rows where `when` holds (`"> 15"`, `"is null"`),
    counted over the rows where `column` is known (all rows for the null tests).
    lag: `column`'s latest known value (`periods: 1`), the N-th latest (`periods: N`), or its value
    `days`/`hours` before the moment served.
    asof: the second source's `column` (default: the feature's name).
    """

    type: ColumnType
    agg: Literal["mean", "sum", "count", "min", "max", "std", "share"] | None = None
    column: str | None = None
    when: str | None = Field(default=None, description="share: the condition counted, e.g. '> 15' or 'is null'")
    days: int | None = Field(default=None, ge=1)
    hours: int | None = Field(default=None, ge=1)
    lag: int = Field(default=0, ge=0, description="trailing: the window ends this many days/hours before the stamp")
    periods: int | None = Field(default=None, ge=1, description="lag: the N-th latest known value (1 = latest)")

    @field_validator("when")
    @classmethod
    def _condition_reads(cls, value: str | None) -> str | None:
        if value is not None:
            parse_condition(value)
        return value


class EventTime(StrictModel):
    """The prediction moment of a row: a timestamp column, plus minutes from another column if given."""

    column: str
    add_minutes: str | None = Field(default=None, description="A numeric column of minutes added to `column`")


class Holiday(StrictModel):
    """A holiday flag: 1 when the event's local date is listed in the file's `date` column."""

    holiday: str = Field(description="CSV file in the use-case folder with a 'date' column (YYYY-MM-DD)")


class Derive(StrictModel):
    """A `module:function` that adds `columns` to every row before any view is computed."""

    function: str
    columns: dict[str, ColumnType] = Field(min_length=1, description="Columns the function adds -> type")


class FeatureView(StrictModel):
    """One Feast feature view: features of the same entities, each row stamped when it became known."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    entities: list[str] = Field(min_length=1, description="Join keys, declared under features.entities")
    features: dict[str, ColumnType] = Field(min_length=1, description="Feature name -> type")
    definitions: dict[str, FeatureDef] = Field(
        default_factory=dict, description="How each feature is computed (kinds); written inline under features"
    )
    ttl_hours: int = Field(gt=0, description="A row older than this is neither served nor joined")
    kind: Literal["trailing", "lag", "asof"] | None = Field(default=None, description="A declarative computation")
    compute: str | None = Field(
        default=None, description="'module:function', or a builder computation (default: the view name)"
    )
    every: Literal["day", "hour"] = Field(
        default="day", description="trailing: one row per entity at local midnight after each day, or each hour"
    )
    known_at: str | None = Field(
        default=None, description="Column of the moment a row's values became known (default: the event time)"
    )
    known_after_minutes: int = Field(default=0, ge=0, description="Added to known_at: e.g. 60 for hourly bookings")
    source: str | None = Field(default=None, description="asof: the second source (its validated partitions)")
    on: dict[str, str] | None = Field(default=None, description="asof: entity -> source column (default: same)")
    time: str | None = Field(default=None, description="asof: the source's timestamp column (rows stamped there)")
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _split_inline_definitions(cls, data: Any) -> Any:
        """`features: {name: {type: float, agg: mean, ...}}` -> `features: {name: float}` + `definitions`."""
        if not isinstance(data, dict) or not isinstance(data.get("features"), dict):
            return data
        types, definitions = {}, dict(data.get("definitions") or {})
        for name, value in data["features"].items():
            if isinstance(value, dict):
                types[name] = value.get("type")
                definitions[name] = value
            else:
                types[name] = value
        return {**data, "features": types, "definitions": definitions}

    @property
    def computation(self) -> str:
        return self.compute or self.name

    @property
    def hook(self) -> str | None:
        """The `module:function` this view names, if any."""
        return self.compute if self.compute and ":" in self.compute else None


class FeatureSpec(StrictModel):
    """The `features:` section: how events and views are computed, and the Feast definitions."""

    builder: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Legacy: a builder in aerodrome.features.builders (omit it for declarative views)",
    )
    timezone: str = Field(default="UTC", description="Zone of the partition day (its midnight)")
    entities: dict[str, ColumnType] = Field(min_length=1, description="Join key -> type")
    event_time: EventTime | None = Field(default=None, description="Prediction moment; default: event_timestamp")
    calendar: dict[str, str | Holiday] = Field(
        default_factory=dict, description=f"Column -> part of the local event time ({', '.join(CALENDAR_PARTS)})"
    )
    derive: list[Derive] = Field(default_factory=list, description="module:function steps adding columns")
    request_features: list[str] = Field(
        default_factory=list, description="Columns the caller knows at request time (not looked up in Feast)"
    )
    views: list[FeatureView] = Field(min_length=1)
    service: str | None = Field(default=None, description="Feature service name; default: the use-case name")

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SpecProblem(
                "timezone", f"{self.timezone!r} is not an IANA zone name", "e.g. America/New_York"
            ) from None
        for key, kind in self.entities.items():
            if kind in (ColumnType.timestamp, ColumnType.float):
                raise SpecProblem(
                    f"entities.{key}", f"type {kind.value!r} cannot be a join key", "use string, int or bool"
                )
        for column, part in self.calendar.items():
            if isinstance(part, str) and part not in CALENDAR_PARTS:
                raise SpecProblem(
                    f"calendar.{column}",
                    f"{part!r} is not a calendar part",
                    f"use one of {', '.join(CALENDAR_PARTS)} or {{holiday: <file>.csv}}",
                )
        seen: dict[str, str] = {}
        views: set[str] = set()
        for i, view in enumerate(self.views):
            where = f"views[{i}]"
            if view.name in views:
                raise SpecProblem(f"{where}.name", f"feature view {view.name!r} is declared twice", "rename one")
            views.add(view.name)
            unknown = [e for e in view.entities if e not in self.entities]
            if unknown:
                raise SpecProblem(
                    f"{where}.entities",
                    f"view {view.name!r} uses entities {unknown} not declared under features.entities",
                    f"declare them there or use one of {', '.join(self.entities)}",
                )
            for feature, kind in view.features.items():
                field = f"{where}.features.{feature}"
                if feature in self.entities or feature in self.request_features or feature in RESERVED_COLUMNS:
                    raise SpecProblem(
                        field,
                        f"view {view.name!r}: {feature!r} is also an entity, a request feature or a reserved column",
                        "rename the feature",
                    )
                if feature in seen:
                    raise SpecProblem(
                        field, f"feature {feature!r} is in views {seen[feature]!r} and {view.name!r}", "rename one"
                    )
                if kind is ColumnType.timestamp:
                    raise SpecProblem(field, "a feature cannot be a timestamp", "use int, float, string or bool")
                seen[feature] = view.name
            problem = _view_problem(self, view)
            if problem:
                field, text, fix = problem
                raise SpecProblem(f"{where}{field}", f"view {view.name!r}: {text}", fix)
        return self

    @property
    def declarative(self) -> bool:
        """No legacy builder: views are kinds or module:function computations."""
        return self.builder is None

    def view(self, name: str) -> FeatureView:
        for view in self.views:
            if view.name == name:
                return view
        raise KeyError(name)


def _view_problem(spec: FeatureSpec, view: FeatureView) -> tuple[str, str, str] | None:
    """(field below the view, what is wrong, the fix) for one view's declaration, else None."""
    if spec.builder is not None:
        if view.kind or view.hook or view.definitions:
            return (
                ".kind",
                f"features.builder {spec.builder!r} computes every view, so it cannot be a kind or module:function",
                "remove 'builder' and declare every view as a kind or 'compute: module:function'",
            )
        return None
    if view.kind and view.compute:
        return ".compute", "both 'kind' and 'compute' are set", "keep one of them"
    if not view.kind:
        if not view.hook:
            return (
                ".kind",
                f"no computation (compute {view.compute!r} is neither a kind nor module:function)",
                "declare 'kind: trailing|lag|asof' or 'compute: module:function' (builder computations need "
                "features.builder)",
            )
        if view.definitions:
            return ".features", "a module:function view declares plain types", "write 'name: float' per feature"
        return None
    missing = [f for f in view.features if f not in view.definitions]
    if missing:
        return (
            f".features.{missing[0]}",
            f"a {view.kind!r} feature needs a definition",
            f"write it as {missing[0]}: {{type: float, {_EXAMPLE[view.kind]}}}",
        )
    if view.kind != "asof" and (view.source or view.on or view.time):
        return ".source", "'source', 'on' and 'time' belong to an 'asof' view", "remove them or set kind: asof"
    if view.kind == "asof" and not (view.source and view.time):
        return (
            ".source" if not view.source else ".time",
            "an 'asof' view needs the second source and its timestamp column",
            "add 'source: <source name>' and 'time: <its timestamp column>'",
        )
    if view.every == "hour" and view.kind != "trailing":
        return ".every", "'every: hour' applies to trailing views", "remove it"
    for name, definition in view.definitions.items():
        problem = _definition_problem(view, definition)
        if problem:
            return f".features.{name}", problem[0], problem[1]
    return None


_EXAMPLE = {
    "trailing": "agg: mean, column: <column>, days: 7",
    "lag": "column: <column>",
    "asof": "column: <source column>",
}


def _definition_problem(view: FeatureView, d: FeatureDef) -> tuple[str, str] | None:
    """(what is wrong, the fix) for one feature definition, else None."""
    if view.kind == "trailing":
        if d.agg is None:
            return "a trailing feature needs 'agg'", f"add agg: one of {', '.join(AGGREGATES)}"
        if (d.days is None) == (d.hours is None):
            return "a trailing feature needs exactly one window", "give 'days: N' or 'hours: N'"
        if view.every == "day" and d.hours is not None:
            return "a daily view takes windows in days", "use 'days: N', or set 'every: hour' on the view"
        if d.agg != "count" and not d.column:
            return f"agg {d.agg!r} needs a column", "add 'column: <column>'"
        if d.agg == "share" and not d.when:
            return "agg 'share' needs a condition", "add e.g. when: '> 15' or when: 'is null'"
        if d.agg != "share" and d.when:
            return "'when' applies to agg 'share' only", "remove 'when' or use agg: share"
        if d.periods is not None:
            return "'periods' applies to lag features", "remove it"
        return None
    if view.kind == "lag":
        if not d.column:
            return "a lag feature needs a column", "add 'column: <column>'"
        if sum(x is not None for x in (d.periods, d.days, d.hours)) > 1:
            return "more than one of 'periods', 'days', 'hours'", "keep one"
        if d.agg or d.when or d.lag:
            return "'agg', 'when' and 'lag' apply to trailing features", "remove them"
        return None
    if d.agg or d.when or d.lag or d.days or d.hours or d.periods:
        return "an asof feature takes only 'type' and 'column'", "remove the other fields"
    return None
