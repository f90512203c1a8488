"""Distribution profiles on stored bins, and the drift scores between two of them.

A numeric column is profiled on the reference's decile edges (`(-inf, e1], (e1, e2], ..., (ek, inf)`,
duplicate edges of a discrete column merged) plus a missing bin; a categorical column on the
reference's `TOP_K` most frequent values plus `other` and missing. A served batch is then counted
into the same bins, so a check never needs the reference rows, only their shares.

Scores (the spec picks one per column type, `drift.numeric` / `drift.categorical`):

* `psi`, the population stability index `sum((c - r) * ln(c / r))`: the industry's scale for binned
  numeric shifts (< 0.1 stable, 0.1-0.2 moderate, > 0.2 significant), unbounded, so a column that moves
  entirely out of the reference's range scores high rather than saturating. Empty bins are floored
  at `EPSILON` (as Evidently does), which keeps it finite.
* `jensenshannon`, the Jensen-Shannon distance (base 2, in [0, 1]): symmetric and bounded, sound for
  categories where a new or vanished value would make PSI explode on one bin; it is Evidently's
  default for large samples (drift at >= 0.1), so our verdicts and the Evidently report agree.

The missing bin counts in both: a feature that starts arriving null drifts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

QUANTILES = np.linspace(0.1, 0.9, 9)
TOP_K = 20
EPSILON = 1e-4


def numeric_profile(values: pd.Series) -> dict[str, Any]:
    """Decile edges of `values` and the shares of its bins (the last share: missing)."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    present = x[~np.isnan(x)]
    edges = np.unique(np.quantile(present, QUANTILES)) if len(present) else np.empty(0)
    return {"edges": edges.tolist(), "shares": numeric_shares(x, edges).tolist()}


def numeric_shares(values: Any, edges: Any) -> np.ndarray:
    """Shares of `values` in the bins cut at `edges` (len(edges) + 1 bins), then the missing share."""
    x = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=np.float64)
    missing = np.isnan(x)
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=np.float64), x[~missing]), minlength=len(edges) + 1)
    return _shares(np.append(counts, missing.sum()), len(x))


def categorical_profile(values: pd.Series, top_k: int = TOP_K) -> dict[str, Any]:
    """The `top_k` most frequent values and the shares of each, of every other value and of missing."""
    counts = values.dropna().astype(str).value_counts()
    kept = sorted(counts.index[:top_k].tolist())
    return {"values": kept, "shares": categorical_shares(values, kept).tolist()}


def categorical_shares(values: pd.Series, kept: list[str]) -> np.ndarray:
    """Shares of each of `kept`, then of any other value, then of missing."""
    missing = values.isna()
    present = values[~missing].astype(str)
    counts = present.value_counts()
    known = np.array([counts.get(v, 0) for v in kept], dtype=np.float64)
    return _shares(np.concatenate([known, [len(present) - known.sum(), missing.sum()]]), len(values))


def _shares(counts: np.ndarray, total: int) -> np.ndarray:
    return counts.astype(np.float64) / total if total else np.zeros(len(counts))


def psi(reference: Any, current: Any) -> float:
    r, c = (np.clip(np.asarray(s, dtype=np.float64), EPSILON, None) for s in (reference, current))
    return float(np.sum((c - r) * np.log(c / r)))


def jensenshannon(reference: Any, current: Any) -> float:
    r, c = (np.asarray(s, dtype=np.float64) for s in (reference, current))
    r, c = r / r.sum(), c / c.sum()
    m = (r + c) / 2

    def kl(p: np.ndarray) -> float:
        inside = p > 0
        return float(np.sum(p[inside] * np.log2(p[inside] / m[inside])))

    return float(np.sqrt(max((kl(r) + kl(c)) / 2, 0.0)))


SCORES = {"psi": psi, "jensenshannon": jensenshannon}


def score(method: str, reference: Any, current: Any) -> float:
    """The drift score of `current` shares against `reference` shares (same bins) by `method`."""
    return SCORES[method](reference, current)
