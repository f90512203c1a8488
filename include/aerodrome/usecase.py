"""Use-case specs: one declarative YAML per ML domain under `include/usecases/<name>/usecase.yaml`.

Onboarding a domain means adding a folder; DAGs, ingestion and later stages read the spec.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from aerodrome.columns import ColumnType
from aerodrome.errors import SpecError, SpecProblem
from aerodrome.features.spec import FeatureSpec, FeatureView  # noqa: F401 - the features section, re-exported
from aerodrome.spec_errors import spec_problems

SPEC_FILE = "usecase.yaml"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it: ~10x faster


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
            raise SpecProblem(
                "",  # the field validated (schedule.ingest)
                f"{value!r} does not fire once a day; partitions are days",
                "use '@daily' or a cron 'M H * * *' (e.g. '30 2 * * *' ingests each day at 02:30 UTC the next day)",
            )
        return value.strip()


class Expectation(_Strict):
    """One data-quality rule; `type` names the check, the rest are its arguments.

    `freshness` bounds the newest value of a timestamp `column`: it must lie between `min` and
    `max` hours after the start of the interval being validated (defaults 0 and 24). `type`
    pins a column's dtype to the single name in `values`. `mostly` is the share of non-null rows
    that must pass. `custom` runs `function` (`module:function`, `fn(frame, **params)`, see
    `aerodrome.validate.custom`) with `params`; `column` is the column its failing rows are shown by.
    """

    type: Literal["not_null", "between", "in_set", "unique", "row_count", "type", "freshness", "custom"]
    column: str | None = None
    columns: list[str] | None = None
    min: float | None = None
    max: float | None = None
    values: list[Any] | None = None
    mostly: float = 1.0
    function: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="custom only: module:function, from the use-case folder or an installed package",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="custom only: the function's keyword arguments")

    @model_validator(mode="after")
    def _custom_fields(self) -> Expectation:
        if self.type == "custom" and not self.function:
            raise SpecProblem("function", "a custom expectation needs a function", "add function: 'module:function'")
        if self.type != "custom" and (self.function or self.params):
            raise SpecProblem(
                "function" if self.function else "params",
                f"only a custom expectation takes it (type is {self.type!r})",
                "set type: custom, or remove it",
            )
        unused = [f for f in ("columns", "min", "max", "values") if getattr(self, f) is not None]
        if self.type == "custom" and unused:
            raise SpecProblem(unused[0], "a custom expectation does not read it", "pass it under params instead")
        return self


class SecondSource(_Strict):
    """A second source of a use case (a reference table, a time series such as weather), under `sources:`.

    It is ingested and validated like the main source, into `raw|validated/<usecase>__<name>/date=YYYY-MM-DD/`,
    with its own expectations (the same kinds), quarantine and Data Docs, on the use case's schedule and
    partition keys. `asof` feature views join its validated rows by its `event_timestamp`.
    """

    source: Source
    columns: dict[str, ColumnType] = Field(min_length=1)
    event_timestamp: str = Field(description="The timestamp column a row is stamped at (when it became known)")
    natural_key: list[str] = Field(default_factory=list, description="Columns that identify one row")
    expectations: list[Expectation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _columns_exist(self) -> SecondSource:
        known = set(self.columns)
        refs: list[tuple[str, str]] = [(f"natural_key[{i}]", c) for i, c in enumerate(self.natural_key)]
        refs.append(("event_timestamp", self.event_timestamp))
        if isinstance(self.source, PostgresSource) and self.source.timestamp_column:
            refs.append(("source.timestamp_column", self.source.timestamp_column))
        for i, exp in enumerate(self.expectations):
            refs += [(f"expectations[{i}].column", c) for c in [exp.column] if c]
            refs += [(f"expectations[{i}].columns", c) for c in exp.columns or []]
        for field_name, column in refs:
            if column not in known:
                raise SpecProblem(
                    field_name,
                    f"names column {column!r}, which is not declared under this source's 'columns'",
                    f"add it to its 'columns' or use one of: {', '.join(sorted(known))}",
                )
        if self.columns[self.event_timestamp] is not ColumnType.timestamp:
            raise SpecProblem(
                "event_timestamp",
                f"column {self.event_timestamp!r} has type {self.columns[self.event_timestamp].value!r}",
                "declare it as 'timestamp' under this source's 'columns', or name a timestamp column",
            )
        return self


SOURCE_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")  # no '__': it joins the dataset name <usecase>__<source>


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
    slice_alpha: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="Family-wise false-alarm rate of the slice gate: a slice loss beyond max_slice_regression "
        "fails only when significant at alpha / (slices compared) (0: any loss beyond the limit fails)",
    )
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
            raise SpecProblem(
                "steps",
                f"{self.steps} do not rise strictly to 100",
                "list rising percentages ending at 100, e.g. [5, 25, 50, 100]",
            )
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


# The stages an extension can run beside, and the tasks their DAGs already have (an extension's id must differ).
EXTENSION_STAGES: dict[str, tuple[str, ...]] = {
    "ingest": ("ingest_partition",),
    "validate": ("validate_partition",),
    "features": ("publish_features",),
    "train": ("plan_window", "train_model", "announce_candidate"),
}
ExtensionStage = Literal["ingest", "validate", "features", "train"]


class Extension(_Strict):
    """A task of the use case's own code in a generated DAG (`aerodrome.extensions`: `fn(step) -> None`)."""

    task: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:function, from the use-case folder or an installed package",
    )
    before: ExtensionStage | None = Field(default=None, description="Runs before this stage's work")
    after: ExtensionStage | None = Field(default=None, description="Runs after it, before its partition is announced")
    name: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$", description="Task id; default: the function")

    @model_validator(mode="after")
    def _one_place(self) -> Extension:
        if (self.before is None) == (self.after is None):
            raise SpecProblem(
                "", "needs exactly one of 'before' and 'after'", "add 'after: <stage>' or 'before: <stage>'"
            )
        return self

    @property
    def stage(self) -> str:
        return self.before or self.after or ""

    @property
    def when(self) -> str:
        return "before" if self.before else "after"

    @property
    def task_id(self) -> str:
        return self.name or self.task.partition(":")[2]


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
    sources: dict[str, SecondSource] = Field(
        default_factory=dict, description="Second sources (name -> source), ingested and validated like the main one"
    )
    features: FeatureSpec | None = Field(default=None, description="Feast repository of the use case")
    model: ModelSpec = Field(default_factory=ModelSpec)
    promotion: PromotionGates = Field(default_factory=PromotionGates)
    rollout: Literal["canary", "ab"] = Field(
        default="canary", description="How a challenger earns the traffic: stepped canary or an A/B test"
    )
    canary: CanaryPolicy = Field(default_factory=CanaryPolicy)
    ab: ABPolicy = Field(default_factory=ABPolicy)
    drift: DriftPolicy = Field(default_factory=DriftPolicy)
    extensions: list[Extension] = Field(
        default_factory=list, description="Tasks of the use case's own code in its DAGs (aerodrome.extensions)"
    )

    @field_validator("sources")
    @classmethod
    def _source_names(cls, sources: dict[str, SecondSource]) -> dict[str, SecondSource]:
        for name in sources:
            if not SOURCE_NAME.match(name):
                raise SpecProblem(
                    name,
                    "is not a valid source name",
                    "use lowercase letters, digits and single underscores, starting with a letter (e.g. weather); "
                    "it names the source's data as <usecase>__<source>",
                )
        return sources

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
        refs += [(f"model.leaky_columns[{i}]", c) for i, c in enumerate(self.model.leaky_columns)]
        if isinstance(self.source, PostgresSource) and self.source.timestamp_column:
            refs.append(("source.timestamp_column", self.source.timestamp_column))
        for i, exp in enumerate(self.expectations):
            refs += [(f"expectations[{i}].column", c) for c in [exp.column] if c]
            refs += [(f"expectations[{i}].columns", c) for c in exp.columns or []]
        if self.features is None:  # without features, slices are cut from the source columns
            refs += [(f"model.slices[{i}]", c) for i, c in enumerate(self.model.slices)]
        for field_name, column in refs:
            if column not in known:
                raise SpecProblem(
                    field_name,
                    f"names column {column!r}, which is not declared under 'columns'",
                    f"add it to 'columns' or use one of: {', '.join(sorted(known))}",
                )
        if self.columns.get(self.event_timestamp) is not ColumnType.timestamp:
            raise SpecProblem(
                "event_timestamp",
                f"column {self.event_timestamp!r} has type {self.columns[self.event_timestamp].value!r}",
                f"declare it as 'timestamp' under 'columns' (columns.{self.event_timestamp}: timestamp), "
                "or name a timestamp column",
            )
        self._check_model_columns()
        self._check_extensions()
        metrics = TASK_METRICS[self.target.task]
        if self.promotion.metric not in metrics:
            raise SpecProblem(
                "promotion.metric",
                f"{self.promotion.metric!r} is not a {self.target.task} metric",
                f"use one of {', '.join(metrics)}, or leave it out (default for {self.target.task}: {metrics[0]})",
            )
        if "ab" in self.model_fields_set and self.rollout != "ab":
            raise SpecProblem(
                "ab", "an 'ab' section is set but rollout is 'canary'", "add 'rollout: ab', or remove 'ab'"
            )
        target_type = self.columns[self.target.column]
        if (
            self.target.task == "classification"
            and self.target.threshold is None
            and target_type is not ColumnType.bool
        ):
            raise SpecProblem(
                "target.threshold",
                f"is required for a classification target of type {target_type.value!r} (label = column > threshold)",
                "set target.threshold, or declare the target column as bool",
            )
        return self

    def _check_extensions(self) -> None:
        """Each extension runs beside a stage this use case has, under a task id of its own."""
        has = {"ingest": True, "validate": bool(self.expectations), "features": self.features is not None}
        has["train"] = has["features"]
        seen: dict[str, set[str]] = {stage: set(tasks) for stage, tasks in EXTENSION_STAGES.items()}
        for i, ext in enumerate(self.extensions):
            if not has[ext.stage]:
                section = "expectations" if ext.stage == "validate" else "features"
                raise SpecProblem(
                    f"extensions[{i}].{ext.when}",
                    f"this use case has no {ext.stage} DAG (no '{section}' section)",
                    f"add a '{section}' section, or run the extension beside another stage",
                )
            if ext.task_id in seen[ext.stage]:
                raise SpecProblem(
                    f"extensions[{i}]",
                    f"task id {ext.task_id!r} is already taken in the {ext.stage} DAG",
                    "give the extension a 'name' of its own",
                )
            seen[ext.stage].add(ext.task_id)

    def _check_model_columns(self) -> None:
        """`model.slices` and `model.categorical` name columns of the training set (with features: its
        entity keys, request features and view features; the source's other columns never reach it)."""
        if self.features is None:
            return
        features = self.features
        for i, name in enumerate(features.request_features):  # the model reads them as numbers (float32)
            kind = self.columns.get(name)
            if kind in (ColumnType.string, ColumnType.timestamp) and name not in features.calendar:
                fix = (
                    f"remove it from request_features and list it under features.entities ({name}: string) "
                    "and model.categorical, where strings are fed as categories"
                    if kind is ColumnType.string
                    else "remove it from request_features; use a calendar feature of it (features.calendar: hour, "
                    "weekday, month ...) instead"
                )
                raise SpecProblem(
                    f"features.request_features[{i}]",
                    f"{name!r} is a {kind.value} column, but request features are fed to the model as numbers",
                    fix,
                )
        inputs = [*features.entities, *features.request_features, *(f for v in features.views for f in v.features)]
        for field_name, columns in (("model.slices", self.model.slices), ("model.categorical", self.model.categorical)):
            for i, column in enumerate(columns or []):
                if column not in inputs:
                    raise SpecProblem(
                        f"{field_name}[{i}]",
                        f"{column!r} is not a column of the training set",
                        f"use one of the entities, request features or view features ({', '.join(inputs)}), or "
                        "add it to features.request_features",
                    )

    _folder: Path | None = PrivateAttr(default=None)

    @property
    def folder(self) -> Path | None:
        """The folder the spec was loaded from: its `module:function` code and calendar files are read there
        wherever the spec travels (check, DAG tasks, trainer, gateway). None for a spec made in code."""
        return self._folder

    def located(self, folder: str | Path) -> UseCase:
        """This spec, known to live in `folder` (set by `load_usecase` and the spec cache)."""
        self._folder = Path(folder).absolute()
        return self

    @property
    def timestamp_column(self) -> str:
        if isinstance(self.source, PostgresSource) and self.source.timestamp_column:
            return self.source.timestamp_column
        return self.event_timestamp


