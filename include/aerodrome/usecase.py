"""Use-case specs: one declarative YAML per ML domain under `include/usecases/<name>/usecase.yaml`.

Onboarding a domain means adding a folder; DAGs, ingestion and later stages read the spec.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aerodrome.errors import SpecError

SPEC_FILE = "usecase.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnType(StrEnum):
    string = "string"
    int = "int"
    float = "float"
    bool = "bool"
    timestamp = "timestamp"


class FileDropSource(_Strict):
    """Daily files dropped into a landing folder (local path or s3:// URI)."""

    kind: Literal["file_drop"]
    path: str = Field(description="Landing folder, relative to the data root, absolute, or s3://")
    pattern: str = Field(default="{ds}.csv", description="File name for one interval; {ds} = YYYY-MM-DD")
    format: Literal["csv", "parquet"] = "csv"
    replay: str | None = Field(default=None, description="Demo feed that fills the landing zone")


class PostgresSource(_Strict):
    """Rows of a PostgreSQL table whose timestamp column falls inside the data interval."""

    kind: Literal["postgres"]
    table: str
    conn_id: str = "aerodrome_source_db"
    timestamp_column: str | None = None


Source = Annotated[FileDropSource | PostgresSource, Field(discriminator="kind")]


class Target(_Strict):
    column: str
    task: Literal["classification", "regression"]
    threshold: float | None = Field(default=None, description="classification label = column > threshold")


DAILY_CRON = re.compile(r"^(@daily|@midnight|([0-5]?\d) ([01]?\d|2[0-3]) \* \* \*)$")


class Schedule(_Strict):
    start_date: date
    end_date: date | None = None
    catchup: bool = False
    ingest: str = Field(default="@daily", description="When a day is ingested: once a day, '@daily' or 'M H * * *'")

    @field_validator("ingest")
    @classmethod
    def _once_a_day(cls, value: str) -> str:
        """Partitions are days: one ingest run (and partition key) per day, whatever the hour."""
        if not DAILY_CRON.match(value.strip()):
            raise ValueError(
                f"{value!r} does not fire once a day; partitions are days, so the ingest schedule must be "
                "'@daily' or a cron 'M H * * *' (e.g. '30 2 * * *' ingests each day at 02:30 UTC the next day)"
            )
        return value.strip()


class Expectation(_Strict):
    """One data-quality rule; `type` names the check, the rest are its arguments.

    `freshness` bounds the newest value of a timestamp `column`: it must lie between `min` and
    `max` hours after the start of the interval being validated (defaults 0 and 24). `type`
    pins a column's dtype to the single name in `values`. `mostly` is the share of non-null rows
    that must pass.
    """

    type: Literal["not_null", "between", "in_set", "unique", "row_count", "type", "freshness"]
    column: str | None = None
    columns: list[str] | None = None
    min: float | None = None
    max: float | None = None
    values: list[Any] | None = None
    mostly: float = 1.0


class FeatureView(_Strict):
    """One Feast feature view: features of the same entities, each row stamped when it became known."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    entities: list[str] = Field(min_length=1, description="Join keys, declared under features.entities")
    features: dict[str, ColumnType] = Field(min_length=1, description="Feature name -> type")
    ttl_hours: int = Field(gt=0, description="A row older than this is neither served nor joined")
    compute: str | None = Field(default=None, description="Builder computation; defaults to the view name")
    description: str = ""

    @property
    def computation(self) -> str:
        return self.compute or self.name


class FeatureSpec(_Strict):
    """The `features:` section: the builder that computes the views and the Feast definitions."""

    builder: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="A builder in aerodrome.features.builders")
    timezone: str = Field(default="UTC", description="Zone of the partition day (its midnight)")
    entities: dict[str, ColumnType] = Field(min_length=1, description="Join key -> type")
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
            raise ValueError(f"timezone {self.timezone!r} is not an IANA zone name") from None
        for key, kind in self.entities.items():
            if kind in (ColumnType.timestamp, ColumnType.float):
                raise ValueError(f"entity {key!r} has type {kind.value!r}; join keys are string, int or bool")
        seen: dict[str, str] = {}
        views: set[str] = set()
        for view in self.views:
            if view.name in views:
                raise ValueError(f"feature view {view.name!r} is declared twice")
            views.add(view.name)
            unknown = [e for e in view.entities if e not in self.entities]
            if unknown:
                raise ValueError(
                    f"view {view.name!r} uses entities {unknown} not declared under features.entities "
                    f"(declared: {', '.join(self.entities)})"
                )
            for feature, kind in view.features.items():
                if feature in self.entities or feature in self.request_features:
                    raise ValueError(f"view {view.name!r}: {feature!r} is also an entity or request feature")
                if feature in seen:
                    raise ValueError(f"feature {feature!r} is in views {seen[feature]!r} and {view.name!r}")
                if kind is ColumnType.timestamp:
                    raise ValueError(f"view {view.name!r}: feature {feature!r} cannot be a timestamp")
                seen[feature] = view.name
        return self

    def view(self, name: str) -> FeatureView:
        for view in self.views:
            if view.name == name:
                return view
        raise KeyError(name)


class Resources(_Strict):
    cpu: str = "1"
    memory: str = "2Gi"
    gpu: int = 0
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    pod_template: str | None = Field(
        default=None,
        description="Pod template YAML (relative to the use-case folder) the training pod is built on, "
        "e.g. a service account, priority class or volumes; cpu/memory/gpu above replace the base "
        "container's resources, a non-empty node_selector / tolerations replace the template's",
    )


class ModelSpec(_Strict):
    """What `aerodrome.train` fits: the flavor, its hyper-parameters, where it runs, how it is judged."""

    flavor: Literal["xgboost", "pytorch"] = "xgboost"
    params: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    slices: list[str] = Field(default_factory=list, description="Columns whose values get their own metrics")
    categorical: list[str] | None = Field(
        default=None,
        description="Training-set columns fed as categories (default: the string entity keys)",
    )
    window_days: int = Field(
        default=28, ge=1, description="Sliding training window: the days up to the end of the week trained on"
    )
    min_week_days: int = Field(
        default=5,
        ge=1,
        le=7,
        description="Featured days a week needs before it is trained on when some of its days are "
        "quarantined or outside the schedule (a complete week always trains)",
    )
    leaky_columns: list[str] = Field(
        default_factory=list,
        description="Source columns known only after the prediction moment; training refuses a feature "
        "list that names one (the target column is always refused)",
    )


# Metrics of each task (aerodrome.train.evaluate computes them); the first is the task's default.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("roc_auc", "pr_auc", "log_loss"),
    "regression": ("mae", "rmse"),
}
HIGHER_IS_BETTER = frozenset({"roc_auc", "pr_auc"})


class PromotionGates(_Strict):
    """Gates a candidate passes before it may serve (aerodrome.registry.gates).

    Differences are absolute for the ranking metrics (higher is better: roc_auc, pr_auc) and relative
    to the reference value for the error metrics (lower is better: log_loss, mae, rmse), so one
    setting means the same for a regression whatever the target's scale.
    """

    metric: str | None = Field(default=None, description="Judged metric; default: the task's first")
    min_improvement: float = Field(default=0.0, description="Over the champion on the same holdout")
    max_slice_regression: float = Field(default=0.02, description="Worst allowed loss of any slice vs the champion")
    min_baseline_margin: float = Field(default=0.01, description="Over the best naive baseline of the task")
    latency_budget_ms: float = Field(default=50.0, gt=0, description="p99 of a 1-row prediction, in-process")
    require_approval: bool = Field(default=False, description="A human approves in the Airflow UI")


class CanaryPolicy(_Strict):
    """How a challenger earns the champion's traffic (aerodrome.serving.canary).

    After each step the canary watches `analysis_minutes` of live traffic and compares the challenger
    with the champion; any failed check rolls it back at once. With `rollout: ab` (see `ABPolicy`) its
    harm limits (`min_requests`, `max_error_rate`, `max_p99_latency_ms`) still stop an A/B test early.
    """

    steps: list[Annotated[float, Field(gt=0, le=100)]] = Field(default_factory=lambda: [5, 25, 50, 100])
    analysis_minutes: float = Field(default=30, gt=0, description="Live traffic watched after each step")
    min_requests: int = Field(default=20, ge=1, description="Challenger requests a step needs to be judged")
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_p99_latency_ms: float = Field(default=100.0, gt=0)
    max_latency_ratio: float = Field(default=2.0, gt=0, description="Challenger p99 / champion p99")
    max_prediction_psi: float = Field(default=0.25, gt=0, description="Shift of the challenger's predictions")
    min_labelled: int = Field(default=50, ge=1, description="Labelled predictions per model to compare outcomes")
    max_online_regression: float = Field(default=0.05, ge=0, description="Relative, on the online metric")

    @model_validator(mode="after")
    def _steps_rise_to_100(self) -> CanaryPolicy:
        if self.steps != sorted(set(self.steps)) or self.steps[-1] != 100:
            raise ValueError(f"canary.steps must rise strictly and end at 100, not {self.steps}")
        return self


class ABPolicy(_Strict):
    """How an A/B test judges a challenger, with `rollout: ab` (aerodrome.serving.abtest).

    The challenger answers a fixed `split_percent` % of the traffic for `horizon_hours`; then its
    online error (misclassification rate at 0.5, or mean absolute error) is compared once with the
    champion's on the outcomes labelled by then. Promote: lower, significant at `alpha`, by at least
    `min_effect` (relative to the champion's error). Keep the champion: higher and significant, or
    lower by less than `min_effect`. Otherwise inconclusive. The canary's harm limits (errors, p99)
    still stop the test early.
    """

    split_percent: float = Field(default=50, gt=0, lt=100, description="Challenger's share of the traffic")
    horizon_hours: float = Field(default=24, gt=0, le=24 * 30, description="How long the split holds")
    alpha: float = Field(default=0.05, gt=0, le=0.2, description="Significance level (two-sided)")
    min_labelled: int = Field(default=200, ge=10, description="Labelled outcomes each model needs to be judged")
    min_effect: float = Field(
        default=0.0, ge=0, lt=1, description="Relative error reduction the challenger must show to be promoted"
    )


class DriftTest(_Strict):
    """How one type of column is compared with the champion's reference (aerodrome.drift.stats)."""

    method: Literal["psi", "jensenshannon"]
    threshold: float = Field(gt=0, description="A column drifts when its score reaches this")


class DriftPolicy(_Strict):
    """The nightly drift check of served data against the champion's reference (aerodrome.drift).

    Each column is scored with its type's `method` on the reference's stored bins; the data drifts
    when more than `max_drifted_share` of the columns do. Drift of the data or the predictions, or a
    realized metric more than `max_metric_drop` below the champion's holdout (on at least
    `min_labelled` labelled rows), requests a retrain, at most once per `cooldown_hours`.
    """

    schedule: str = "@daily"
    max_drifted_share: float = Field(default=0.3, gt=0, le=1)
    lookback_days: int = Field(default=1, ge=1, le=31, description="Served days compared, ending with the run's")
    numeric: DriftTest = Field(default_factory=lambda: DriftTest(method="psi", threshold=0.2))
    categorical: DriftTest = Field(default_factory=lambda: DriftTest(method="jensenshannon", threshold=0.1))
    prediction: DriftTest = Field(default_factory=lambda: DriftTest(method="psi", threshold=0.2))
    max_metric_drop: float = Field(
        default=0.05, ge=0, description="Realized promotion metric below the holdout's (absolute; relative for errors)"
    )
    min_labelled: int = Field(default=200, ge=1, description="Labelled rows before the realized metric counts")
    min_rows: int = Field(default=200, ge=1, description="Served rows a check needs; fewer: reported, not judged")
    cooldown_hours: float = Field(default=72, ge=0, description="At most one retrain request per window")
    report_columns: int = Field(default=12, ge=1, description="Columns in the Evidently report (most drifted)")
    report_rows: int = Field(default=5000, ge=100, description="Rows sampled per side for the Evidently report")


class UseCase(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    owner: str
    tags: list[str] = Field(default_factory=list)
    source: Source
    columns: dict[str, ColumnType]
    natural_key: list[str]
    entity_keys: list[str]
    event_timestamp: str
    target: Target
    schedule: Schedule
    expectations: list[Expectation] = Field(default_factory=list)
    features: FeatureSpec | None = Field(default=None, description="Feast repository of the use case")
    model: ModelSpec = Field(default_factory=ModelSpec)
    promotion: PromotionGates = Field(default_factory=PromotionGates)
    rollout: Literal["canary", "ab"] = Field(
        default="canary", description="How a challenger earns the traffic: stepped canary or an A/B test"
    )
    canary: CanaryPolicy = Field(default_factory=CanaryPolicy)
    ab: ABPolicy = Field(default_factory=ABPolicy)
    drift: DriftPolicy = Field(default_factory=DriftPolicy)

    @model_validator(mode="before")
    @classmethod
    def _task_default_metric(cls, data: Any) -> Any:
        """`promotion.metric` defaults to the task's first metric (roc_auc or mae)."""
        if isinstance(data, dict) and isinstance(data.get("target"), dict):
            promotion = data.get("promotion") or {}
            task = data["target"].get("task")
            if isinstance(promotion, dict) and task in TASK_METRICS and not promotion.get("metric"):
                data = {**data, "promotion": {**promotion, "metric": TASK_METRICS[task][0]}}
        return data

    @model_validator(mode="after")
    def _columns_exist(self) -> UseCase:
        known = set(self.columns)
        refs: list[tuple[str, str]] = [(f"natural_key[{i}]", c) for i, c in enumerate(self.natural_key)]
        refs += [(f"entity_keys[{i}]", c) for i, c in enumerate(self.entity_keys)]
        refs += [("event_timestamp", self.event_timestamp), ("target.column", self.target.column)]
        refs += [("model.slices", c) for c in self.model.slices]
        refs += [("model.leaky_columns", c) for c in self.model.leaky_columns]
        if isinstance(self.source, PostgresSource) and self.source.timestamp_column:
            refs.append(("source.timestamp_column", self.source.timestamp_column))
        for i, exp in enumerate(self.expectations):
            refs += [(f"expectations[{i}].column", c) for c in [exp.column] if c]
            refs += [(f"expectations[{i}].columns", c) for c in exp.columns or []]
        for field_name, column in refs:
            if column not in known:
                raise ValueError(
                    f"{field_name} names column {column!r}, which is not declared under 'columns' "
                    f"(declared: {', '.join(sorted(known))}). Add it to 'columns' or fix the name."
                )
        if self.columns.get(self.event_timestamp) is not ColumnType.timestamp:
            raise ValueError(f"event_timestamp column {self.event_timestamp!r} must have type 'timestamp'")
        metrics = TASK_METRICS[self.target.task]
        if self.promotion.metric not in metrics:
            raise ValueError(
                f"promotion.metric {self.promotion.metric!r} is not a {self.target.task} metric "
                f"(one of: {', '.join(metrics)})"
            )
        if "ab" in self.model_fields_set and self.rollout != "ab":
            raise ValueError("an 'ab' section is set but rollout is 'canary': add 'rollout: ab', or remove 'ab'")
        target_type = self.columns[self.target.column]
        if (
            self.target.task == "classification"
            and self.target.threshold is None
            and target_type is not ColumnType.bool
        ):
            raise ValueError("target.threshold is required for a classification target that is not bool")
        return self

    @property
    def timestamp_column(self) -> str:
        if isinstance(self.source, PostgresSource) and self.source.timestamp_column:
            return self.source.timestamp_column
        return self.event_timestamp


def describe_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown field {where!r}: remove it or check its spelling")
        else:
            lines.append(f"{where}: {e['msg']}")
    return "; ".join(lines)


def load_usecase(path: str | Path) -> UseCase:
    """Load and check one spec: `path` is the use-case folder or its `usecase.yaml`."""
    path = Path(path)
    spec_file = path / SPEC_FILE if path.is_dir() else path
    if not spec_file.is_file():
        raise SpecError(f"{spec_file}: use-case spec not found (each use case needs a {SPEC_FILE})")
    try:
        raw = yaml.safe_load(spec_file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{spec_file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{spec_file}: the spec must be a mapping of fields")
    try:
        spec = UseCase.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{spec_file}: {describe_validation_error(exc)}") from None
    if spec.name != spec_file.parent.name:
        raise SpecError(f"{spec_file}: name {spec.name!r} must equal its folder name {spec_file.parent.name!r}")
    return _with_resolved_pod_template(spec, spec_file)


def _with_resolved_pod_template(spec: UseCase, spec_file: Path) -> UseCase:
    """`model.resources.pod_template` as an absolute path to an existing file (relative = to the spec's folder)."""
    resources = spec.model.resources
    if not resources.pod_template:
        return spec
    template = Path(resources.pod_template)
    template = template if template.is_absolute() else spec_file.parent / template
    if not template.is_file():
        raise SpecError(f"{spec_file}: model.resources.pod_template: {template} not found")
    resources = resources.model_copy(update={"pod_template": str(template.resolve())})
    return spec.model_copy(update={"model": spec.model.model_copy(update={"resources": resources})})


def discover_usecases(usecases_dir: str | Path) -> list[UseCase]:
    """Every use case under `usecases_dir`, sorted by name (folders without a spec are ignored)."""
    root = Path(usecases_dir)
    return [load_usecase(d) for d in sorted(root.iterdir()) if (d / SPEC_FILE).is_file()]
