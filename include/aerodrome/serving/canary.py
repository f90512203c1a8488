"""The canary's judgement of one traffic step: the challenger against the champion on the same live window.

Checks (each a `Gate` with its figures): enough challenger traffic to judge; the challenger's error
rate (requests that raised and were answered by the champion); its p99 latency, absolute and against
the champion's; the shift of its prediction distribution from the champion's (population stability
index over the champion's deciles); and, once enough outcomes have arrived, its online metric. The
shift is a proxy for harm while outcomes are missing: once both models have `min_labelled` outcomes,
the online metric decides (a model retrained on drifted data is expected to predict differently).
`breach` is the early verdict a running analysis wait uses to stop at the first sign of harm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aerodrome.registry.gates import Gate
from aerodrome.usecase import CanaryPolicy

PSI_BINS = 10
MIN_PSI_SAMPLE = 50


def psi(reference: list[float], current: list[float], bins: int = PSI_BINS) -> float:
    """Population stability index of `current` against `reference`, over the reference's quantile bins."""
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    share = [
        np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1) / len(x) for x in (ref, cur)
    ]
    expected, actual = (np.clip(s, 1e-4, None) for s in share)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class StepVerdict:
    percent: float
    checks: list[Gate]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def reasons(self) -> str:
        return "; ".join(f"{c.name}: {c.detail}" for c in self.checks if not c.passed)

    def lines(self) -> list[str]:
        head = f"canary step {self.percent:g} %: {'PASSED' if self.passed else 'FAILED'}"
        return [head, *(f"  [{'pass' if c.passed else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks)]


def breach(policy: CanaryPolicy, aliases: dict[str, dict[str, Any]]) -> str | None:
    """Harm clear enough to stop before the window ends: errors or latency over the limits, with enough traffic."""
    challenger = aliases.get("challenger") or {}
    if challenger.get("requests", 0) < policy.min_requests:
        return None
    if challenger["error_rate"] > policy.max_error_rate:
        return f"challenger error rate {challenger['error_rate']:.1%} > {policy.max_error_rate:.1%}"
    p99 = challenger.get("p99_ms")
    if p99 is not None and p99 > policy.max_p99_latency_ms:
        return f"challenger p99 {p99:.1f} ms > {policy.max_p99_latency_ms} ms"
    return None


def analyze_step(policy: CanaryPolicy, task: str, percent: float, aliases: dict[str, dict[str, Any]]) -> StepVerdict:
    """Judge one step from the gateway's window summary (`GET /v1/{usecase}/window`)."""
    ours, theirs = aliases.get("challenger") or {}, aliases.get("champion") or {}
    requests = int(ours.get("requests", 0))
    checks = [
        Gate(
            "traffic",
            requests >= policy.min_requests,
            f"{requests} challenger request(s) in the window (needs {policy.min_requests})",
        )
    ]
    if requests:
        rate = float(ours["error_rate"])
        checks.append(
            Gate("errors", rate <= policy.max_error_rate, f"error rate {rate:.2%} (limit {policy.max_error_rate:.2%})")
        )
    if ours.get("p99_ms") is not None:
        p99, reference = float(ours["p99_ms"]), theirs.get("p99_ms")
        ratio = p99 / reference if reference else None
        ok = p99 <= policy.max_p99_latency_ms and (ratio is None or ratio <= policy.max_latency_ratio)
        against = (
            f", {ratio:.2f}x the champion's {reference:.1f} ms (limit {policy.max_latency_ratio}x)" if ratio else ""
        )
        checks.append(Gate("latency", ok, f"p99 {p99:.1f} ms (limit {policy.max_p99_latency_ms} ms){against}"))
    metric = "online_log_loss" if task == "classification" else "online_mae"
    outcomes = min(ours.get("labelled", 0), theirs.get("labelled", 0)) >= policy.min_labelled
    mine, reference_predictions = ours.get("predictions") or [], theirs.get("predictions") or []
    if len(mine) >= MIN_PSI_SAMPLE and len(reference_predictions) >= MIN_PSI_SAMPLE:
        shift = psi(reference_predictions, mine)
        within = shift <= policy.max_prediction_psi
        detail = f"PSI {shift:.3f} of its predictions vs the champion's (limit {policy.max_prediction_psi})"
        if outcomes and not within:  # a model retrained on drifted data should predict differently
            detail += "; the outcomes below judge it instead"
        checks.append(Gate("prediction_shift", within or outcomes, detail))
    if outcomes:
        new, old = float(ours[metric]), float(theirs[metric])
        worse = (new - old) / old if old else new - old
        checks.append(
            Gate(
                "online_metric",
                worse <= policy.max_online_regression,
                f"{metric} {new:.4f} vs champion {old:.4f} ({worse:+.1%}, limit +{policy.max_online_regression:.0%}) "
                f"on {ours['labelled']} / {theirs['labelled']} labelled predictions",
            )
        )
    figures = {alias: {k: v for k, v in stats.items() if k != "predictions"} for alias, stats in aliases.items()}
    return StepVerdict(percent, checks, figures)
