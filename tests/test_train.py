"""Training: time split, leak guard, both flavors end to end into MLflow, determinism, the trainer command.

One module-wide data root holds validated flight partitions for 2013-01-01..02-14 (written as the
validation gate publishes them) and their feature partitions; every test that trains gets its own
SQLite MLflow store under `tmp_path`. The full-year quality figure (ROC-AUC on Oct-Dec) is measured
by `bench/bench_train.py`; here a 45-day window only has to beat chance clearly.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from aerodrome.features import build_training_set, compute_features_range
from aerodrome.features.builders import builder_for
from aerodrome.features.builders.base import EVENT_TIMESTAMP
from aerodrome.features.offline import read_validated
from aerodrome.ingest.partition import MANIFEST_FILE, partition_key, write_partition
from aerodrome.landing.synthetic import demand_for
from aerodrome.schema import conform
from aerodrome.settings import Settings
from aerodrome.storage import LocalStorage
from aerodrome.train import LeakageError, TrainingError, model_columns, plan_split, train_model
from aerodrome.train.entrypoint import main
from aerodrome.train.inputs import DeviceUnavailableError, FeatureEncoding, leaky_columns
from aerodrome.train.run import fit
from aerodrome.train.tracking import tracking_uri
from aerodrome.usecase import UseCase, load_usecase
from conftest import publish_flights

ROOT = Path(__file__).resolve().parents[1]
FLIGHTS = load_usecase(ROOT / "include/usecases/flight_delay")
DEMAND = load_usecase(ROOT / "include/usecases/store_demand")
FIRST, LAST = date(2013, 1, 1), date(2013, 2, 14)
LEAKY = ["dep_delay", "dep_time", "arr_time", "air_time", "arr_delay"]
CLOCK = builder_for(FLIGHTS).clock
START, END = CLOCK.start_of(FIRST).to_pydatetime(), CLOCK.start_of(LAST + timedelta(days=1)).to_pydatetime()
SMALL_MLP = {"hidden": [32, 16], "epochs": 4, "batch_size": 512}


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def settings_for(root: Path, mlflow_dir: Path) -> Settings:
    return Settings(
        data_root=str(root),
        usecases_dir=ROOT / "include/usecases",
        feature_repo=str(root / "repo"),
        mlflow_tracking_uri=f"sqlite:///{mlflow_dir / 'mlflow.db'}",
    )


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> LocalStorage:
    storage = LocalStorage(tmp_path_factory.mktemp("train") / "data")
    publish_flights(storage, FLIGHTS, FIRST, LAST)
    compute_features_range(FLIGHTS, storage, FIRST, LAST)
    return storage


@pytest.fixture(scope="module")
def training(lake):
    settings = settings_for(Path(lake.root), Path(lake.root))
    return build_training_set(FLIGHTS, settings, lake, START, END)


def mlflow_client(settings: Settings):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


# --- the time split ---------------------------------------------------------------------------


def test_default_split_is_by_time_with_the_latest_quarter_as_holdout():
    year = plan_split(CLOCK, CLOCK.start_of(date(2013, 1, 1)), CLOCK.start_of(date(2014, 1, 1)))
    assert year.holdout_start == CLOCK.start_of(date(2013, 10, 1))  # Oct-Dec, the holdout
    assert year.validation_start == CLOCK.start_of(date(2013, 8, 25))
    stamps = pd.Series(pd.date_range("2013-01-01 05:00", "2014-01-01 04:59", freq="37min", tz="UTC"))
    masks = year.masks(stamps)
    assert sum(m.astype(int) for m in masks.values()).tolist() == [1] * len(stamps)  # each in exactly one part
    train, validation, holdout = (stamps[masks[p]] for p in ("train", "validation", "holdout"))
    assert train.max() < validation.min() <= validation.max() < holdout.min()

    explicit = plan_split(CLOCK, START, END, holdout_start=CLOCK.start_of(date(2013, 2, 1)).to_pydatetime())
    assert explicit.holdout_start == CLOCK.start_of(date(2013, 2, 1))
    with pytest.raises(TrainingError, match="cannot split the window"):
        plan_split(CLOCK, START, END, holdout_start=START - timedelta(days=1))


def test_split_of_a_real_training_set_never_overlaps(training):
    split = plan_split(CLOCK, START, END)
    stamps = training.frame[EVENT_TIMESTAMP]
    masks = split.masks(stamps)
    assert (masks["train"].astype(int) + masks["validation"] + masks["holdout"] == 1).all()
    assert stamps[masks["train"]].max() < stamps[masks["validation"]].min()
    assert stamps[masks["validation"]].max() < stamps[masks["holdout"]].min()
    assert stamps[masks["holdout"]].max() == stamps.max()  # the holdout is the most recent part
    assert masks["holdout"].sum() > 0.2 * len(stamps)


# --- the leak guard ---------------------------------------------------------------------------


def with_request_features(spec: UseCase, extra: list[str]) -> UseCase:
    features = spec.features.model_copy(update={"request_features": [*spec.features.request_features, *extra]})
    return spec.model_copy(update={"features": features})


@pytest.mark.parametrize("column", LEAKY)
def test_leak_guard_refuses_a_post_departure_column(column, tmp_path):
    assert set(LEAKY) <= set(leaky_columns(FLIGHTS))
    numeric, categorical = model_columns(FLIGHTS)  # the shipped feature list passes
    assert not set(LEAKY) & set(numeric + categorical)
    leaking = with_request_features(FLIGHTS, [column])
    with pytest.raises(LeakageError, match=rf"feature\(s\) {column} are only known after the prediction moment"):
        model_columns(leaking)
    empty = LocalStorage(tmp_path / "data")  # the guard runs before any data is read
    with pytest.raises(LeakageError):
        train_model(leaking, settings_for(tmp_path, tmp_path), empty, START, END)


def test_request_features_do_not_depend_on_what_happens_after_departure(lake):
    """Scrambling every post-departure column leaves the request features of every flight unchanged."""
    history = read_validated(lake, FLIGHTS, date(2013, 2, 1), date(2013, 2, 3))
    scrambled = history.copy()
    rng = np.random.default_rng(0)
    for column in ["dep_time", "dep_delay", "arr_time", "air_time"]:
        scrambled[column] = rng.permutation(scrambled[column].to_numpy())
    builder = builder_for(FLIGHTS)
    request = FLIGHTS.features.request_features
    before, after = builder.entity_frame(history), builder.entity_frame(scrambled)
    pd.testing.assert_frame_equal(before[[EVENT_TIMESTAMP, *request]], after[[EVENT_TIMESTAMP, *request]])


# --- both flavors end to end ------------------------------------------------------------------


def expected_fingerprint(storage: LocalStorage, spec: UseCase, first: date, last: date) -> str:
    lines = ""
    for day in days(first, last):
        key = partition_key("validated", spec.name, day.isoformat())
        if storage.exists(f"{key}/{MANIFEST_FILE}"):
            lines += f"{day.isoformat()} {json.loads(storage.read_bytes(f'{key}/{MANIFEST_FILE}'))['sha256']}\n"
    return hashlib.sha256(lines.encode()).hexdigest()


def test_xgboost_candidate_is_registered_with_metrics_slices_and_lineage(lake, tmp_path):
    import mlflow

    settings = settings_for(Path(lake.root), tmp_path)
    result = train_model(FLIGHTS, settings, lake, START, END, seed=7)
    client = mlflow_client(settings)
    version = client.get_model_version_by_alias("flight_delay", "candidate")
    assert (str(version.version), version.run_id) == (result.version, result.run_id) and result.version == "1"
    assert result.flavor == "xgboost" and result.device == "cpu"

    run = client.get_run(result.run_id)
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    assert {"roc_auc", "pr_auc", "log_loss", "validation.roc_auc"} <= set(metrics)
    assert metrics["roc_auc"] > 0.65  # a 45-day window; the year's Oct-Dec figure is in bench_train
    for column, value in [("origin", "EWR"), ("origin", "JFK"), ("origin", "LGA"), ("carrier", "UA")]:
        assert 0.5 < metrics[f"slice.{column}.{value}.roc_auc"] <= 1, (column, value)
        assert f"slice.{column}.{value}.pr_auc" in metrics
    lookback = builder_for(FLIGHTS).lookback_days
    fingerprint = expected_fingerprint(lake, FLIGHTS, FIRST - timedelta(days=lookback + 1), LAST + timedelta(days=1))
    assert result.data_fingerprint == fingerprint == params["data_fingerprint"]
    assert tags["aerodrome.data_fingerprint"] == fingerprint == version.tags["data_fingerprint"]
    assert tags["aerodrome.code_version"] and params["code_version"] == tags["aerodrome.code_version"]
    assert params["features"].split(",") == model_columns(FLIGHTS)[0]
    assert params["seed"] == "7" and params["tree_method"] == "hist" and params["device"] == "cpu"
    assert [m.step for m in client.get_metric_history(result.run_id, "validation_log_loss")][:3] == [0, 1, 2]

    with tracking_uri(settings.tracking_uri):
        artifacts = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, dst_path=str(tmp_path / "a")))
        model = mlflow.pyfunc.load_model("models:/flight_delay@candidate")
    features = json.loads((artifacts / "features.json").read_text())
    assert features["numeric"] == model_columns(FLIGHTS)[0] and set(features["categorical"]) == {
        "carrier",
        "origin",
        "dest",
    }
    manifest = json.loads((artifacts / "data_manifest.json").read_text())
    assert manifest["sha256"] == fingerprint and manifest["partitions"][0]["date"] == "2013-01-01"

    inputs = model.metadata.get_input_schema().input_names()
    assert inputs == [*model_columns(FLIGHTS)[0], "carrier", "origin", "dest"]
    example = model.input_example
    assert example is not None and list(example.columns) == inputs
    probabilities = np.asarray(model.predict(example))
    assert probabilities.shape == (len(example),) and ((probabilities >= 0) & (probabilities <= 1)).all()
    again = train_model(FLIGHTS, settings, lake, START, END, seed=7)  # same seed, same data: same figures
    assert again.version == "2" and again.metrics == result.metrics
    assert str(client.get_model_version_by_alias("flight_delay", "candidate").version) == "2"


def test_pytorch_candidate_is_registered_and_serves_what_it_was_judged_on(lake, tmp_path):
    import mlflow

    settings = settings_for(Path(lake.root), tmp_path)
    result = train_model(FLIGHTS, settings, lake, START, END, flavor="pytorch", params=SMALL_MLP)
    client = mlflow_client(settings)
    assert str(client.get_model_version_by_alias("flight_delay", "candidate").version) == result.version == "1"
    run = client.get_run(result.run_id)
    assert run.data.params["flavor"] == "pytorch" and run.data.params["precision"] == "fp32"
    assert run.data.params["hidden"] == "[32, 16]"
    assert {"roc_auc", "pr_auc", "log_loss", "slice.carrier.UA.roc_auc", "slice.origin.JFK.roc_auc"} <= set(
        run.data.metrics
    )
    assert result.metrics["roc_auc"] > 0.6
    with tracking_uri(settings.tracking_uri):
        model = mlflow.pyfunc.load_model(f"models:/flight_delay/{result.version}")
    probabilities = np.asarray(model.predict(model.input_example))
    assert ((probabilities > 0) & (probabilities < 1)).all()


# --- determinism ------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor, params", [("xgboost", {"n_estimators": 60}), ("pytorch", SMALL_MLP)])
def test_same_seed_gives_the_same_model(training, flavor, params):
    split = plan_split(CLOCK, START, END)
    masks = split.masks(training.frame[EVENT_TIMESTAMP])
    parts = {p: training.frame[m].reset_index(drop=True) for p, m in masks.items()}
    labels = {p: training.frame["label"].to_numpy()[m] for p, m in masks.items()}
    numeric, categorical = model_columns(FLIGHTS)
    encoding = FeatureEncoding.fit(parts["train"], numeric, categorical)

    def predictions(seed: int) -> np.ndarray:
        train, validation = (parts["train"], labels["train"]), (parts["validation"], labels["validation"])
        predictor, _ = fit(flavor, "classification", encoding, train, validation, params, seed, "cpu")
        return predictor.predict(parts["holdout"])

    first = predictions(3)
    assert np.array_equal(first, predictions(3))
    assert not np.array_equal(first, predictions(4))


# --- the trainer command ----------------------------------------------------------------------


def test_command_trains_the_regression_use_case_and_prints_one_json_line(tmp_path, monkeypatch, capsys):
    storage = LocalStorage(tmp_path / "data")
    wanted = days(date(2024, 3, 1), date(2024, 3, 28))
    for day in wanted:
        key = partition_key("validated", DEMAND.name, day.isoformat())
        write_partition(storage, key, conform(demand_for(day), DEMAND.columns, key), key)
    compute_features_range(DEMAND, storage, wanted[0], wanted[-1])
    monkeypatch.setenv("AERODROME_DATA_ROOT", storage.root)
    monkeypatch.setenv("AERODROME_FEATURE_REPO", str(tmp_path / "repo"))
    monkeypatch.setenv("AERODROME_USECASES_DIR", str(ROOT / "include/usecases"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default: SQLite under the data root
    result_file = tmp_path / "xcom" / "return.json"
    code = main(
        [
            "--usecase=store_demand",
            "--start=2024-03-02",
            "--end=2024-03-29",
            "--params",
            '{"epochs": 6}',
            f"--result-file={result_file}",
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out[-5:]
    result = json.loads(out[-1])
    assert json.loads(result_file.read_text()) == result
    assert (result["model_name"], result["version"], result["alias"], result["flavor"]) == (
        "store_demand",
        "1",
        "candidate",
        "pytorch",
    )
    assert 0 < result["metrics"]["mae"] < result["metrics"]["rmse"] < 6  # units spread ~10, noise sd 3
    assert any(line.startswith("[train") and "holdout: mae" in line for line in out)
    assert (tmp_path / "data" / "mlflow" / "mlflow.db").is_file()
    run = mlflow_client(Settings.from_env()).get_run(result["run_id"])
    assert "slice.sku.bread.rmse" in run.data.metrics and run.data.params["hidden"] == "[64, 64]"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--start=2012-01-01", "--end=2012-02-01"], "no validated partition between"),
        (["--start=2013-01-01", "--end=2013-02-01", "--params=[1]"], "--params must be a JSON object"),
        (["--start=2013-01-01", "--end=2013-02-01", '--params={"depth": 3}', "--flavor=pytorch"], "unknown param"),
        (["--start=2013-02-01", "--end=2013-01-01"], "cannot split the window"),
    ],
)
def test_command_fails_with_a_readable_error(lake, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.setenv("AERODROME_DATA_ROOT", lake.root)
    monkeypatch.setenv("AERODROME_FEATURE_REPO", str(Path(lake.root) / "repo"))
    monkeypatch.setenv("AERODROME_USECASES_DIR", str(ROOT / "include/usecases"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["--usecase=flight_delay", *argv]) == 3  # exitcodes.INPUT: a retry cannot help
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last


def test_window_bounds_are_local_days():
    from aerodrome.train.entrypoint import moment

    assert moment("2013-01-01", CLOCK) == datetime(2013, 1, 1, 5, tzinfo=UTC)
    assert moment("2013-07-01T00:00:00+00:00", CLOCK) == datetime(2013, 7, 1, tzinfo=UTC)
    with pytest.raises(TrainingError, match="neither a day"):
        moment("July 1st", CLOCK)


def test_an_unset_form_param_means_the_default_split():
    from aerodrome.train.entrypoint import given

    assert not any(given(v) for v in (None, "", "None", "null", " "))
    assert given("2013-10-01")


def test_asking_for_a_gpu_that_is_not_there_is_a_readable_error(monkeypatch):
    import torch
    from aerodrome.train.predictor import nvidia_gpu_present
    from aerodrome.train.torch_mlp import torch_device
    from aerodrome.train.xgb import xgboost_device

    # a machine without a GPU, also where one is present: no visible device for xgboost (the variable the
    # code reads), and torch told so too (its CUDA state cannot be reset once initialised: the one stand-in)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not nvidia_gpu_present()
    assert xgboost_device("auto") == "cpu" and torch_device("auto").type == "cpu"
    with pytest.raises(DeviceUnavailableError, match="--device cuda"):
        xgboost_device("cuda")
    with pytest.raises(DeviceUnavailableError, match="--device cuda"):
        torch_device("cuda")


def test_a_missing_gpu_exits_1_so_airflow_retries_it(monkeypatch, capsys):
    import aerodrome.train.entrypoint as entrypoint

    def no_gpu_here(args):
        raise DeviceUnavailableError("--device cuda: torch sees no CUDA device")

    monkeypatch.setattr(entrypoint, "run", no_gpu_here)  # the device check itself is tested above
    assert entrypoint.main(["--usecase=flight_delay", "--start=2013-01-01", "--end=2013-02-01"]) == 1
    assert capsys.readouterr().err.strip().endswith("torch sees no CUDA device")


def test_preflight_answers_without_training(lake, tmp_path, monkeypatch, capsys):
    from aerodrome.train.preflight import main as preflight

    monkeypatch.setenv("AERODROME_USECASES_DIR", str(ROOT / "include/usecases"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow:secret@db:5432/mlflow")
    monkeypatch.setenv("AERODROME_DATA_ROOT", lake.root)
    assert preflight(["--usecase=flight_delay"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["usecase"] == "flight_delay" and report["validated_partitions"] >= 1
    assert "secret" not in report["tracking_uri"]
    monkeypatch.setenv("AERODROME_DATA_ROOT", str(tmp_path / "empty"))
    assert preflight(["--usecase=flight_delay"]) == 3
    assert "no validated partition of 'flight_delay'" in capsys.readouterr().err


def test_regression_slices_compare_relative_errors():
    from aerodrome.train.evaluate import evaluate

    rng = np.random.default_rng(2)
    region = np.array(["big"] * 500 + ["small"] * 500)
    y = np.where(region == "big", 1000.0, 10.0) * (1 + rng.random(1000))
    noise = np.where(region == "big", 0.05, 0.20)  # big: 5 % error (large in units); small: 20 %
    p = y * (1 + noise * rng.choice([-1, 1], 1000))
    result = evaluate("regression", pd.DataFrame({"region": region}), y, p, ["region"])
    big, small = result.slices["region"]["big"], result.slices["region"]["small"]
    assert big["mae"] > small["mae"] and small["nmae"] > big["nmae"]
    assert small["mape"] == pytest.approx(0.20) and big["mape"] == pytest.approx(0.05)
    assert result.worst_slice("mae") == ("region=small", pytest.approx(small["nmae"]), "nmae")
    assert result.worst_slice("roc_auc") is None
