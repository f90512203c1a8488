"""Naive baselines of a task, scored on the same holdout as the model: a model must beat them clearly.

Classification: `positive_rate` (every event gets the training positive rate) and `one_feature` (the
single numeric feature whose binned positive rate ranks the training events best, as a rule).
Regression, per series (the use case's entity keys): `last_value` (the series' previous value),
`last_week` (its value at the same time seven days earlier) and `seasonal_mean` (its training mean
for the same weekday and hour). A baseline that cannot answer for an event (no history) says the
training mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

BINS = 10


@dataclass(frozen=True)
class Baseline:
    name: str
    predictions: np.ndarray
    note: str = ""


def naive_baselines(
    task: str,
    train: pd.DataFrame,
    train_labels: np.ndarray,
    holdout: pd.DataFrame,
    holdout_labels: np.ndarray,
    *,
    numeric: Sequence[str],
    series_keys: Sequence[str],
    timestamp: str,
) -> list[Baseline]:
    """Every naive baseline of `task`, as predictions for the holdout rows."""
    y_train = np.asarray(train_labels, dtype=np.float64)
    if task == "classification":
        return [
            Baseline("positive_rate", np.full(len(holdout), y_train.mean()), f"rate {y_train.mean():.4f}"),
            _one_feature_rule(train, y_train, holdout, numeric),
        ]
    keys = [k for k in series_keys if k in train.columns and k in holdout.columns]
    return _series_baselines(train, y_train, holdout, np.asarray(holdout_labels, dtype=np.float64), keys, timestamp)


def _binned_rule(values: pd.Series, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Quantile edges of `values`, the positive rate per bin (index 0: missing), and the overall rate."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    known = ~np.isnan(numbers)
    edges = np.unique(np.quantile(numbers[known], np.linspace(0, 1, BINS + 1)[1:-1])) if known.any() else np.array([])
    bins = np.where(known, np.searchsorted(edges, np.nan_to_num(numbers), side="right") + 1, 0)
    overall = float(labels.mean())
    sums = np.bincount(bins, weights=labels, minlength=len(edges) + 2)
    counts = np.bincount(bins, minlength=len(edges) + 2)
    rates = np.where(counts > 0, sums / np.maximum(counts, 1), overall)
    return edges, rates, overall


def _apply_rule(values: pd.Series, edges: np.ndarray, rates: np.ndarray) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    known = ~np.isnan(numbers)
    bins = np.where(known, np.searchsorted(edges, np.nan_to_num(numbers), side="right") + 1, 0)
    return rates[bins]


def _one_feature_rule(train: pd.DataFrame, y: np.ndarray, holdout: pd.DataFrame, numeric: Sequence[str]) -> Baseline:
    from sklearn.metrics import roc_auc_score

    best: tuple[float, str, np.ndarray, np.ndarray] | None = None
    if 0 < y.sum() < len(y):
        for column in numeric:
            edges, rates, _ = _binned_rule(train[column], y)
            auc = float(roc_auc_score(y, _apply_rule(train[column], edges, rates)))
            if best is None or auc > best[0]:
                best = (auc, column, edges, rates)
    if best is None:
        return Baseline("one_feature", np.full(len(holdout), y.mean()), "no usable feature")
    _, column, edges, rates = best
    return Baseline("one_feature", _apply_rule(holdout[column], edges, rates), f"feature {column}")


def _series_baselines(
    train: pd.DataFrame,
    y_train: np.ndarray,
    holdout: pd.DataFrame,
    y_holdout: np.ndarray,
    keys: list[str],
    timestamp: str,
) -> list[Baseline]:
    mean = float(y_train.mean())
    history = pd.concat(
        [
            train[[*keys, timestamp]].assign(_y=y_train, _holdout=False),
            holdout[[*keys, timestamp]].assign(_y=y_holdout, _holdout=True, _row=np.arange(len(holdout))),
        ],
        ignore_index=True,
    ).sort_values(timestamp, kind="stable")
    grouped = history.groupby(keys, sort=False, dropna=False)["_y"] if keys else history["_y"]
    history["_last"] = grouped.shift(1)
    ahead = history[[*keys, timestamp, "_y"]].rename(columns={"_y": "_week_ago"})
    ahead[timestamp] = ahead[timestamp] + pd.Timedelta(days=7)
    ahead = ahead.drop_duplicates([*keys, timestamp], keep="last")
    history = history.merge(ahead, on=[*keys, timestamp], how="left")
    stamps = pd.to_datetime(history[timestamp])
    history["_weekday"], history["_hour"] = stamps.dt.weekday, stamps.dt.hour
    season = [*keys, "_weekday", "_hour"]
    seasonal = history[~history["_holdout"]].groupby(season, dropna=False)["_y"].mean().rename("_seasonal")
    history = history.merge(seasonal, left_on=season, right_index=True, how="left")
    rows = history[history["_holdout"]].sort_values("_row")
    fill = {
        name: rows[column].fillna(mean).to_numpy(dtype=np.float64)
        for name, column in (("last_value", "_last"), ("last_week", "_week_ago"), ("seasonal_mean", "_seasonal"))
    }
    series = f"per {', '.join(keys)}" if keys else "one series"
    return [Baseline(name, values, series) for name, values in fill.items()]


def best_baseline(scores: dict[str, dict[str, float]], metric: str, higher_is_better: bool) -> tuple[str, float] | None:
    """The baseline with the best `metric` among `scores` (name -> metrics), if any reports it."""
    known = [(name, m[metric]) for name, m in scores.items() if metric in m]
    if not known:
        return None
    return (max if higher_is_better else min)(known, key=lambda item: item[1])
