"""Promotion: gates on the same holdout, naive baselines, artifact integrity, alias moves as a chained log.

Real MLflow (SQLite under the test's data root), real XGBoost models trained on validated flight days
2013-01-01..02-14 with their Feast features; nothing is mocked.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from aerodrome.features import compute_features_range
from aerodrome.features.builders import builder_for
from aerodrome.registry.aliases import alias_history, alias_version, registry_client, verify_history
from aerodrome.registry.gates import gain, latency_gate, signature_gate, slice_gate
from aerodrome.registry.promote import apply_decision, judge_candidate, report_key
from aerodrome.settings import Settings
from aerodrome.storage import LocalStorage
from aerodrome.train import train_model
from aerodrome.train.baselines import naive_baselines
from aerodrome.usecase import load_usecase
from conftest import ROOT, publish_flights

SPEC = load_usecase(ROOT / "include/usecases/flight_delay")
# the latency gate's own test is below; here a busy CI machine must not decide the other gates' outcome
FLIGHTS = SPEC.model_copy(update={"promotion": SPEC.promotion.model_copy(update={"latency_budget_ms": 250})})
CLOCK = builder_for(FLIGHTS).clock


def _start(day: date):
    return CLOCK.start_of(day).to_pydatetime()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Data root, settings and three registered versions: v1 (Jan), v2 (Jan 8 - Feb 14), v3 a one-split stump."""
    root = tmp_path_factory.mktemp("promote") / "data"
    storage = LocalStorage(root)
    publish_flights(storage, FLIGHTS, date(2013, 1, 1), date(2013, 2, 14))
    compute_features_range(FLIGHTS, storage, date(2013, 1, 1), date(2013, 2, 14))
    settings = Settings(
        data_root=str(root),
        usecases_dir=ROOT / "include/usecases",
        feature_repo=str(root / "repo"),
        mlflow_tracking_uri=f"sqlite:///{root}/mlflow.db",
    )
    later = (_start(date(2013, 1, 8)), _start(date(2013, 2, 15)))
    versions = [
        train_model(FLIGHTS, settings, storage, _start(date(2013, 1, 1)), _start(date(2013, 2, 1))).version,
        train_model(FLIGHTS, settings, storage, *later).version,
        train_model(FLIGHTS, settings, storage, *later, params={"n_estimators": 1, "max_depth": 1}).version,
    ]
    assert versions == ["1", "2", "3"]
    return settings, storage


def test_the_first_candidate_becomes_champion_and_the_move_is_recorded(registry):
    settings, storage = registry
    report = judge_candidate(FLIGHTS, settings, storage, "1")
    assert report.champion is None and report.passed, report.lines()
    assert {g.name for g in report.gates} == {"artifact", "signature", "metric", "slices", "baselines", "latency"}
    # the trainer recorded its naive baselines; the model beats the one-feature rule on the same holdout
    baselines = report.figures["baselines"]
    assert set(baselines) == {"positive_rate", "one_feature"} and baselines["positive_rate"]["roc_auc"] == 0.5
    assert report.figures["candidate"]["roc_auc"] > baselines["one_feature"]["roc_auc"] + 0.01

    move = apply_decision(FLIGHTS, settings, storage, report, "test / first")
    assert move["alias"] == "champion" and move["version"] == "1" and move["previous"] is None
    assert alias_version(registry_client(settings.tracking_uri), "flight_delay", "champion") == "1"
    assert json.loads(storage.read_bytes(report_key(FLIGHTS, "1")))["passed"] is True


def test_a_model_no_better_than_a_naive_rule_is_rejected_and_nothing_moves(registry):
    settings, storage = registry
    report = judge_candidate(FLIGHTS, settings, storage, "3")  # the stump, against champion v1
    failed = {g.name: g.detail for g in report.failed}
    assert report.champion == "1" and {"metric", "baselines"} <= set(failed), report.lines()
    assert "does not beat the naive baseline one_feature" in failed["baselines"]
    assert apply_decision(FLIGHTS, settings, storage, report, "test / stump") is None
    client = registry_client(settings.tracking_uri)
    tags = client.get_model_version("flight_delay", "3").tags
    assert tags["promotion.status"] == "rejected" and "baselines" in tags["promotion.reasons"]
    assert str(client.get_model_version_by_alias("flight_delay", "champion").version) == "1"
    assert [m for m in alias_history(storage, "flight_delay") if m["version"] == "3"] == [
        m for m in alias_history(storage, "flight_delay") if m["alias"] == "candidate" and m["version"] == "3"
    ]


