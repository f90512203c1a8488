"""The canary's judgement of a step (plain policy over the gateway's window summary) and PSI."""

from __future__ import annotations

import numpy as np
import pytest
from aerodrome.serving.canary import analyze_step, breach, psi
from aerodrome.serving.window import Served, TrafficWindow
from aerodrome.usecase import CanaryPolicy

POLICY = CanaryPolicy(min_requests=20, max_error_rate=0.01, max_p99_latency_ms=50, min_labelled=50)
RNG = np.random.default_rng(7)


def stats(requests=200, errors=0, p99=10.0, predictions=None, **extra):
    predictions = list(RNG.beta(2, 5, 500)) if predictions is None else predictions
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "predictions": predictions,
        "labelled": 0,
        **extra,
    }


def checks(verdict) -> dict[str, bool]:
    return {c.name: c.passed for c in verdict.checks}


def test_a_sound_challenger_passes_every_check():
    verdict = analyze_step(POLICY, "classification", 5, {"champion": stats(), "challenger": stats()})
    assert verdict.passed, verdict.lines()
    assert set(checks(verdict)) == {"traffic", "errors", "latency", "prediction_shift"}


@pytest.mark.parametrize(
    ("challenger", "failing"),
    [
        (stats(requests=5), "traffic"),
        (stats(errors=10), "errors"),
        (stats(p99=80.0), "latency"),  # over the absolute limit
        (stats(p99=30.0), "latency"),  # 3x the champion's 10 ms
        (stats(predictions=list(RNG.beta(5, 2, 500))), "prediction_shift"),
    ],
)
def test_each_kind_of_harm_fails_its_own_check(challenger, failing):
    verdict = analyze_step(POLICY, "classification", 25, {"champion": stats(), "challenger": challenger})
    assert not verdict.passed and checks(verdict)[failing] is False, verdict.lines()
    assert failing in verdict.reasons()


def test_online_metric_counts_only_with_enough_labels():
    good = {"labelled": 80, "online_log_loss": 0.50}
    worse = {"labelled": 80, "online_log_loss": 0.60}
    verdict = analyze_step(POLICY, "classification", 50, {"champion": stats(**good), "challenger": stats(**worse)})
    assert checks(verdict)["online_metric"] is False and "+20.0%" in verdict.reasons()
    few = analyze_step(
        POLICY, "classification", 50, {"champion": stats(**good), "challenger": stats(labelled=10, online_log_loss=9)}
    )
    assert "online_metric" not in checks(few)


def test_outcomes_outrank_the_prediction_shift_once_they_have_arrived():
    shifted = list(RNG.beta(5, 2, 500))  # a model retrained on drifted data predicts differently
    champion = stats(labelled=80, online_log_loss=0.60)
    better = analyze_step(
        POLICY,
        "classification",
        25,
        {"champion": champion, "challenger": stats(predictions=shifted, labelled=80, online_log_loss=0.55)},
    )
    assert better.passed and "the outcomes below judge it instead" in "\n".join(better.lines()), better.lines()
    worse = analyze_step(
        POLICY,
        "classification",
        25,
        {"champion": champion, "challenger": stats(predictions=shifted, labelled=80, online_log_loss=0.70)},
    )
    assert not worse.passed and checks(worse) == {**checks(better), "online_metric": False}


def test_breach_stops_early_only_on_clear_harm_with_enough_traffic():
    assert breach(POLICY, {"challenger": stats(requests=10, errors=5)}) is None  # too little traffic to say
    assert "error rate" in breach(POLICY, {"challenger": stats(requests=40, errors=5)})
    assert "p99" in breach(POLICY, {"challenger": stats(p99=500.0)})
    assert breach(POLICY, {"champion": stats(), "challenger": stats()}) is None


def test_psi_is_zero_for_the_same_distribution_and_grows_with_shift():
    reference = list(RNG.normal(0, 1, 5000))
    assert psi(reference, list(RNG.normal(0, 1, 5000))) < 0.02
    assert psi(reference, list(RNG.normal(0.5, 1, 5000))) > 0.1 > psi(reference, list(RNG.normal(0.1, 1, 5000)))


def test_the_window_counts_errors_and_joins_late_labels():
    window = TrafficWindow("classification")
    import time

    now = time.time()
    for i in range(10):
        window.record(Served(now, "champion", "1", f"r{i}", 5.0, (0.9 if i % 2 else 0.1,), False))
    window.record(Served(now, "challenger", "2", "x", 0.0, (), True))
    for i in range(10):
        window.label(f"r{i}", 0, float(i % 2))  # every prediction right
    summary = window.summary(60)
    assert summary["challenger"]["error_rate"] == 1.0 and summary["challenger"]["p99_ms"] is None
    champion = summary["champion"]
    assert champion["requests"] == 10 and champion["labelled"] == 10 and champion["online_accuracy"] == 1.0
    assert champion["online_log_loss"] == pytest.approx(-np.log(0.9))