def describe_validation_error(err: ValidationError) -> str:
    """Every error of `err` as `<field>: <problem>. Fix: <what to do>`, joined with '; '."""
    root = globals().get(err.title)
    root = root if isinstance(root, type) and issubclass(root, BaseModel) else UseCase
    return "; ".join(p.line() for p in spec_problems(err, root))


def spec_error(spec_file: Path, field: str, problem: str, fix: str) -> SpecError:
    """`<usecase>: <file>: <field>: <problem>. Fix: <fix>` (the use case is the spec's folder name)."""
    return SpecError(f"{spec_file.parent.name}: {spec_file}: {field}: {problem}. Fix: {fix}")


def load_usecase(path: str | Path) -> UseCase:
    """Load and check one spec: `path` is the use-case folder or its `usecase.yaml`.

    Every error is a `SpecError` whose lines read `<usecase>: <file>: <field>: <problem>. Fix: <what to do>`.
    """
    path = Path(path)
    spec_file = path / SPEC_FILE if path.is_dir() else path
    if not spec_file.is_file():
        raise spec_error(
            spec_file, SPEC_FILE, "use-case spec not found", f"each use case needs a {SPEC_FILE} in its folder"
        )
    try:
        raw = yaml.load(spec_file.read_text(), Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f"line {where.line + 1}" if where else "(file)"
        raise spec_error(spec_file, line, f"not valid YAML: {exc}", "fix the YAML syntax at that line") from None
    if not isinstance(raw, dict):
        raise spec_error(spec_file, "(top level)", "the spec must be a mapping of fields", "write 'field: value' lines")
    try:
        spec = UseCase.model_validate(raw)
    except ValidationError as exc:
        prefix = f"{spec_file.parent.name}: {spec_file}: "
        raise SpecError("\n".join(p.line(prefix) for p in spec_problems(exc, UseCase))) from None
    if spec.name != spec_file.parent.name:
        raise spec_error(
            spec_file,
            "name",
            f"{spec.name!r} differs from its folder name {spec_file.parent.name!r}",
            "rename the folder or the 'name' field so they are equal",
        )
    spec = _with_resolved_pod_template(spec, spec_file).located(spec_file.parent)
    _check_feature_section(spec, spec_file)
    _check_extension_code(spec, spec_file)
    _check_expectation_code(spec, spec_file)
    return spec


def _check_expectation_code(spec: UseCase, spec_file: Path) -> None:
    """Each custom expectation's `module:function` exists and takes a frame and its params (`validate.custom`)."""
    rules = [*spec.expectations, *(r for s in spec.sources.values() for r in s.expectations)]
    if not any(r.type == "custom" for r in rules):
        return
    from aerodrome.validate.custom import check_custom_expectations

    problems = check_custom_expectations(spec, spec_file.parent)
    if problems:
        raise SpecError("\n".join(spec_error(spec_file, *problem).args[0] for problem in problems))


def _check_feature_section(spec: UseCase, spec_file: Path) -> None:
    """The `features:` section against the columns, the folder and the schedule (`aerodrome.features.checks`)."""
    if spec.features is None:
        return
    from aerodrome.features.checks import validate_features

    schedule = spec.schedule
    sources = getattr(spec, "sources", None)  # second sources, once the spec declares them
    problems = validate_features(
        spec.features,
        spec.columns,
        spec_file.parent,
        sources={n: dict(getattr(s, "columns", {}) or {}) for n, s in dict(sources).items()} if sources else None,
        schedule_days=(schedule.end_date - schedule.start_date).days + 1 if schedule.end_date else None,
        event_timestamp=spec.event_timestamp,
        target=spec.target.column,
        leaky_columns=spec.model.leaky_columns,
    )
    if problems:
        raise SpecError("\n".join(f"{spec_file.parent.name}: {spec_file}: {line}" for line in problems))


def _check_extension_code(spec: UseCase, spec_file: Path) -> None:
    """Each extension's `module:function` imports and takes one argument (a `StepContext`)."""
    if not spec.extensions:
        return
    from aerodrome.extensions import ExtensionImportError, resolve_extension

    for i, ext in enumerate(spec.extensions):
        try:
            resolve_extension(ext.task, spec_file.parent)
        except ExtensionImportError as exc:
            raise spec_error(spec_file, f"extensions[{i}].task", exc.problem, exc.fix) from None


def _with_resolved_pod_template(spec: UseCase, spec_file: Path) -> UseCase:
    """`model.resources.pod_template` as an absolute path to an existing file (relative = to the spec's folder)."""
    resources = spec.model.resources
    if not resources.pod_template:
        return spec
    template = Path(resources.pod_template)
    template = template if template.is_absolute() else spec_file.parent / template
    if not template.is_file():
        raise spec_error(
            spec_file,
            "model.resources.pod_template",
            f"{template} not found",
            "give a path relative to the use-case folder (or absolute) of an existing pod template",
        )
    resources = resources.model_copy(update={"pod_template": str(template.resolve())})
    return spec.model_copy(update={"model": spec.model.model_copy(update={"resources": resources})})


def discover_usecases(usecases_dir: str | Path) -> list[UseCase]:
    """Every use case under `usecases_dir`, sorted by name (folders without a spec are ignored)."""
    root = Path(usecases_dir)
    return [load_usecase(d) for d in sorted(root.iterdir()) if (d / SPEC_FILE).is_file()]