def test_candidate_and_champion_are_judged_on_the_same_rows_and_a_pass_makes_a_challenger(registry):
    settings, storage = registry
    lenient = FLIGHTS.model_copy(
        update={"promotion": FLIGHTS.promotion.model_copy(update={"max_slice_regression": 1.0})}
    )
    report = judge_candidate(lenient, settings, storage, "2")
    candidate, champion = report.figures["candidate"], report.figures["champion"]
    assert candidate["rows"] == champion["rows"] == report.rows > 1000
    assert report.holdout["start"].startswith("2013-02-05") and report.holdout["end"].startswith("2013-02-15")
    assert candidate["roc_auc"] != champion["roc_auc"]
    assert report.passed, report.lines()
    move = apply_decision(lenient, settings, storage, report, "test / lenient")
    assert (move["alias"], move["version"]) == ("challenger", "2")
    client = registry_client(settings.tracking_uri)
    assert str(client.get_model_version_by_alias("flight_delay", "challenger").version) == "2"
    assert str(client.get_model_version_by_alias("flight_delay", "champion").version) == "1"  # the canary decides


def test_a_changed_byte_in_the_artifact_is_refused(registry):
    settings, storage = registry
    client = registry_client(settings.tracking_uri)
    source = Path(client.get_model_version_download_uri("flight_delay", "3").removeprefix("file://"))
    weights = sorted(p for p in (source / "artifacts" / "predictor").iterdir() if p.name != "predictor.json")[0]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    report = judge_candidate(FLIGHTS, settings, storage, "3")
    artifact = next(g for g in report.gates if g.name == "artifact")
    assert not artifact.passed and "differs from" in artifact.detail and not report.passed
    assert report.gates == [artifact]  # an altered artifact is never loaded, so nothing else is judged
    assert apply_decision(FLIGHTS, settings, storage, report, "test / tampered") is None
    assert "artifact" in client.get_model_version("flight_delay", "3").tags["promotion.reasons"]


def test_every_alias_move_is_chained_and_an_edit_is_found(registry):
    settings, storage = registry
    history = alias_history(storage, "flight_delay")
    assert [(m["alias"], m["version"]) for m in history][:4] == [
        ("candidate", "1"),
        ("candidate", "2"),
        ("candidate", "3"),
        ("champion", "1"),
    ]
    assert verify_history(storage, "flight_delay") is None
    key = "registry/flight_delay/alias_moves/00000002.json"
    original = storage.read_bytes(key)
    edited = json.loads(original)
    edited["version"] = "9"
    storage.write_bytes(key, json.dumps(edited).encode())
    try:
        assert verify_history(storage, "flight_delay") == 2
    finally:
        storage.write_bytes(key, original)
    assert verify_history(storage, "flight_delay") is None


# --- the policy, without models -----------------------------------------------------------------


def test_latency_gate_compares_the_p99_with_the_budget():
    assert latency_gate(3.2, 20).passed and "3.20 ms <= 20" in latency_gate(3.2, 20).detail
    assert not latency_gate(25.0, 20).passed and "> 20" in latency_gate(25.0, 20).detail


def test_gain_is_absolute_for_aucs_and_relative_for_errors():
    assert gain("roc_auc", 0.72, 0.70) == pytest.approx(0.02)
    assert gain("rmse", 9.0, 10.0) == pytest.approx(0.10)  # 10 % lower error
    assert gain("mae", 110.0, 100.0) == pytest.approx(-0.10)


def test_slice_gate_names_every_regressing_slice():
    ours = {"store": {"a": {"rmse": 10.5}, "b": {"rmse": 1.0}}}
    theirs = {"store": {"a": {"rmse": 10.0}, "b": {"rmse": 2.0}}}
    gate = slice_gate("rmse", ours, theirs, 0.02)  # a: 5 % worse relative; b: 50 % better
    assert not gate.passed and "store=a" in gate.detail and "store=b" not in gate.detail
    assert slice_gate("rmse", ours, theirs, 0.06).passed


def test_slice_gate_holds_only_losses_beyond_their_noise():
    ours = {"carrier": {"VX": {"roc_auc": 0.670}, "UA": {"roc_auc": 0.700}}}
    theirs = {"carrier": {"VX": {"roc_auc": 0.700}, "UA": {"roc_auc": 0.730}}}
    # VX: a small slice, 0.03 lost with an SE of 0.02; UA: a large one, SE 0.005; 2 slices at alpha 0.05: z 1.96
    noise = {"carrier=VX": 0.02, "carrier=UA": 0.005}
    gate = slice_gate("roc_auc", ours, theirs, 0.02, noise, 0.05)
    assert not gate.passed and "carrier=UA" in gate.detail and "carrier=VX" not in gate.detail
    assert "z 1.96" in gate.detail
    ours["carrier"]["UA"]["roc_auc"] = 0.728
    gate = slice_gate("roc_auc", ours, theirs, 0.02, noise, 0.05)
    assert gate.passed and "carrier=VX (+0.0300 within 0.0392)" in gate.detail
    assert not slice_gate("roc_auc", ours, theirs, 0.02, noise, 0.0).passed  # alpha 0: the bare limit


def test_more_slices_compared_widen_the_band_family_wise():
    ours = {"carrier": {f"c{i}": {"roc_auc": 0.70} for i in range(20)}}
    theirs = {"carrier": {f"c{i}": {"roc_auc": 0.70} for i in range(20)}}
    theirs["carrier"]["c0"]["roc_auc"] = 0.745  # 0.045 lost, SE 0.018: 2.5 SE
    noise = {f"carrier=c{i}": 0.018 for i in range(20)}
    assert slice_gate("roc_auc", ours, theirs, 0.02, noise, 0.05).passed  # z 2.81 for 20 slices
    single = {"carrier": {"c0": ours["carrier"]["c0"]}}
    assert not slice_gate("roc_auc", single, theirs, 0.02, {"carrier=c0": 0.018}, 0.05).passed  # z 1.64


