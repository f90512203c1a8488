"""How much of a slice's loss against the champion is noise: the standard error of the paired difference.

Both models are scored on the same holdout rows, so the difference is paired: ROC-AUC uses DeLong's
covariance of the two AUCs (the rows' placement values); the per-row error metrics (log-loss, MAE) the
standard error of the mean per-row difference; RMSE its delta-method transform of the squared errors;
PR-AUC a paired bootstrap. The figures are on the scale of `gates.gain` (absolute for AUCs, relative to
the champion's value for error metrics), so the slice gate can compare a loss with z x SE.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.stats import rankdata

BOOTSTRAP_DRAWS = 200


def _placements(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: per positive, the share of negatives it outranks; per negative,
    the share of positives that outrank it (ties count one half)."""
    pos, neg = scores[positive], scores[~positive]
    overall = rankdata(scores)
    v10 = (overall[positive] - rankdata(pos)) / len(neg)
    v01 = 1.0 - (overall[~positive] - rankdata(neg)) / len(pos)
    return v10, v01


def delong_difference_se(labels: np.ndarray, new: np.ndarray, reference: np.ndarray) -> float | None:
    """Standard error of AUC(new) - AUC(reference) on the same rows (DeLong et al., 1988)."""
    positive = np.asarray(labels) > 0.5
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        return None
    a10, a01 = _placements(np.asarray(new, dtype=np.float64), positive)
    b10, b01 = _placements(np.asarray(reference, dtype=np.float64), positive)
    s10, s01 = np.cov(np.vstack([a10, b10])), np.cov(np.vstack([a01, b01]))
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return float(np.sqrt(max(variance, 0.0)))


def _row_losses(metric: str, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    if metric == "log_loss":
        p = np.clip(predictions, 1e-7, 1 - 1e-7)
        return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    if metric == "mae":
        return np.abs(predictions - labels)
    return (predictions - labels) ** 2  # rmse: squared errors, transformed below


def _bootstrap_pr_auc_se(labels: np.ndarray, new: np.ndarray, reference: np.ndarray, seed: int = 7) -> float | None:
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(BOOTSTRAP_DRAWS):
        rows = rng.integers(0, len(labels), len(labels))
        y = labels[rows]
        if 0 < y.sum() < len(y):
            differences.append(average_precision_score(y, new[rows]) - average_precision_score(y, reference[rows]))
    return float(np.std(differences, ddof=1)) if len(differences) > 1 else None


def paired_gain_se(metric: str, labels: np.ndarray, new: np.ndarray, reference: np.ndarray) -> float | None:
    """Standard error of `gates.gain(metric, new, reference)` over these rows; None when it cannot be told."""
    y = np.asarray(labels, dtype=np.float64)
    a, b = np.asarray(new, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if len(y) < 2:
        return None
    if metric == "roc_auc":
        return delong_difference_se(y, a, b)
    if metric == "pr_auc":
        return _bootstrap_pr_auc_se(y, a, b)
    if metric not in {"log_loss", "mae", "rmse"}:
        return None
    ours, theirs = _row_losses(metric, y, a), _row_losses(metric, y, b)
    se = float(np.std(ours - theirs, ddof=1) / np.sqrt(len(y)))
    if metric == "rmse":  # d rmse = d mse / (2 rmse): relative to the reference rmse, d mse / (2 mse)
        mse = float(theirs.mean())
        return se / (2 * mse) if mse else None
    scale = float(theirs.mean())
    return se / abs(scale) if scale else None


def slice_noise(
    metric: str,
    frame: pd.DataFrame,
    labels: np.ndarray,
    new: np.ndarray,
    reference: np.ndarray,
    slices: Iterable[str],
    min_rows: int,
) -> dict[str, float]:
    """`{"column=value": SE of the gain}` for each slice value with at least `min_rows` rows."""
    noise: dict[str, float] = {}
    labels, new, reference = np.asarray(labels), np.asarray(new), np.asarray(reference)
    for column in slices:
        values = frame[column].astype("string").fillna("missing").to_numpy()
        for value in pd.unique(values):
            mask = values == value
            if mask.sum() < min_rows:
                continue
            se = paired_gain_se(metric, labels[mask], new[mask], reference[mask])
            if se is not None:
                noise[f"{column}={value}"] = se
    return noise
