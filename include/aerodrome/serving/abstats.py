"""The A/B test's statistics: two independent samples of per-row errors, champion (A) vs challenger (B).

Classification: two-proportion z-test (pooled SE, two-sided) with Newcombe's hybrid score interval and
Cohen's h; regression: Welch's t-test on absolute errors with its t interval and Cohen's d. Why these
(and not a paired test) is in `aerodrome.serving.abtest`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

POWER = 0.8  # of the sample sizes an inconclusive verdict quotes


@dataclass(frozen=True)
class Comparison:
    """B against A on one error measure; `difference` = B - A (negative: the challenger errs less)."""

    metric: str
    test: str
    n_champion: int
    n_challenger: int
    champion: float
    challenger: float
    difference: float
    relative_change: float | None  # difference / champion (None when the champion never erred)
    ci_low: float
    ci_high: float
    ci_method: str
    confidence: float
    statistic: float | None  # z or t (None: infinite, both samples constant and different)
    df: float | None  # Welch's degrees of freedom
    p_value: float
    effect_size: float | None
    effect_size_name: str
    alpha: float

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def improvement(self) -> float | None:
        """The challenger's relative reduction of the champion's error (negative: it errs more)."""
        return None if self.relative_change is None else -self.relative_change

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


def _z(alpha: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2))


def wilson_interval(errors: int, n: int, alpha: float) -> tuple[float, float]:
    """Wilson score interval of the proportion `errors / n` at confidence 1 - alpha."""
    z, p = _z(alpha), errors / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)


def compare_error_rates(errors_a: int, n_a: int, errors_b: int, n_b: int, alpha: float) -> Comparison:
    """Two-proportion z-test (pooled) and Newcombe interval of B's error rate minus A's."""
    from scipy.stats import norm

    p_a, p_b = errors_a / n_a, errors_b / n_b
    difference = p_b - p_a
    pooled = (errors_a + errors_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    # se == 0: neither or both models erred on every row, so the rates are equal: no evidence either way
    z = difference / se if se > 0 else 0.0
    low_a, high_a = wilson_interval(errors_a, n_a, alpha)
    low_b, high_b = wilson_interval(errors_b, n_b, alpha)
    return Comparison(
        metric="error_rate",
        test="two-proportion z-test (pooled)",
        n_champion=n_a,
        n_challenger=n_b,
        champion=p_a,
        challenger=p_b,
        difference=difference,
        relative_change=difference / p_a if p_a else None,
        ci_low=difference - math.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2),
        ci_high=difference + math.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2),
        ci_method="Newcombe hybrid score (Wilson)",
        confidence=1 - alpha,
        statistic=z,
        df=None,
        p_value=float(2 * norm.sf(abs(z))),
        effect_size=2 * math.asin(math.sqrt(p_b)) - 2 * math.asin(math.sqrt(p_a)),
        effect_size_name="cohens_h",
        alpha=alpha,
    )


def compare_absolute_errors(a: np.ndarray, b: np.ndarray, alpha: float) -> Comparison:
    """Welch's t-test and t interval of B's mean absolute error minus A's (each sample needs 2 rows or more)."""
    from scipy.stats import t as student

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n_a, n_b = len(a), len(b)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    var_a, var_b = float(a.var(ddof=1)), float(b.var(ddof=1))
    difference = mean_b - mean_a
    se = math.sqrt(var_a / n_a + var_b / n_b)
    if se > 0:
        df = se**4 / ((var_a / n_a) ** 2 / (n_a - 1) + (var_b / n_b) ** 2 / (n_b - 1))
        statistic: float | None = difference / se
        p_value = float(2 * student.sf(abs(statistic), df))
        half = float(student.ppf(1 - alpha / 2, df)) * se
    else:  # both samples constant: equal means are no evidence, different ones are certain
        df, half = None, 0.0
        statistic, p_value = (0.0, 1.0) if difference == 0 else (None, 0.0)
    pooled_sd = math.sqrt(((n_a - 1) * var_a + (n_b - 1) * var_b) / (n_a + n_b - 2))
    effect = difference / pooled_sd if pooled_sd > 0 else (0.0 if difference == 0 else None)
    return Comparison(
        metric="mean_absolute_error",
        test="Welch t-test",
        n_champion=n_a,
        n_challenger=n_b,
        champion=mean_a,
        challenger=mean_b,
        difference=difference,
        relative_change=difference / mean_a if mean_a else None,
        ci_low=difference - half,
        ci_high=difference + half,
        ci_method="Welch t",
        confidence=1 - alpha,
        statistic=statistic,
        df=df,
        p_value=p_value,
        effect_size=effect,
        effect_size_name="cohens_d",
        alpha=alpha,
    )


def needed_per_model(
    task: str, a: np.ndarray, b: np.ndarray, alpha: float, min_effect: float, power: float = POWER
) -> int | None:
    """Labelled outcomes per model for the test at `alpha` to detect, with `power`, the smallest effect
    worth promoting (`min_effect` of the champion's error; without one, the difference observed).

    None when there is no effect to detect (e.g. equal errors and no `min_effect`)."""
    from scipy.stats import norm

    z_alpha, z_power = _z(alpha), float(norm.ppf(power))
    base, other = float(np.mean(a)), float(np.mean(b))
    target = base * (1 - min_effect) if min_effect > 0 else other
    delta = abs(base - target)
    if delta == 0:
        return None
    if task == "classification":  # Fleiss' formula, no continuity correction
        mean = (base + target) / 2
        spread = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_power * math.sqrt(
            base * (1 - base) + target * (1 - target)
        )
        n = spread**2 / delta**2
    else:
        n = (float(np.var(a, ddof=1)) + float(np.var(b, ddof=1))) * (z_alpha + z_power) ** 2 / delta**2
    return max(2, math.ceil(n)) if n > 0 else None


def compare(task: str, a: np.ndarray, b: np.ndarray, alpha: float) -> Comparison:
    """The task's test on per-row errors (`model_errors`) of the champion (`a`) and the challenger (`b`)."""
    if task == "classification":
        return compare_error_rates(int(a.sum()), len(a), int(b.sum()), len(b), alpha)
    return compare_absolute_errors(a, b, alpha)
