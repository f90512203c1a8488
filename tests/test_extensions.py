"""Spec-level extension points: the use case's own `module:function` as tasks of its generated DAGs."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from aerodrome.errors import SpecError
from aerodrome.usecase import load_usecase

ROOT = Path(__file__).resolve().parents[1]

CHECKS = '''
import json

from rows import count_rows  # a sibling module of the use-case folder


def record_day(step):
    """Writes what it saw for the partition, so the test can tell it ran."""
    raw = step.storage.read_bytes(f"raw/{step.spec.name}/date={step.partition}/_manifest.json")
    seen = {"stage": step.stage, "when": step.when, "partition": step.partition, "rows": count_rows(raw)}
    step.storage.write_bytes(f"extensions/{step.spec.name}/{step.partition}.json", json.dumps(seen).encode())


def before_training(step):
    pass


def two_args(step, extra):
    pass
'''


def usecase_with(tmp_path: Path, extensions: list[dict], name: str = "ext_demand") -> Path:
    raw = yaml.safe_load((ROOT / "include/usecases/store_demand/usecase.yaml").read_text())
    raw["name"] = name
    raw["extensions"] = extensions
    folder = tmp_path / name
    folder.mkdir(parents=True)
    (folder / "usecase.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (folder / "checks.py").write_text(CHECKS)
    (folder / "rows.py").write_text(
        "import json\n\ndef count_rows(manifest):\n    return json.loads(manifest)['rows']\n"
    )
    return folder


def test_the_factory_inserts_extensions_and_moves_the_announcement_after_them(tmp_path):
    from aerodrome_airflow.dag_factory import build_features_dag, build_ingest_dag, build_train_dag

    spec = load_usecase(
        usecase_with(
            tmp_path,
            [
                {"after": "ingest", "task": "checks:record_day"},
                {"after": "features", "task": "checks:record_day", "name": "features_checked"},
                {"before": "train", "task": "checks:before_training"},
            ],
        )
    )
    ingest = build_ingest_dag(spec)
    assert ingest.get_task("ingest_partition").downstream_task_ids == {"record_day"}
    assert ingest.get_task("ingest_partition").outlets == []
    assert [a.name for a in ingest.get_task("record_day").outlets] == ["raw/ext_demand"]
    features = build_features_dag(spec)
    assert features.get_task("publish_features").downstream_task_ids == {"features_checked"}
    assert [a.name for a in features.get_task("features_checked").outlets] == ["features/ext_demand"]
    train = build_train_dag(spec)
    assert train.get_task("plan_window").downstream_task_ids == {"before_training"}
    assert train.get_task("before_training").downstream_task_ids == {"train_model"}
    assert train.get_task("train_model").downstream_task_ids == {"announce_candidate"}


@pytest.mark.parametrize(
    ("extension", "field", "message"),
    [
        ({"after": "ingest", "task": "nowhere:fn"}, "extensions[0].task", "module 'nowhere' is neither in"),
        ({"after": "ingest", "task": "checks:missing"}, "extensions[0].task", "has no function 'missing'. Fix: name"),
        ({"after": "ingest", "task": "checks:two_args"}, "extensions[0].task", "not one argument. Fix: define it as"),
        ({"task": "checks:record_day"}, "extensions[0]", "needs exactly one of 'before' and 'after'"),
        ({"after": "scoring", "task": "checks:record_day"}, "extensions[0].after", "Input should be 'ingest'"),
        ({"after": "train", "task": "checks:record_day", "name": "train_model"}, "extensions[0]", "already taken"),
        ({"after": "ingest", "task": "checks"}, "extensions[0].task", "should match pattern"),
    ],
)
def test_a_bad_extension_fails_the_spec_check(tmp_path, extension, field, message):
    folder = usecase_with(tmp_path, [extension])
    with pytest.raises(SpecError) as caught:
        load_usecase(folder)
    assert str(caught.value).startswith(f"ext_demand: {folder / 'usecase.yaml'}: {field}: "), str(caught.value)
    assert message in str(caught.value)


def test_two_usecases_may_each_have_a_checks_module(tmp_path):
    from aerodrome.extensions import resolve_extension

    first = usecase_with(tmp_path, [{"after": "ingest", "task": "checks:record_day"}], name="first_uc")
    second = tmp_path / "second_uc"
    second.mkdir()
    (second / "checks.py").write_text("def record_day(step):\n    return 'second'\n")
    assert resolve_extension("checks:record_day", first) is not resolve_extension("checks:record_day", second)
    assert resolve_extension("checks:record_day", second)(None) == "second"


@pytest.mark.slow
def test_the_extension_runs_for_the_run_s_partition(airflow_db, tmp_path, monkeypatch):
    """A real run of the generated ingest DAG (dag.test): the extension saw the run's day and its rows."""
    from aerodrome.settings import Settings
    from aerodrome.storage import open_storage
    from aerodrome_airflow.dag_factory import build_ingest_dag

    folder = usecase_with(tmp_path, [{"after": "ingest", "task": "checks:record_day"}])
    monkeypatch.setenv("AERODROME_USECASES_DIR", str(tmp_path))
    dag = build_ingest_dag(load_usecase(folder))
    day = datetime(2024, 5, 2, tzinfo=UTC)
    run = dag.test(logical_date=day + timedelta(days=1), run_conf={"ds": "2024-05-02", "replay_drop": True})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    settings = Settings.from_env()
    seen = json.loads(open_storage(settings.data_root, settings).read_bytes("extensions/ext_demand/2024-05-02.json"))
    assert seen["partition"] == "2024-05-02" and (seen["stage"], seen["when"]) == ("ingest", "after")
    assert seen["rows"] > 0
