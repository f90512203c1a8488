"""One served batch against the champion's reference: column drift, prediction drift, realized metric.

Every model feature is counted into the reference's bins and scored with its type's method and
threshold (`drift.numeric`, `drift.categorical`; see `aerodrome.drift.stats` for why those). The data
drifts when the share of drifted features exceeds `drift.max_drifted_share`. The same days' validated
(raw) rows are scored too, on the model's columns that the raw schema holds: each source is judged on
its own rows and columns, and drift in either is dataset drift (served rows show what the model saw,
validated rows what arrived upstream, also on a day with little traffic). The champion's predictions
are scored the same way (`drift.prediction`). Where labels have arrived, the promotion metric on the
joined rows is compared with the champion's holdout figure; the coverage (labelled / served) is shown,
and under `drift.min_labelled` labelled rows the metric is reported but not judged.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from aerodrome.drift.reference import Reference
from aerodrome.drift.stats import categorical_shares, numeric_shares, score
from aerodrome.usecase import HIGHER_IS_BETTER, DriftPolicy, DriftTest

TOP_SHOWN = 5


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # numeric | categorical | prediction
    method: str
    score: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.score >= self.threshold


@dataclass(frozen=True)
class Realized:
    """The promotion metric on the labelled part of the batch, against the champion's holdout."""

    metric: str
    value: float | None
    holdout: float | None
    labelled: int
    served: int
    judged: bool
    breached: bool

    @property
    def coverage(self) -> float:
        return self.labelled / self.served if self.served else 0.0


def _drifted(columns: list[ColumnDrift]) -> list[ColumnDrift]:
    return sorted((c for c in columns if c.drifted), key=lambda c: -c.score)


def _share(columns: list[ColumnDrift]) -> float:
    return len(_drifted(columns)) / len(columns) if columns else 0.0


def _names(columns: list[ColumnDrift]) -> str:
    return ", ".join(f"{c.column} ({c.method} {c.score:.3f})" for c in columns[:TOP_SHOWN])


def _top(columns: list[ColumnDrift]) -> list[str]:
    ranked = sorted(columns, key=lambda c: -c.score)[:TOP_SHOWN]
    return [
        f"  {'*' if c.drifted else ' '} {c.column}: {c.method} {c.score:.4f} (threshold {c.threshold:g})"
        for c in ranked
    ]


@dataclass(frozen=True)
class ValidatedDrift:
    """The validated (raw) rows of the checked days, scored on the model's columns the raw schema holds."""

    days: list[str]
    rows: int
    columns: list[ColumnDrift] = field(default_factory=list)

    @property
    def drifted(self) -> list[ColumnDrift]:
        return _drifted(self.columns)

    @property
    def drifted_share(self) -> float:
        return _share(self.columns)


