"""`aerodrome usecase new` and `aerodrome usecase check`: a starter folder that passes the check, and checks that
name the file, column and row of bad samples. Real library stages (reader, conform, GX gate, features); no mocks."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml
from aerodrome.cli import main
from aerodrome.cli.check import check_usecase
from aerodrome.errors import SpecError
from aerodrome.usecase import load_usecase
from conftest import ROOT, USECASES_DIR


@pytest.fixture
def starter(tmp_path) -> Path:
    assert main(["usecase", "new", "my_orders", "--dir", str(tmp_path)]) == 0
    return tmp_path / "my_orders"


def rewrite(sample: Path, target: Path, edits: dict[tuple[int, str], str]) -> Path:
    """A copy of a CSV sample with cells changed: (data row counted from 1, column) -> text."""
    rows = list(csv.DictReader(sample.open()))
    for (row, column), value in edits.items():
        rows[row - 1][column] = value
    with target.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def test_new_writes_a_commented_starter_that_passes_the_check_on_its_samples(starter, capsys):
    spec_file = starter / "usecase.yaml"
    text = spec_file.read_text()
    for section in (
        "source:",
        "columns:",
        "target:",
        "schedule:",
        "expectations:",
        "features:",
        "model:",
        "# promotion:",
    ):
        assert section in text
    commented = [line for line in text.splitlines() if "#" in line]
    assert len(commented) > 45  # every section and most fields say what they mean
    for section in ("source", "columns", "schedule", "expectations", "features", "model"):
        assert any(line.startswith(f"# -- {section}") for line in commented), section
    assert load_usecase(starter).name == "my_orders"
    samples = sorted((starter / "samples").glob("*.csv"))
    assert len(samples) == 14 and samples[0].name == "orders_2024-01-01.csv"
    assert "Sample data" in (starter / "README.md").read_text()

    capsys.readouterr()
    assert main(["usecase", "check", str(starter), "--sample", str(starter / "samples")]) == 0
    out = capsys.readouterr().out
    assert "partition 2024-01-01 (from the file name" in out and "check passed on 14 sample day(s)" in out
    # the starter's declarative features, computed on the samples, with the head of each table
    assert "view customer_orders (" in out and "customer_basket_mean_28d" in out
    assert "view customer_last_order (" in out and "customer_prev_basket" in out


def test_new_refuses_a_bad_name_and_an_existing_use_case(starter, capsys):
    assert main(["usecase", "new", "My-Orders", "--dir", str(starter.parent)]) == 1
    assert main(["usecase", "new", "my_orders", "--dir", str(starter.parent)]) == 1
    err = capsys.readouterr().err
    assert "lower-case letters" in err and "exists already" in err and "--force" in err
    assert main(["usecase", "new", "my_orders", "--dir", str(starter.parent), "--force"]) == 0


def test_a_value_that_does_not_fit_its_column_names_file_column_and_row(starter, tmp_path, capsys):
    bad = rewrite(
        starter / "samples/orders_2024-01-01.csv", tmp_path / "orders_2024-01-01.csv", {(7, "basket_value"): "12,5x"}
    )
    assert main(["usecase", "check", str(starter), "--sample", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "column 'basket_value' should be numeric" in err and "row 7: '12,5x'" in err


def test_failed_expectations_name_the_file_expectation_column_and_rows(starter, tmp_path):
    bad = rewrite(
        starter / "samples/orders_2024-01-02.csv",
        tmp_path / "orders_2024-01-02.csv",
        {(3, "customer_id"): "", (5, "customer_id"): "", (9, "channel"): "fax"},
    )
    report = check_usecase(starter, [bad], say=lambda _line: None)
    assert not report.passed and report.days == []
    (problem,) = report.problems
    assert str(bad) in problem
    assert "expect_column_values_to_not_be_null [customer_id]: 2 of 120 rows unexpected" in problem
    assert "row 3: <NA>, row 5: <NA>" in problem  # rows as numbered in the sample (1 = first data row)
    assert "expect_column_values_to_be_in_set [channel]" in problem and "row 9: 'fax'" in problem
    assert "aerodrome-check-" not in problem  # nothing points into the throw-away data root


def test_a_spec_error_names_the_field(starter):
    spec_file = starter / "usecase.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["promotion"] = {"metric": "rmsee"}
    spec_file.write_text(yaml.safe_dump(spec))
    report = check_usecase(starter, [starter / "samples"], say=lambda _line: None)
    assert not report.passed and len(report.problems) == 1
    assert "promotion.metric" in report.problems[0] and "rmsee" in report.problems[0]


def test_the_day_of_a_sample_without_a_date_in_its_name_comes_from_its_events(starter, tmp_path, capsys):
    sample = shutil.copy(starter / "samples/orders_2024-01-02.csv", tmp_path / "yesterday.csv")
    assert main(["usecase", "check", "my_orders", "--sample", str(sample)]) == 1  # not under the use-cases dir
    capsys.readouterr()
    assert main(["usecase", "check", str(starter), "--sample", str(sample)]) == 0
    assert "partition 2024-01-02 (from the earliest ordered_at (UTC))" in capsys.readouterr().out


def test_check_computes_the_features_of_flight_samples_and_prints_each_table_head(tmp_path, capsys):
    drops = tmp_path / "drops"
    assert main(["usecase", "sample", "flight_delay", "--out", str(drops), "--start", "2013-01-01", "--days", "2"]) == 0
    assert main(["usecase", "check", str(USECASES_DIR / "flight_delay"), "--sample", str(drops), "--rows", "2"]) == 0
    out = capsys.readouterr().out
    spec = load_usecase(USECASES_DIR / "flight_delay")
    for view in spec.features.views:
        assert f"view {view.name} (" in out
    assert "carrier_delay_rate_7d" in out and "check passed on 2 sample day(s)" in out
    # the weather drops are the second source's days: cast and validated as it, then joined as of
    assert "67 rows -> partition 2013-01-01 (source weather)" in out
    assert "expectations of 2013-01-02 (source weather)" in out and "view origin_weather (139 rows" in out

    flights_only = tmp_path / "flights_only"
    flights_only.mkdir()
    for drop in drops.glob("flights_*.csv"):
        shutil.copy(drop, flights_only)
    assert main(["usecase", "check", str(USECASES_DIR / "flight_delay"), "--sample", str(flights_only)]) == 1
    assert (
        "view 'origin_weather' joins source 'weather', but no sample of it was given: add its files for the same "
        "days to --sample (named 'weather_{ds}.csv')"
    ) in capsys.readouterr().err


def test_the_command_runs_as_a_module_without_airflow(starter):
    code = (
        f"import sys, runpy; sys.argv = ['aerodrome', 'usecase', 'check', {str(starter)!r}];"
        "runpy.run_module('aerodrome.cli', run_name='__main__')"
    )
    out = subprocess.run([sys.executable, "-c", code + "\n"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "check passed (spec only" in out.stdout
    check = [sys.executable, "-c", "import sys, aerodrome.cli.check; print('airflow' in sys.modules)"]
    assert subprocess.run(check, capture_output=True, text=True).stdout.strip() == "False"


def test_the_make_target_and_the_demo_usecase_are_wired():
    makefile = (ROOT / "Makefile").read_text()
    assert "$(PY) -m aerodrome.cli usecase new $(NAME)" in makefile
    assert "$(PY) -m aerodrome_airflow.demo --usecase $(USECASE) --days $(DAYS)" in makefile
    dry = subprocess.run(
        ["make", "-n", "-o", ".venv/bin/.installed", "usecase", "NAME=x"], cwd=ROOT, capture_output=True, text=True
    )
    assert dry.returncode == 0 and ".venv/bin/python -m aerodrome.cli usecase new x" in dry.stdout


def test_new_writes_the_use_cases_own_dag_file_and_the_starter_builds_every_stage(tmp_path):
    from aerodrome_airflow.dag_factory import usecase_dags

    usecases, dags = tmp_path / "usecases", tmp_path / "dags"
    assert main(["usecase", "new", "my_orders", "--dir", str(usecases), "--dags-folder", str(dags)]) == 0
    loader = (dags / "usecases" / "my_orders.py").read_text()
    assert 'usecase_dags("my_orders"' in loader
    built = usecase_dags("my_orders", usecases_dir=usecases)
    stages = {dag_id.removesuffix("_my_orders") for dag_id in built}
    assert {"ingest", "validate", "reconcile", "features", "train", "promote", "canary", "drift"} <= stages


FEEDER_HOOK = '''\
def forecast_squared(frame, view, context):
    """The hour's temperature forecast squared, known when the hour starts."""
    out = frame[["zone", "_day"]].copy()
    out["event_timestamp"] = frame["_event_time"]
    out["temperature_sq"] = frame["temperature_c"] ** 2
    return out
