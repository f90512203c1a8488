"""The on-disk cache of checked specs (`aerodrome.spec_cache`): a hit is the same spec, any change a miss."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from aerodrome.errors import SpecError
from aerodrome.spec_cache import load_usecase_cached, spec_cache_dir
from aerodrome.usecase import load_usecase

SHIPPED = Path(__file__).resolve().parents[1] / "include" / "usecases"


@pytest.fixture
def flights(tmp_path: Path) -> Path:
    folder = tmp_path / "usecases" / "flight_delay"
    shutil.copytree(SHIPPED / "flight_delay", folder)
    return folder


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.json"))


@pytest.mark.parametrize("name", ["flight_delay", "store_demand"])
def test_a_hit_is_the_checked_spec(tmp_path: Path, name: str) -> None:
    cache = tmp_path / "cache"
    checked = load_usecase(SHIPPED / name)
    first = load_usecase_cached(SHIPPED / name, cache)
    assert len(_entries(cache)) == 1
    second = load_usecase_cached(SHIPPED / name, cache)
    assert first == second == checked
    assert second.model_fields_set == checked.model_fields_set  # validators reading what was set agree


def test_a_hit_skips_the_checks(flights: Path, tmp_path: Path) -> None:
    """The cached entry is what a hit returns: a re-parse neither reads the YAML nor runs the checks."""
    cache = tmp_path / "cache"
    load_usecase_cached(flights, cache)
    (entry,) = _entries(cache)
    entry.write_text(entry.read_text().replace('"owner":"', '"owner":"cached-', 1))
    assert load_usecase_cached(flights, cache).owner.startswith("cached-")


def test_a_changed_spec_or_module_is_checked_again(flights: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spec_file = flights / "usecase.yaml"
    assert load_usecase_cached(flights, cache).owner != "someone-else"
    text = spec_file.read_text()
    owner = load_usecase(flights).owner
    spec_file.write_text(text.replace(f"owner: {owner}", "owner: someone-else", 1))
    assert load_usecase_cached(flights, cache).owner == "someone-else"
    assert len(_entries(cache)) == 1  # the earlier version's entry is gone

    # a feature module of the folder changes: the checks run again (here they fail: the module is gone)
    (module,) = flights.glob("*.py")
    module.unlink()
    with pytest.raises(SpecError, match="flight_delay"):
        load_usecase_cached(flights, cache)


def test_a_broken_spec_fails_every_time_and_is_not_kept(flights: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spec_file = flights / "usecase.yaml"
    spec_file.write_text(spec_file.read_text().replace("promotion: {metric: roc_auc", "promotion: {metric: rocauc"))
    for _ in range(2):
        with pytest.raises(SpecError, match=r"flight_delay: .*promotion\.metric"):
            load_usecase_cached(flights, cache)
    assert _entries(cache) == []


def test_a_corrupt_entry_or_unwritable_cache_only_costs_a_check(flights: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_usecase_cached(flights, cache)
    (entry,) = _entries(cache)
    entry.write_text("{not json")
    assert load_usecase_cached(flights, cache) == load_usecase(flights)

    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a file where the cache folder should be: nothing can be written under it
    assert load_usecase_cached(flights, blocked / "specs") == load_usecase(flights)
    assert load_usecase_cached(flights, None) == load_usecase(flights)


def test_cache_folder_is_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert spec_cache_dir(str(tmp_path)) == tmp_path / "cache" / "specs"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert spec_cache_dir("s3://bucket/prefix") == tmp_path / "xdg" / "aerodrome" / "specs"


def test_the_dag_factory_keeps_checked_specs_under_the_data_root() -> None:
    """A DAG file's parse goes through the cache: the second parse of an unchanged spec reads the entry."""
    from aerodrome.settings import Settings
    from aerodrome_airflow.dag_factory import usecase_dags

    cache = spec_cache_dir(Settings.from_env().data_root)
    first = usecase_dags("store_demand")
    (entry,) = cache.glob("store_demand-*.json")
    text = entry.read_text()
    owner = first["ingest_store_demand"].owner
    entry.write_text(text.replace(f'"owner":"{owner}"', '"owner":"from-the-cache"', 1))
    try:
        second = usecase_dags("store_demand")
    finally:
        entry.write_text(text)  # other tests of this session parse the same spec
    assert sorted(second) == sorted(first)
    assert second["ingest_store_demand"].owner == "from-the-cache"
