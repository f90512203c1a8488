"""The promotion gates: each compares one figure with the spec's policy and says why it passed or failed.

Plain functions over numbers, so the policy is testable without a model. `gain` is how much better
`new` is than `reference`: the difference for metrics where higher is better (AUCs), the relative
reduction for error metrics (log-loss, MAE, RMSE), so one threshold means the same at any scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from aerodrome.usecase import HIGHER_IS_BETTER


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gain(metric: str, new: float, reference: float) -> float:
    """How much better `new` is than `reference` (negative: worse)."""
    if metric in HIGHER_IS_BETTER:
        return new - reference
    return (reference - new) / abs(reference) if reference else reference - new


def _how(metric: str) -> str:
    return "absolute" if metric in HIGHER_IS_BETTER else "relative"


def metric_gate(metric: str, candidate: float | None, champion: float | None, min_improvement: float) -> Gate:
    """The candidate improves the judged metric by at least `min_improvement` (or there is no champion)."""
    if candidate is None:
        return Gate("metric", False, f"the candidate has no {metric} on the holdout")
    if champion is None:
        return Gate("metric", True, f"{metric} {candidate:.4f}; no champion yet")
    delta = gain(metric, candidate, champion)
    verdict = "at least" if delta >= min_improvement else "below the required"
    return Gate(
        "metric",
        delta >= min_improvement,
        f"{metric} {candidate:.4f} vs champion {champion:.4f}: {_how(metric)} gain {delta:+.4f}, "
        f"{verdict} {min_improvement:+.4f}",
    )


def slice_gate(
    metric: str,
    candidate: dict[str, dict[str, dict[str, float]]],
    champion: dict[str, dict[str, dict[str, float]]] | None,
    max_regression: float,
    noise: Mapping[str, float] | None = None,
    alpha: float = 0.0,
) -> Gate:
    """No slice (column=value) scored for both models loses more than `max_regression` against the champion.

    With `noise` (`{"column=value": standard error of the paired gain}`, see `slice_noise`) and a
    family-wise false-alarm rate `alpha` > 0, a slice fails only when its loss is also significant:
    beyond z standard errors, z the one-sided Bonferroni bound for the k slices compared (alpha / k
    each), so twenty slices do not make twenty chances to stop a sound model on noise.
    """
    if champion is None:
        return Gate("slices", True, "no champion to compare slices with")
    noise = noise or {}
    losses = []
    for column, values in candidate.items():
        for value, figures in values.items():
            reference = champion.get(column, {}).get(value, {})
            if metric in figures and metric in reference:
                losses.append((-gain(metric, figures[metric], reference[metric]), f"{column}={value}"))
    if not losses:
        return Gate("slices", True, f"no slice has {metric} for both models")
    worst, where = max(losses)
    tested = sum(name in noise for _, name in losses)
    z = NormalDist().inv_cdf(1 - alpha / tested) if alpha > 0 and tested else 0.0

    def band(name: str) -> float:
        return z * noise[name] if name in noise else 0.0

    beyond = [(loss, name) for loss, name in losses if loss > max_regression]
    bad = sorted(
        (f"{name} ({loss:+.4f}" + (f", noise band {band(name):.4f})" if band(name) else ")"))
        for loss, name in beyond
        if loss > band(name)
    )
    noisy = sorted(f"{name} ({loss:+.4f} within {band(name):.4f})" for loss, name in beyond if loss <= band(name))
    test = f" (z {z:.2f}: family-wise alpha {alpha:g} over {tested} slices)" if z else ""
    if bad:
        return Gate("slices", False, f"{len(bad)} slice(s) lose more than {max_regression}: {', '.join(bad[:5])}{test}")
    if noisy:
        return Gate(
            "slices",
            True,
            f"worst slice {where}: {_how(metric)} loss {worst:+.4f}; beyond {max_regression} but within the noise "
            f"band: {', '.join(noisy[:5])}{test}",
        )
    return Gate("slices", True, f"worst slice {where}: {_how(metric)} loss {worst:+.4f} <= {max_regression}")


def baseline_gate(metric: str, candidate: float | None, baselines: dict[str, dict[str, float]], margin: float) -> Gate:
    """The candidate beats every naive baseline of its task by at least `margin`."""
    scored = {name: m[metric] for name, m in baselines.items() if metric in m}
    if candidate is None or not scored:
        return Gate("baselines", False, f"no naive baseline with {metric} was recorded for the candidate's run")
    pick = max if metric in HIGHER_IS_BETTER else min
    best = pick(scored, key=scored.__getitem__)
    delta = gain(metric, candidate, scored[best])
    shown = ", ".join(f"{name} {value:.4f}" for name, value in scored.items())
    if delta < margin:
        return Gate(
            "baselines",
            False,
            f"{metric} {candidate:.4f} does not beat the naive baseline {best} ({scored[best]:.4f}) by {margin} "
            f"({_how(metric)} gain {delta:+.4f}; baselines: {shown})",
        )
    return Gate("baselines", True, f"{metric} {candidate:.4f} beats the best naive baseline {best} by {delta:+.4f}")


def latency_gate(p99_ms: float, budget_ms: float) -> Gate:
    passed = p99_ms <= budget_ms
    return Gate("latency", passed, f"1-row prediction p99 {p99_ms:.2f} ms {'<=' if passed else '>'} {budget_ms} ms")


def signature_gate(inputs: dict[str, str] | None, numeric: list[str], categorical: list[str]) -> Gate:
    """The model's MLflow input signature takes exactly the serving schema: numbers and category strings."""
    if inputs is None:
        return Gate("signature", False, "the model version has no input signature")
    wanted = {**{c: "number" for c in numeric}, **{c: "string" for c in categorical}}
    missing = sorted(set(wanted) - set(inputs))
    extra = sorted(set(inputs) - set(wanted))
    numeric_types = {"double", "float", "long", "integer"}
    wrong = sorted(
        f"{c} ({inputs[c]}, wants {kind})"
        for c, kind in wanted.items()
        if c in inputs and (inputs[c] not in numeric_types if kind == "number" else inputs[c] != "string")
    )
    problems = [
        f"{label}: {', '.join(items)}"
        for label, items in (("missing", missing), ("not served", extra), ("wrong type", wrong))
        if items
    ]
    if problems:
        return Gate("signature", False, "the signature differs from the serving schema; " + "; ".join(problems))
    return Gate("signature", True, f"{len(numeric)} numeric + {len(categorical)} categorical inputs as served")


def digest_gate(recorded: str | None, actual: str) -> Gate:
    """The artifact is byte for byte the one the trainer registered."""
    if not recorded:
        return Gate("artifact", False, "no artifact digest was recorded at training: cannot prove integrity")
    if recorded != actual:
        return Gate("artifact", False, f"artifact digest {actual[:12]} differs from {recorded[:12]} (at training)")
    return Gate("artifact", True, f"artifact digest {actual[:12]} as recorded at training")