'''


@pytest.fixture
def feeder(tmp_path, monkeypatch) -> Path:
    """grid_load copied outside the use-cases dir as `grid_feeder` (the `usecase new --dir` flow), with a
    holiday calendar and a `module:function` view that exist only in that folder."""
    monkeypatch.setenv("AERODROME_USECASES_DIR", str(tmp_path / "configured"))
    folder = tmp_path / "elsewhere" / "grid_feeder"
    shutil.copytree(USECASES_DIR / "grid_load", folder, ignore=shutil.ignore_patterns("samples", "*.py"))
    (folder / "holidays.csv").rename(folder / "feeder_holidays.csv")
    (folder / "feeder_holidays.csv").write_text("date,name\n2024-01-01,New Year\n2024-01-02,Feeder day\n")
    (folder / "grid_feeder_features.py").write_text(FEEDER_HOOK)
    raw = yaml.safe_load((folder / "usecase.yaml").read_text())
    raw["name"] = "grid_feeder"
    raw["features"]["calendar"]["holiday"] = {"holiday": "feeder_holidays.csv"}
    raw["features"]["views"].append(
        {
            "name": "zone_forecast",
            "compute": "grid_feeder_features:forecast_squared",
            "entities": ["zone"],
            "ttl_hours": 2,
            "features": {"temperature_sq": "float"},
        }
    )
    (folder / "usecase.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def test_check_of_a_folder_outside_the_usecases_dir_reads_its_calendar_and_hooks_there(feeder, tmp_path, capsys):
    from aerodrome.features.builders import builder_for
    from aerodrome.spec_cache import load_usecase_cached
    from aerodrome.usecase import UseCase

    samples = [USECASES_DIR / "grid_load/samples" / f"load_2024-01-0{d}.csv" for d in (1, 2)]
    args = ["usecase", "check", str(feeder), *(a for s in samples for a in ("--sample", str(s))), "--rows", "2"]
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "check passed on 2 sample day(s)" in out
    assert "view zone_forecast (288 rows" in out and "temperature_sq" in out

    spec = load_usecase(feeder)  # the folder travels with the spec: DAG tasks, trainer and gateway use builder_for
    cached = [load_usecase_cached(feeder, tmp_path / "cache") for _ in range(2)]  # a miss, then a hit
    assert spec.folder == feeder and [c.folder for c in cached] == [feeder, feeder] and cached[1] == spec
    builder = builder_for(spec)
    assert builder.usecase_dir == feeder and builder.holidays["holiday"] == {date(2024, 1, 1), date(2024, 1, 2)}
    in_code = UseCase.model_validate(
        spec.model_dump(exclude_unset=True)
    )  # a spec without a folder: looked up by name, not found
    assert in_code.folder is None
    with pytest.raises(SpecError, match="calendar file feeder_holidays.csv not found"):
        builder_for(in_code)


def test_check_refuses_a_lag_of_the_target_stamped_at_its_event(feeder, capsys):
    raw = yaml.safe_load((feeder / "usecase.yaml").read_text())
    raw["features"]["views"][1].pop("known_after_minutes")  # zone_load_last_hour: the load of the hour itself
    (feeder / "usecase.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["usecase", "check", str(feeder)]) == 1
    err = capsys.readouterr().err
    assert f"grid_feeder: {feeder / 'usecase.yaml'}: features.views[1].known_at: view 'zone_load_last_hour'" in err
    assert "(a label leak). Fix: set known_at: <column when the outcome is known> or known_after_minutes: N" in err
