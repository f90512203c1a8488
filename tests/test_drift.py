"""The drift loop's core: reference statistics, the check of a served batch, late labels, the cool-down.

Real flight days (2013-01-01..01-27) with their Feast features, a real XGBoost champion in MLflow
(SQLite under the test's data root), the gateway's prediction-log format and real Evidently; the
served batches are rows of the champion's own window (no drift) and the same rows with one feature
shifted.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from aerodrome.drift.reference import PREDICTION, ensure_reference, load_reference, reference_key
from aerodrome.drift.retrain import last_request
from aerodrome.drift.run import check_day
from aerodrome.features import compute_features_range
from aerodrome.features.builders import builder_for
from aerodrome.features.training import build_training_set
from aerodrome.registry.promote import apply_decision, judge_candidate
from aerodrome.serving.predlog import PredictionLog
from aerodrome.settings import Settings
from aerodrome.storage import LocalStorage
from aerodrome.train import train_model
from aerodrome.train.inputs import model_columns
from aerodrome.usecase import load_usecase
from conftest import ROOT, publish_flights
from sklearn.metrics import roc_auc_score

SPEC = load_usecase(ROOT / "include/usecases/flight_delay")
FLIGHTS = SPEC.model_copy(
    update={
        "model": SPEC.model.model_copy(update={"params": {"n_estimators": 40, "max_depth": 4}}),
        "promotion": SPEC.promotion.model_copy(update={"latency_budget_ms": 250}),
    }
)
CLOCK = builder_for(FLIGHTS).clock
SERVED_DAY = date(2013, 1, 27)  # a Sunday: the week 2013-01-21 (W04) is complete


def _start(day: date) -> datetime:
    return CLOCK.start_of(day).to_pydatetime()


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """Settings, storage, the champion v1 (trained on Jan 1-27) and 1,500 of its window's rows with predictions."""
    root = tmp_path_factory.mktemp("drift") / "data"
    storage = LocalStorage(root)
    publish_flights(storage, FLIGHTS, date(2013, 1, 1), SERVED_DAY)
    compute_features_range(FLIGHTS, storage, date(2013, 1, 1), SERVED_DAY)
    settings = Settings(
        data_root=str(root),
        usecases_dir=ROOT / "include/usecases",
        feature_repo=str(root / "repo"),
        mlflow_tracking_uri=f"sqlite:///{root}/mlflow.db",
    )
    start, end = _start(date(2013, 1, 1)), _start(SERVED_DAY + timedelta(days=1))
    version = train_model(FLIGHTS, settings, storage, start, end).version
    move = apply_decision(FLIGHTS, settings, storage, judge_candidate(FLIGHTS, settings, storage, version), "test")
    assert move is not None and move["alias"] == "champion"
    reference = ensure_reference(FLIGHTS, settings, storage, version)  # the first champion: built on demand
    frame = build_training_set(FLIGHTS, settings, storage, start, end).frame.sample(1500, random_state=1)
    numeric, categorical = model_columns(FLIGHTS)
    assert load_reference(storage, FLIGHTS.name, version) == reference and reference.prediction is not None
    return settings, storage, version, frame.reset_index(drop=True), numeric, categorical


def _serve(storage, frame, version: str, numeric: list[str], categorical: list[str], predictions) -> list[str]:
    """Log `frame` as the gateway does (100 rows per request); returns the request ids."""
    served_at = datetime.now(UTC)
    records = []
    for i, row in enumerate(frame.itertuples(index=False)):
        values = row._asdict()
        records.append(
            {
                "request_id": f"r{i // 100}-{served_at.timestamp()}",
                "row": i % 100,
                "usecase": FLIGHTS.name,
                "served_at": served_at,
                "event_timestamp": served_at,
                "event_day": SERVED_DAY.isoformat(),
                "alias": "champion",
                "model_version": version,
                "prediction": float(predictions[i]),
                "fallback": False,
                "latency_ms": 1.0,
                **{c: values[c] for c in categorical},
                **{c: (None if pd.isna(values[c]) else float(values[c])) for c in numeric},
            }
        )
    log = PredictionLog(storage)
    log.log(records)
    log.close()
    return sorted({r["request_id"] for r in records})


