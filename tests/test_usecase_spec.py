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
    with pytest.raises(SpecError, match=r"usecase.yaml: .*unknown field 'schedul'"):
        load_usecase(folder)


def test_unknown_nested_field_is_named(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r["source"].update(patern="x.csv"))
    with pytest.raises(SpecError, match=r"unknown field 'source.file_drop.patern'"):
        load_usecase(folder)


def test_missing_column_is_named_with_fix(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r.update(natural_key=["store_id", "register"]))
    with pytest.raises(SpecError, match=r"natural_key\[1\] names column 'register'.*Add it to 'columns'"):
        load_usecase(folder)


def test_expectation_on_missing_column(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r["expectations"].append({"type": "not_null", "column": "nope"}))
    with pytest.raises(SpecError, match=r"expectations\[\d+\].column names column 'nope'"):
        load_usecase(folder)


def test_event_timestamp_must_be_timestamp(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r.update(event_timestamp="price"))
    with pytest.raises(SpecError, match="must have type 'timestamp'"):
        load_usecase(folder)


def test_folder_name_must_match(tmp_path):
    folder = _write_spec(tmp_path, lambda r: None)
    renamed = folder.rename(tmp_path / "other_name")
    with pytest.raises(SpecError, match="must equal its folder name"):
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
    with pytest.raises(SpecError, match="promotion.metric 'rmsee' is not a regression metric"):
        load_usecase(folder)
    folder = _write_spec(tmp_path / "default", lambda r: r.pop("promotion"))
    assert load_usecase(folder).promotion.metric == "mae"


def test_canary_steps_must_rise_to_100(tmp_path):
    folder = _write_spec(tmp_path, lambda r: r.update(canary={"steps": [50, 25]}))
    with pytest.raises(SpecError, match="must rise strictly and end at 100"):
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