@dataclass(frozen=True)
class DriftResult:
    usecase: str
    version: str
    days: list[str]
    rows: int
    policy: dict[str, Any]
    columns: list[ColumnDrift] = field(default_factory=list)
    prediction: ColumnDrift | None = None
    realized: Realized | None = None
    validated: ValidatedDrift | None = None

    @property
    def served_judged(self) -> bool:
        return self.rows >= self.policy["min_rows"]

    @property
    def validated_judged(self) -> bool:
        return (
            self.validated is not None
            and bool(self.validated.columns)
            and self.validated.rows >= self.policy["min_rows"]
        )

    @property
    def judged(self) -> bool:
        """Either source has `drift.min_rows` rows: the policy can decide."""
        return self.served_judged or self.validated_judged

    @property
    def drifted(self) -> list[ColumnDrift]:
        """The served features that drifted, most first (the validated ones: `validated.drifted`)."""
        return _drifted(self.columns)

    @property
    def drifted_share(self) -> float:
        return _share(self.columns)

    @property
    def served_drift(self) -> bool:
        return self.served_judged and self.drifted_share > self.policy["max_drifted_share"]

    @property
    def validated_drift(self) -> bool:
        v = self.validated
        return self.validated_judged and v is not None and v.drifted_share > self.policy["max_drifted_share"]

    @property
    def dataset_drift(self) -> bool:
        """Served or validated data beyond `drift.max_drifted_share`."""
        return self.served_drift or self.validated_drift

    @property
    def prediction_drift(self) -> bool:
        return self.served_judged and self.prediction is not None and self.prediction.drifted

    def reasons(self) -> list[str]:
        """Why a retrain is due (empty: the batch is within the policy)."""
        out = []
        limit = self.policy["max_drifted_share"]
        if self.served_drift:
            out.append(
                f"data drift: {len(self.drifted)}/{len(self.columns)} features drifted "
                f"({self.drifted_share:.0%} > {limit:.0%}): {_names(self.drifted)}"
            )
        v = self.validated
        if self.validated_drift and v is not None:
            out.append(
                f"validated data drift: {len(v.drifted)}/{len(v.columns)} raw columns drifted "
                f"({v.drifted_share:.0%} > {limit:.0%}): {_names(v.drifted)}"
            )
        if self.prediction_drift and self.prediction is not None:
            out.append(f"prediction drift: {self.prediction.method} {self.prediction.score:.3f}")
        r = self.realized
        if r is not None and r.breached:
            out.append(
                f"performance: realized {r.metric} {r.value:.4f} vs holdout {r.holdout:.4f} on {r.labelled:,} labelled"
            )
        return out

    def lines(self) -> list[str]:
        """The summary for a task log: the served section, then the validated one."""
        days = self.days[0] if len(self.days) == 1 else f"{self.days[0]} .. {self.days[-1]}"
        limit = self.policy["max_drifted_share"]
        out = [f"Drift {self.usecase} v{self.version}, served {days}: {self.rows:,} rows"]
        if not self.served_judged:
            out.append(f"  too few rows to judge (drift.min_rows {self.policy['min_rows']})")
        else:
            out.append(
                f"  dataset drift: {'YES' if self.served_drift else 'no'} ({len(self.drifted)}/{len(self.columns)} "
                f"features, {self.drifted_share:.0%}; limit {limit:.0%})"
            )
            out += _top(self.columns)
            if self.prediction is not None:
                p = self.prediction
                out.append(
                    f"  prediction drift: {'YES' if p.drifted else 'no'} ({p.method} {p.score:.4f}, {p.threshold:g})"
                )
            r = self.realized
            if r is not None:
                value = "n/a" if r.value is None else f"{r.value:.4f}"
                holdout = "n/a" if r.holdout is None else f"{r.holdout:.4f}"
                verdict = "BELOW THE FLOOR" if r.breached else ("ok" if r.judged else "not judged (too few labels)")
                out.append(
                    f"  realized {r.metric}: {value} vs holdout {holdout} on {r.labelled:,}/{r.served:,} labelled "
                    f"({r.coverage:.0%} coverage): {verdict}"
                )
        v = self.validated
        if v is not None:
            out.append(f"validated data {days}: {v.rows:,} rows, {len(v.columns)} raw columns of the model")
            if not self.validated_judged:
                out.append(f"  too few rows or columns to judge (drift.min_rows {self.policy['min_rows']})")
            else:
                out.append(
                    f"  dataset drift: {'YES' if self.validated_drift else 'no'} ({len(v.drifted)}/{len(v.columns)} "
                    f"columns, {v.drifted_share:.0%}; limit {limit:.0%})"
                )
                out += _top(v.columns)
        if self.judged:
            out.append("  retrain: " + ("; ".join(self.reasons()) or "not needed"))
        return out

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            judged=self.judged,
            served_judged=self.served_judged,
            dataset_drift=self.dataset_drift,
            served_drift=self.served_drift,
            drifted_share=self.drifted_share,
            drifted=[c.column for c in self.drifted],
            prediction_drift=self.prediction_drift,
            reasons=self.reasons(),
        )
        for c in out["columns"]:
            c["drifted"] = c["score"] >= c["threshold"]
        if self.validated is not None:
            out["validated"].update(
                judged=self.validated_judged,
                dataset_drift=self.validated_drift,
                drifted_share=self.validated.drifted_share,
                drifted=[c.column for c in self.validated.drifted],
            )
            for c in out["validated"]["columns"]:
                c["drifted"] = c["score"] >= c["threshold"]
        if self.realized is not None:
            out["realized"]["coverage"] = self.realized.coverage
        return out