def _clear_log(storage) -> None:
    import shutil

    for zone in ("predictions", "labels", "drift", "state/flight_delay/retrain_requested.json"):
        path = Path(storage.root) / zone
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _champion_predictions(settings, storage, version, frame):
    from aerodrome.registry.aliases import registry_client
    from aerodrome.registry.promote import load_version

    loaded = load_version(
        registry_client(settings.tracking_uri), settings, FLIGHTS.name, version, Path(storage.root) / "model"
    )
    return loaded.predictor.predict(frame)


def test_a_batch_without_drift_raises_nothing_and_reports_are_stored(champion):
    settings, storage, version, frame, numeric, categorical = champion
    _clear_log(storage)
    _serve(storage, frame, version, numeric, categorical, _champion_predictions(settings, storage, version, frame))
    run = check_day(FLIGHTS, settings, storage, SERVED_DAY)
    result = run.result
    assert result.rows == 1500 and result.judged
    assert not result.dataset_drift and not result.prediction_drift and result.drifted == []
    assert result.reasons() == [] and run.retrain is None and last_request(storage, FLIGHTS.name) is None
    assert len(result.columns) == len(numeric) + len(categorical)
    assert max(c.score for c in result.columns) < 0.1
    # Evidently's report and ours, under the use case and day
    assert storage.exists(f"drift/flight_delay/date={SERVED_DAY}/report.html")
    evidently = json.loads(storage.read_bytes(run.reports.evidently_json))
    assert "metrics" in evidently and len(evidently["metrics"]) > 1
    summary = json.loads(storage.read_bytes(run.reports.summary))
    assert summary["dataset_drift"] is False and summary["version"] == version
    assert "dataset drift: no" in "\n".join(run.lines())


def test_a_shift_in_one_feature_is_detected_and_named(champion):
    settings, storage, version, frame, numeric, categorical = champion
    _clear_log(storage)
    shifted = frame.assign(temp=frame["temp"] + 25)  # 25 degrees F warmer than the January window
    _serve(storage, shifted, version, numeric, categorical, _champion_predictions(settings, storage, version, frame))
    run = check_day(FLIGHTS, settings, storage, SERVED_DAY)
    result = run.result
    assert [c.column for c in result.drifted] == ["temp"]
    assert result.drifted[0].method == "psi" and result.drifted[0].score > 1
    # one feature of 44 is below the policy's share: reported, not a retrain
    assert not result.dataset_drift and run.retrain is None
    assert any("* temp: psi" in line for line in run.lines())


def test_late_labels_give_the_realized_metric_on_the_joined_part_with_coverage(champion):
    settings, storage, version, frame, numeric, categorical = champion
    _clear_log(storage)
    predictions = _champion_predictions(settings, storage, version, frame)
    requests = _serve(storage, frame, version, numeric, categorical, predictions)
    run = check_day(FLIGHTS, settings, storage, SERVED_DAY)
    assert run.result.realized.labelled == 0 and run.result.realized.coverage == 0  # no label yet

    labelled = frame.index[frame.index % 100 < 40]  # 40 % of each request's rows get their outcome, later
    log = PredictionLog(storage)
    log.log(
        [
            {
                "zone": "labels",
                "usecase": FLIGHTS.name,
                "event_day": date.today().isoformat(),
                "received_at": datetime.now(UTC),
                "request_id": _request_of(requests, i),
                "row": int(i % 100),
                "label": float(frame.loc[i, "label"]),
            }
            for i in labelled
        ]
    )
    log.close()
    realized = check_day(FLIGHTS, settings, storage, SERVED_DAY).result.realized
    expected = roc_auc_score(frame.loc[labelled, "label"], np.asarray(predictions)[labelled])
    assert realized.metric == "roc_auc" and realized.labelled == len(labelled) == 600
    assert realized.coverage == pytest.approx(0.4) and realized.value == pytest.approx(expected)
    assert realized.holdout is not None and realized.judged and not realized.breached


def _request_of(requests: list[str], i: int) -> str:
    """The request id row `i` was served under (`r<n>-<time>`, sorted as strings in `requests`)."""
    return next(r for r in requests if r.startswith(f"r{i // 100}-"))


