"""The A/B test's statistics against statsmodels, scipy and textbook numbers; its decisions; the log join."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from aerodrome.serving.abstats import compare_absolute_errors, compare_error_rates, needed_per_model
from aerodrome.serving.abtest import Outcomes, judge, model_errors, read_outcomes, written_days
from aerodrome.serving.predlog import PredictionLog
from aerodrome.usecase import ABPolicy

POLICY = ABPolicy(split_percent=50, horizon_hours=1, alpha=0.05, min_labelled=50, min_effect=0.1)
UC = "flight_delay"
RNG = np.random.default_rng(11)


def outcomes(version: str, errors: int, n: int) -> Outcomes:
    """`n` labelled rows of a classifier, `errors` of them misclassified."""
    labels = RNG.integers(0, 2, n).astype(float)
    predictions = np.where(labels == 1, 0.8, 0.2)
    predictions[:errors] = 1 - predictions[:errors]
    return Outcomes(version, predictions, labels, served=n)


@pytest.mark.parametrize(
    ("errors_a", "n_a", "errors_b", "n_b"), [(30, 200, 18, 210), (50, 400, 61, 380), (7, 90, 0, 95)]
)
def test_the_error_rate_test_equals_statsmodels(errors_a, n_a, errors_b, n_b):
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    c = compare_error_rates(errors_a, n_a, errors_b, n_b, 0.05)
    z, p = proportions_ztest([errors_b, errors_a], [n_b, n_a])
    low, high = confint_proportions_2indep(errors_b, n_b, errors_a, n_a, method="newcomb", compare="diff")
    assert (c.statistic, c.p_value) == pytest.approx((z, p), rel=1e-9)
    assert (c.ci_low, c.ci_high) == pytest.approx((low, high), rel=1e-9)
    assert c.difference == pytest.approx(errors_b / n_b - errors_a / n_a)


def test_the_error_rate_test_by_hand():
    c = compare_error_rates(30, 200, 18, 210, 0.05)
    # pooled 48/410; se = sqrt(p(1-p)(1/200 + 1/210)) = 0.031765; z = (18/210 - 0.15) / se
    assert c.statistic == pytest.approx(-2.0238, abs=1e-4) and c.p_value == pytest.approx(0.0430, abs=1e-4)
    assert c.relative_change == pytest.approx(-3 / 7)  # 8.57 % against 15 %
    assert c.effect_size == pytest.approx(2 * np.arcsin(np.sqrt(18 / 210)) - 2 * np.arcsin(np.sqrt(0.15)))
    assert c.significant and c.ci_high < 0


def test_the_absolute_error_test_equals_welch_in_scipy():
    from scipy import stats

    a, b = RNG.exponential(2.0, 150), RNG.exponential(1.6, 170)
    c = compare_absolute_errors(a, b, 0.05)
    welch = stats.ttest_ind(b, a, equal_var=False)
    interval = welch.confidence_interval(0.95)
    assert (c.statistic, c.p_value, c.df) == pytest.approx((welch.statistic, welch.pvalue, welch.df), rel=1e-9)
    assert (c.ci_low, c.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9)
    pooled = np.sqrt((149 * a.var(ddof=1) + 169 * b.var(ddof=1)) / 318)
    assert c.effect_size == pytest.approx((b.mean() - a.mean()) / pooled)
    assert c.metric == "mean_absolute_error" and c.champion == pytest.approx(a.mean())


def test_no_errors_at_all_and_equal_rates_are_no_evidence():
    for c in (compare_error_rates(0, 300, 0, 280, 0.05), compare_error_rates(30, 300, 30, 300, 0.05)):
        assert c.statistic == 0 and c.p_value == 1 and not c.significant
        assert c.ci_low < 0 < c.ci_high or c.ci_low == c.ci_high == 0
    nothing = compare_error_rates(0, 300, 0, 280, 0.05)
    assert nothing.relative_change is None and nothing.effect_size == 0
    assert np.isfinite([nothing.ci_low, nothing.ci_high]).all()  # Newcombe keeps a width where Wald has none
    same = np.full(60, 1.5)
    assert compare_absolute_errors(same, same.copy(), 0.05).p_value == 1
    certain = compare_absolute_errors(same, np.full(60, 1.0), 0.05)
    assert certain.p_value == 0 and certain.statistic is None and certain.effect_size is None


def test_sample_size_for_an_inconclusive_test_is_the_textbook_one():
    # 20 % -> 15 % errors at alpha 0.05, power 0.8: 906 per group (Fleiss, no continuity correction)
    a = np.r_[np.ones(200), np.zeros(800)]
    assert needed_per_model("classification", a, a.copy(), 0.05, min_effect=0.25) == 906
    # regression: 2 sigma^2 (z_a + z_b)^2 / delta^2 with sigma 1, delta 0.25 -> 251.2
    spread = RNG.normal(0, 1, 4000)
    spread = (spread - spread.mean()) / spread.std(ddof=1) + 2.5
    assert needed_per_model("regression", spread, spread.copy(), 0.05, min_effect=0.1) == 252
    assert needed_per_model("classification", a, a.copy(), 0.05, min_effect=0.0) is None  # nothing to detect


def test_a_clearly_better_challenger_is_promoted():
    verdict = judge(POLICY, UC, "classification", outcomes("1", 60, 300), outcomes("2", 25, 300))
    assert verdict.decision == "promote", verdict.lines()
    c = verdict.comparison
    assert c.significant and c.improvement == pytest.approx(35 / 60) and c.n_champion == c.n_challenger == 300
    assert "errs significantly less" in verdict.reason
    record = json.loads(json.dumps(verdict.as_dict(), allow_nan=False))
    assert record["comparison"]["p_value"] < 0.05 and record["comparison"]["significant"] is True
    assert record["figures"]["1"] == {"served": 300, "labelled": 300, "fallbacks": 0}
    text = "\n".join(verdict.lines())
    assert "PROMOTE" in text and "95% CI" in text and "cohens_h" in text and "z-test" in text


@pytest.mark.parametrize(
    ("champion", "challenger", "min_effect", "decision", "why"),
    [
        ((25, 300), (60, 300), 0.1, "keep", "errs significantly more"),
        ((400, 4000), (340, 4000), 0.2, "keep", "by 15.0% < ab.min_effect 20.0%"),  # significant, too small
        ((400, 4000), (340, 4000), 0.1, "promote", "errs significantly less"),
        ((60, 300), (55, 300), 0.1, "inconclusive", "no significant difference"),
        ((10, 30), (1, 30), 0.1, "inconclusive", "each model needs 50 (ab.min_labelled)"),
    ],
)
def test_the_decision_follows_the_rules(champion, challenger, min_effect, decision, why):
    policy = POLICY.model_copy(update={"min_effect": min_effect})
    verdict = judge(policy, UC, "classification", outcomes("1", *champion), outcomes("2", *challenger))
    assert verdict.decision == decision and why in verdict.reason, verdict.lines()


def test_an_inconclusive_verdict_says_how_many_outcomes_would_settle_it():
    verdict = judge(POLICY, UC, "classification", outcomes("1", 60, 300), outcomes("2", 55, 300))
    assert verdict.needed_per_model and verdict.needed_per_model > 300
    assert f"about {verdict.needed_per_model} per model would detect a 10% reduction" in verdict.reason
    few = judge(POLICY, UC, "classification", outcomes("1", 1, 1), outcomes("2", 0, 1))
    assert few.comparison is None and "champion 1, challenger 1" in few.reason


def test_regression_is_judged_on_absolute_errors():
    labels = RNG.normal(50, 10, 400)
    champion = Outcomes("1", labels + RNG.normal(0, 6, 400), labels)
    challenger = Outcomes("2", labels[:380] + RNG.normal(0, 3, 380), labels[:380])
    verdict = judge(POLICY, "store_demand", "regression", champion, challenger)
    assert verdict.decision == "promote" and verdict.comparison.test == "Welch t-test", verdict.lines()
    assert verdict.comparison.effect_size_name == "cohens_d" and verdict.comparison.effect_size < -0.5
    assert "df" in "\n".join(verdict.lines())


def test_a_classifier_errs_when_its_answer_is_on_the_wrong_side_of_one_half():
    answers = Outcomes("1", np.array([0.5, 0.49, 0.9, 0.1]), np.array([1.0, 1.0, 0.0, 0.0]))
    assert model_errors("classification", answers).tolist() == [0.0, 1.0, 1.0, 0.0]
    assert model_errors("regression", Outcomes("1", np.array([3.0]), np.array([5.0]))).tolist() == [2.0]


def served(request_id, version, at, day, prediction, row=0, fallback=False):
    """A prediction-log record as the gateway writes it (`UseCaseService._records`)."""
    alias = "champion" if version == "1" else "challenger"
    return {
        "request_id": request_id,
        "row": row,
        "usecase": UC,
        "served_at": at,
        "event_timestamp": at,
        "event_day": day,
        "alias": "champion" if fallback else alias,
        "model_version": "1" if fallback else version,
        "prediction": prediction,
        "fallback": fallback,
        "latency_ms": 2.0,
    }


def outcome(request_id, value, at, row=0):
    """A label record as the gateway writes it (`UseCaseService.add_labels`)."""
    return {
        "zone": "labels",
        "usecase": UC,
        "event_day": at.strftime("%Y-%m-%d"),
        "received_at": at,
        "request_id": request_id,
        "row": row,
        "label": value,
    }


def test_the_log_joins_predictions_and_labels_of_the_horizon_by_request_and_row(storage):
    log = PredictionLog(storage)
    before = datetime.now(UTC) - timedelta(hours=3)
    log.log([served("old", "1", before, "2013-01-13", 0.9), outcome("old", 0.0, before)])
    log.flush()
    time.sleep(0.01)
    since = datetime.now(UTC)
    until = since + timedelta(hours=1)
    inside = since + timedelta(minutes=5)
    log.log(
        [
            served("a", "1", inside, "2013-01-14", 0.9),
            served("b", "2", inside, "2013-01-14", 0.2),
            served("b", "2", inside, "2013-01-14", 0.7, row=1),  # two rows of one request
            served("c", "2", inside, "2013-01-15", 0.6),  # another event day
            served("d", "1", inside, "2013-01-15", 0.4),  # never labelled
            served("e", "2", inside, "2013-01-15", 0.8, fallback=True),  # the champion stood in
            served("f", "3", inside, "2013-01-15", 0.8),  # neither model of the test
            served("g", "1", since - timedelta(minutes=1), "2013-01-15", 0.8),  # before the horizon
            served("h", "2", until + timedelta(minutes=1), "2013-01-15", 0.8),  # after it
            *(outcome(r, 1.0, inside) for r in "acefgh"),
            outcome("b", 1.0, inside),
            outcome("b", 0.0, inside, row=1),
            outcome("a", 0.0, inside + timedelta(minutes=1)),  # a corrected outcome: the newest wins
            outcome("old", 1.0, inside),
        ]
    )
    log.flush()
    days = written_days(storage, UC, since)
    labelled = written_days(storage, UC, since, "labels")
    assert days == ["2013-01-14", "2013-01-15"]  # 2013-01-13 was written before the horizon: not read
    assert labelled == sorted({(inside + timedelta(minutes=m)).strftime("%Y-%m-%d") for m in (0, 1)})

    found = read_outcomes(storage, UC, days, labelled, since, until, ["1", "2"])
    champion, challenger = found["1"], found["2"]
    assert (champion.predictions.tolist(), champion.labels.tolist()) == ([0.9], [0.0])
    assert (champion.served, champion.labelled, champion.fallbacks) == (2, 1, 1)  # a and d; e stood in
    pairs = sorted(zip(challenger.predictions.tolist(), challenger.labels.tolist(), strict=True))
    assert pairs == [(0.2, 1.0), (0.6, 1.0), (0.7, 0.0)]
    assert (challenger.served, challenger.labelled, challenger.fallbacks) == (3, 3, 0)
    empty = read_outcomes(storage, UC, [], labelled, since, until, ["1", "2"])
    assert empty["1"].labelled == empty["2"].labelled == 0