def _column(name: str, kind: str, test: DriftTest, reference: list[float], current: np.ndarray) -> ColumnDrift:
    return ColumnDrift(name, kind, test.method, round(score(test.method, reference, current), 6), test.threshold)


def column_drift(
    reference: Reference, frame: pd.DataFrame, policy: DriftPolicy, only: Collection[str] | None = None
) -> list[ColumnDrift]:
    """Each reference feature of `frame` (of `only`, when given) scored against its stored bins (a column
    absent from the batch counts as entirely missing)."""
    out = []
    empty = pd.Series([None] * len(frame), dtype=object)
    for name, stats in reference.numeric.items():
        if only is not None and name not in only:
            continue
        values = frame.get(name, empty)
        out.append(_column(name, "numeric", policy.numeric, stats["shares"], numeric_shares(values, stats["edges"])))
    for name, stats in reference.categorical.items():
        if only is not None and name not in only:
            continue
        values = frame.get(name, empty)
        shares = categorical_shares(values, stats["values"])
        out.append(_column(name, "categorical", policy.categorical, stats["shares"], shares))
    return out


def realized_metric(
    task: str, metric: str, holdout: float | None, predictions: Any, labels: Any, served: int, policy: DriftPolicy
) -> Realized:
    """The `metric` on the labelled rows; breached when it falls `max_metric_drop` below `holdout`
    (absolute for AUCs, relative for error metrics) on at least `min_labelled` rows."""
    from aerodrome.train.evaluate import score as task_score

    labels = np.asarray(labels, dtype=np.float64)
    value = task_score(task, labels, np.asarray(predictions, dtype=np.float64)).get(metric) if len(labels) else None
    judged = value is not None and holdout is not None and len(labels) >= policy.min_labelled
    if not judged:
        breached = False
    elif metric in HIGHER_IS_BETTER:
        breached = holdout - value > policy.max_metric_drop
    else:
        breached = (value - holdout) > policy.max_metric_drop * abs(holdout)
    return Realized(metric, value, holdout, len(labels), served, judged, breached)


def check_validated(
    reference: Reference, frame: pd.DataFrame, raw_columns: Collection[str], policy: DriftPolicy, days: list[str]
) -> ValidatedDrift:
    """The validated rows of `days` on the reference features that are `raw_columns` (the raw schema's)."""
    present = [c for c in raw_columns if c in frame]
    return ValidatedDrift(list(days), len(frame), column_drift(reference, frame, policy, present) if len(frame) else [])


def check_batch(
    reference: Reference,
    frame: pd.DataFrame,
    policy: DriftPolicy,
    days: list[str],
    predictions: Any = None,
    realized: Realized | None = None,
    validated: ValidatedDrift | None = None,
) -> DriftResult:
    """The drift of served `frame` (its `predictions`: the reference version's) against `reference`;
    `validated`: the same days' raw rows, already scored (`check_validated`)."""
    prediction = None
    if predictions is not None and reference.prediction is not None and len(predictions):
        current = numeric_shares(predictions, reference.prediction["edges"])
        prediction = _column("prediction", "prediction", policy.prediction, reference.prediction["shares"], current)
    return DriftResult(
        usecase=reference.usecase,
        version=reference.version,
        days=list(days),
        rows=len(frame),
        policy=policy.model_dump(),
        columns=column_drift(reference, frame, policy) if len(frame) else [],  # no rows: no score
        prediction=prediction,
        realized=realized,
        validated=validated,
    )