def test_a_breach_requests_a_retrain_once_per_cooldown_window(champion):
    settings, storage, version, frame, numeric, categorical = champion
    _clear_log(storage)
    predictions = 1 - np.asarray(_champion_predictions(settings, storage, version, frame))  # a broken model
    requests = _serve(storage, frame, version, numeric, categorical, predictions)
    log = PredictionLog(storage)
    log.log(
        [
            {
                "zone": "labels",
                "usecase": FLIGHTS.name,
                "event_day": date.today().isoformat(),
                "received_at": datetime.now(UTC),
                "request_id": _request_of(requests, i),
                "row": int(i % 100),
                "label": float(frame.loc[i, "label"]),
            }
            for i in frame.index
        ]
    )
    log.close()
    now = datetime.now(UTC)
    first = check_day(FLIGHTS, settings, storage, SERVED_DAY, now=now)
    assert first.result.realized.breached and first.retrain is not None
    assert first.retrain.week == "2013-01-21 (W04)" and "performance: realized roc_auc" in first.retrain.reason
    assert first.result.prediction_drift  # 1 - p: the predictions' distribution moved as well

    again = check_day(FLIGHTS, settings, storage, SERVED_DAY, now=now + timedelta(hours=1))
    assert again.retrain is None and again.decision.startswith("cooling down")
    later = now + timedelta(hours=FLIGHTS.drift.cooldown_hours + 1)
    assert check_day(FLIGHTS, settings, storage, SERVED_DAY, now=later).retrain is not None
    assert last_request(storage, FLIGHTS.name).requested_at == later.isoformat(timespec="seconds")
    assert storage.exists(reference_key(FLIGHTS.name, version)) and PREDICTION == "prediction"


def test_a_shift_in_a_raw_column_of_the_validated_day_is_named_under_validated_data(champion):
    """Nothing served: the day's validated rows alone are scored, on the model's columns the raw schema has."""
    from aerodrome.ingest.partition import partition_key, read_partition, write_partition

    settings, storage, version, frame, numeric, categorical = champion
    _clear_log(storage)
    key = partition_key("validated", FLIGHTS.name, SERVED_DAY.isoformat())
    saved = {k.rsplit("/", 1)[-1]: storage.read_bytes(k) for k in storage.list(key)}
    raw = read_partition(storage, key)
    try:
        write_partition(storage, key, raw.assign(distance=raw["distance"] + 3000), "a unit change upstream")
        run = check_day(FLIGHTS, settings, storage, SERVED_DAY)
        result, validated = run.result, run.result.validated
        assert result.rows == 0 and not result.served_judged and result.judged  # judged on the validated rows
        assert validated.rows == len(raw) and validated.days == [SERVED_DAY.isoformat()]
        raw_model_columns = [c for c in (*numeric, *categorical) if c in FLIGHTS.columns]
        assert [c.column for c in validated.columns] == raw_model_columns  # month, distance, carrier, origin, dest
        assert "distance" in raw_model_columns and len(raw_model_columns) == 5
        assert [c.column for c in validated.drifted] == ["distance"] and validated.drifted[0].score > 1
        # one raw column of five is below the policy's share: reported, not a retrain
        assert not result.dataset_drift and run.retrain is None
        text = run.lines()
        section = text.index(next(line for line in text if line.startswith("validated data")))
        assert any(line.startswith("  * distance: psi") for line in text[section:]), text
        summary = json.loads(storage.read_bytes(run.reports.summary))
        assert summary["validated"]["drifted"] == ["distance"] and summary["validated"]["dataset_drift"] is False

        # a second column moves (every flight from JFK): 2/5 > 30 %, dataset drift from the validated source
        write_partition(storage, key, raw.assign(distance=raw["distance"] + 3000, origin="JFK"), "and a feed bug")
        run = check_day(FLIGHTS, settings, storage, SERVED_DAY)
        assert {c.column for c in run.result.validated.drifted} == {"distance", "origin"}
        assert run.result.validated_drift and run.result.dataset_drift and not run.result.served_drift
        assert run.retrain is not None and run.retrain.week == "2013-01-21 (W04)"
        assert run.retrain.reason.startswith(f"validated data drift: 2/{len(raw_model_columns)} raw columns drifted")
    finally:
        storage.replace_prefix(key, saved)
        _clear_log(storage)