def _bootstrap_auc_difference_se(y, a, b, draws=400):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    out = []
    for _ in range(draws):
        rows = rng.integers(0, len(y), len(y))
        out.append(roc_auc_score(y[rows], a[rows]) - roc_auc_score(y[rows], b[rows]))
    return float(np.std(out, ddof=1))


def test_delong_standard_error_matches_a_paired_bootstrap():
    from aerodrome.registry.slice_noise import paired_gain_se

    rng = np.random.default_rng(11)
    y = (rng.random(800) < 0.2).astype(float)
    signal = y + rng.normal(0, 1.2, 800)
    a, b = signal + rng.normal(0, 0.5, 800), signal + rng.normal(0, 0.5, 800)  # correlated, as two models are
    delong = paired_gain_se("roc_auc", y, a, b)
    assert delong == pytest.approx(_bootstrap_auc_difference_se(y, a, b), rel=0.2)
    # the same model against itself: no noise at all
    assert paired_gain_se("roc_auc", y, a, a) == pytest.approx(0.0, abs=1e-12)


def test_error_metric_noise_is_relative_to_the_reference():
    from aerodrome.registry.slice_noise import paired_gain_se

    rng = np.random.default_rng(5)
    y = rng.normal(100, 10, 400)
    a, b = y + rng.normal(0, 5, 400), y + rng.normal(0, 5, 400)
    se = paired_gain_se("mae", y, a, b)
    expected = np.std(np.abs(a - y) - np.abs(b - y), ddof=1) / np.sqrt(400) / np.abs(b - y).mean()
    assert se == pytest.approx(expected)
    assert paired_gain_se("rmse", y, a, b) > 0 and paired_gain_se("log_loss", y, a, b) is not None


def test_signature_gate_names_missing_extra_and_mistyped_columns():
    gate = signature_gate({"a": "double", "c": "string", "z": "double"}, ["a", "b"], ["c"])
    assert gate.passed is False and "missing: b" in gate.detail and "not served: z" in gate.detail
    assert "c (string" not in gate.detail
    assert "wants number" in signature_gate({"a": "string"}, ["a"], []).detail


def test_regression_baselines_follow_each_series():
    stamps = pd.date_range("2024-01-01", periods=28, freq="D", tz="UTC")
    frame = pd.DataFrame({"store": ["s1"] * 28 + ["s2"] * 28, "event_timestamp": list(stamps) * 2})
    y = np.r_[np.arange(28.0), 100 + np.arange(28.0)]
    train, holdout = frame.index % 28 < 21, frame.index % 28 >= 21
    got = {
        b.name: b.predictions
        for b in naive_baselines(
            "regression",
            frame[train],
            y[train],
            frame[holdout],
            y[holdout],
            numeric=[],
            series_keys=["store"],
            timestamp="event_timestamp",
        )
    }
    assert got["last_value"].tolist() == (y[holdout] - 1).tolist()  # the series' previous value
    assert got["last_week"].tolist() == (y[holdout] - 7).tolist()
    # same weekday in training: days 14..20 shifted to the holdout's weekdays, averaged over 3 weeks
    assert got["seasonal_mean"][0] == pytest.approx(np.mean([0, 7, 14]))


def test_canary_decisions_move_aliases_and_a_rollback_finds_the_previous_champion(registry):
    from aerodrome.registry.aliases import AliasMove, move_alias
    from aerodrome.registry.decisions import DecisionError, crown, previous_champion, reject, restore_champion

    settings, storage = registry
    client = registry_client(settings.tracking_uri)
    aliases = lambda: {a: str(v) for a, v in client.get_registered_model("flight_delay").aliases.items()}  # noqa: E731
    assert aliases()["challenger"] == "2" and aliases()["champion"] == "1"
    with pytest.raises(DecisionError, match="stale"):
        crown(settings, storage, "flight_delay", "3", "test", "wrong version")
    crown(settings, storage, "flight_delay", "2", "test / canary", "every step passed")
    assert aliases()["champion"] == "2" and "challenger" not in aliases()
    assert previous_champion(storage, "flight_delay") == "1"
    restore_champion(settings, storage, "flight_delay", "test / rollback", "drill")
    assert aliases()["champion"] == "1"

    move_alias(client, storage, AliasMove("flight_delay", "challenger", "2", None, "test", "again"))
    reject(settings, storage, "flight_delay", "2", "test / canary", "error rate 50%", {"step": 5})
    assert aliases()["rejected"] == "2" and "challenger" not in aliases() and aliases()["champion"] == "1"
    assert client.get_model_version("flight_delay", "2").tags["canary.reason"] == "error rate 50%"
    assert verify_history(storage, "flight_delay") is None
