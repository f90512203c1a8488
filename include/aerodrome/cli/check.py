"""`aerodrome usecase check <folder> --sample <file>`: a use case's spec, expectations and features on sample files.

Runs the library's own stages, in a throw-away data root, before any DAG exists: `load_usecase` (the
spec), the source reader and `conform` (types; a bad value names the file, column and row), the raw
partition writer and `validate_partition` (the Great Expectations gate, as the validate DAG runs it),
then `compute_features_range` (the features step of every sample day) and the head of each feature
table. Each sample file is one partition (one day); its day comes from `--ds`, else from the file name
(the spec's `source.pattern`, or any YYYY-MM-DD in it), else from its earliest event timestamp. A file
whose name matches a second source's pattern (`sources:`, e.g. `weather_{ds}.csv`) is that source's day:
cast to its columns and validated with its expectations, so `asof` views join it.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from aerodrome.errors import AerodromeError, SourceError
from aerodrome.partitions import parse_day
from aerodrome.usecase import SPEC_FILE, FileDropSource, UseCase, load_usecase

SAMPLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet"}
_DAY = r"(\d{4}-\d{2}-\d{2})"

Say = Callable[[str], None]


@dataclass
class CheckReport:
    """The outcome of one check: `problems` empty = passed."""

    usecase: str | None = None
    days: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    feature_rows: dict[str, int] = field(default_factory=dict)
    source_days: dict[str, list[str]] = field(default_factory=dict)  # second source -> its sample days
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Sample:
    path: Path
    ds: str
    why: str  # where the day came from


def sample_files(paths: list[Path]) -> list[Path]:
    """The sample files named, a folder standing for every .csv/.parquet file in it (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES)
            if not found:
                raise SourceError(f"{path}: no sample file (.csv or .parquet) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise SourceError(f"{path}: sample file not found")
    return files


def _sample_source(spec: UseCase, path: Path) -> FileDropSource:
    """A file-drop source that reads exactly `path`, in its format (whatever the spec's source kind)."""
    fmt = SAMPLE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise SourceError(f"{path}: a sample must be .csv or .parquet, not {path.suffix or 'without a suffix'!r}")
    name = path.name.replace("{", "{{").replace("}", "}}")
    return FileDropSource(kind="file_drop", path=str(path.parent), pattern=name, format=fmt)


def _pattern_day(pattern: str, name: str) -> str | None:
    """The day a file name carries where a `{ds}` pattern says, else None."""
    head, found, tail = pattern.partition("{ds}")
    match = re.fullmatch(re.escape(head) + _DAY + re.escape(tail), name) if found else None
    return match.group(1) if match else None


def sample_source(spec: UseCase, path: Path) -> str | None:
    """The second source a sample file belongs to (its name matches that source's pattern and not the main
    source's), else None: the main source."""
    if isinstance(spec.source, FileDropSource) and _pattern_day(spec.source.pattern, path.name):
        return None
    for name, second in spec.sources.items():
        if isinstance(second.source, FileDropSource) and _pattern_day(second.source.pattern, path.name):
            return name
    return None


def _day_from_name(spec: UseCase, path: Path) -> tuple[str, str] | None:
    if isinstance(spec.source, FileDropSource) and (day := _pattern_day(spec.source.pattern, path.name)):
        return day, f"from the file name, as source.pattern {spec.source.pattern!r} says"
    if match := re.search(_DAY, path.name):
        return match.group(1), "from the date in the file name"
    return None


def _day_from_events(spec: UseCase, frame) -> tuple[str, str]:
    stamps = frame[spec.timestamp_column].dropna()
    if stamps.empty:
        raise SourceError(f"no {spec.timestamp_column!r} value to tell the sample's day from: pass --ds YYYY-MM-DD")
    zone = spec.features.timezone if spec.features else "UTC"
    first = stamps.min().tz_convert(zone)
    return first.date().isoformat(), f"from the earliest {spec.timestamp_column} ({zone})"


@contextmanager
def _step(report: CheckReport, say: Say, what: str) -> Iterator[None]:
    """Time a step; an actionable error becomes a problem of the report (the check goes on where it can)."""
    began = time.perf_counter()
    try:
        yield
    except AerodromeError as exc:
        report.problems.append(f"{what}: {exc}")
        say(f"  FAILED {what}: {exc}")
    else:
        say(f"  ok     {what} [{time.perf_counter() - began:.1f} s]")


def check_usecase(
    folder: Path, samples: list[Path] | None = None, *, ds: str | None = None, rows: int = 5, say: Say = print
) -> CheckReport:
    """Check the spec in `folder`, then (with samples) types, expectations and features on them."""
    began = time.perf_counter()
    report = CheckReport()
    spec: UseCase | None = None
    with _step(report, say, f"spec {Path(folder) / SPEC_FILE if Path(folder).is_dir() else folder}"):
        spec = load_usecase(folder)
        report.usecase = spec.name
        views = len(spec.features.views) if spec.features else 0
        say(
            f"  use case {spec.name!r}: {len(spec.columns)} columns, {len(spec.expectations)} expectations, "
            f"{views} feature view(s), target {spec.target.column} ({spec.target.task})"
        )
    if spec is None or not samples:
        report.seconds = time.perf_counter() - began
        return report
    files: list[Path] = []
    with _step(report, say, "samples"):
        files = sample_files(samples)
        if ds:
            parse_day(ds)
        if ds and len(files) > 1:
            raise SourceError(f"--ds names one day but {len(files)} sample files were given: give one file per --ds")
    with tempfile.TemporaryDirectory(prefix="aerodrome-check-") as tmp:
        from aerodrome.storage import LocalStorage

        storage = LocalStorage(tmp)
        for path in files:
            _check_sample(spec, storage, path, ds, report, say, sample_source(spec, path))
        if spec.features and report.days and report.passed:
            _check_features(spec, storage, report, rows, say)
        elif not spec.features:
            say("  (no features section: nothing more to compute)")
    report.seconds = time.perf_counter() - began
    return report


def _check_sample(
    spec: UseCase, storage, path: Path, ds: str | None, report: CheckReport, say: Say, source: str | None = None
) -> None:
    """One sample file through the reader, `conform` and the validation gate, as its own partition (of the
    second source `source` when given: its columns, expectations and `<usecase>__<source>` partitions)."""
    from aerodrome.ingest import partition_key, read_file_drop, write_partition
    from aerodrome.ingest.datasets import source_dataset
    from aerodrome.schema import conform
    from aerodrome.storage import LocalStorage

    dataset = source_dataset(spec, source) if source else spec
    days = report.source_days.setdefault(source, []) if source else report.days
    of = f" (source {source})" if source else ""
    problems = len(report.problems)
    day = ""
    with _step(report, say, f"read and cast {path}{of}"):
        frame, where = read_file_drop(LocalStorage(path.parent), _sample_source(dataset, path), "sample")
        frame = conform(frame, dataset.columns, where)
        day, why = (ds, "from --ds") if ds else _day_from_name(dataset, path) or _day_from_events(dataset, frame)
        if day in days:
            raise SourceError(f"{path}: a second sample of day {day}{of}; give one file per day")
        say(f"  {len(frame):,} rows -> partition {day}{of} ({why})")
        write_partition(storage, partition_key("raw", dataset.name, day), frame, where)
    if len(report.problems) > problems:
        return
    expectations = f"{len(dataset.expectations)} from the spec + column checks"
    with _step(report, say, f"expectations of {day}{of} ({expectations})"):
        from aerodrome.validate import validate_partition

        outcome = validate_partition(dataset, storage, day)
        if not outcome.passed:
            raise _ExpectationsFailed(_failed_expectations(path, outcome))
        days.append(day)


def _failed_expectations(path: Path, outcome) -> str:
    """The failed expectations with rows numbered as in the sample (1 = first data row; the quarantine and
    Data Docs of the throw-away data root are left out)."""
    failures = [replace(f, rows=[r + 1 for r in f.rows]) for f in outcome.failures]
    lines = [f"    - {f.describe()}" for f in failures]
    return (
        f"{path}: {len(failures)} expectation(s) failed on {outcome.rows} rows "
        "(row N = the Nth data row; in a CSV, line N + 1):\n" + "\n".join(lines)
    )


class _ExpectationsFailed(AerodromeError):
    """A sample day failed its expectations (the summary names the expectation, column and rows)."""


def _check_features(spec: UseCase, storage, report: CheckReport, rows: int, say: Say) -> None:
    """Every declared view over the sample days, through the features step's public entry point."""
    import pandas as pd

    from aerodrome.features import compute_features_range

    days = sorted(date.fromisoformat(d) for d in report.days)
    with _step(report, say, f"features of {len(days)} day(s), {len(spec.features.views)} view(s)"):
        for view in spec.features.views:
            if view.kind == "asof" and not report.source_days.get(view.source or ""):
                second = spec.sources.get(view.source or "")
                pattern = getattr(second.source, "pattern", None) if second else None
                raise SourceError(
                    f"view {view.name!r} joins source {view.source!r}, but no sample of it was given: add its "
                    f"files for the same days to --sample" + (f" (named {pattern!r})" if pattern else "")
                )
        results = compute_features_range(spec, storage, days[0], days[-1])
        for view in spec.features.views:
            frames = [
                pd.read_parquet(Path(r.uris[view.name]) / "part-0.parquet") for r in results if view.name in r.uris
            ]
            table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            report.feature_rows[view.name] = len(table)
            say(f"\n  view {view.name} ({len(table):,} rows, entities {', '.join(view.entities)}):")
            with pd.option_context("display.width", 160, "display.max_columns", 12):
                say(
                    "    " + table.head(rows).to_string(index=False).replace("\n", "\n    ")
                    if len(table)
                    else "    (no rows)"
                )
