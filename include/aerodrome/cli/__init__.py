"""The `aerodrome` command (`python -m aerodrome.cli`): scaffold a use case and check it on sample files.

    aerodrome usecase new <name>                           a commented starter folder under the use-cases dir
    aerodrome usecase check <folder> [--sample FILE|DIR]   spec, types, expectations and features on samples
    aerodrome usecase sample <folder> --out DIR            sample days from the spec's demo feed (source.replay)

Exit codes: 0 passed, 1 the check found problems (each names the file, field or column and the fix),
2 bad arguments. No Airflow is needed or imported.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

from aerodrome.errors import AerodromeError


def _usecases_dir() -> Path:
    from aerodrome.settings import Settings

    return Settings.from_env().usecases_dir


def _dags_folder(usecases_dir: Path) -> Path | None:
    """The project's dags/ for a use case scaffolded into the project's include/usecases, else None."""
    from aerodrome.settings import PROJECT_ROOT

    own = (PROJECT_ROOT / "include" / "usecases").resolve()
    return PROJECT_ROOT / "dags" if Path(usecases_dir).resolve() == own else None


def _folder(text: str) -> Path:
    """A use-case folder: a path, or the name of a folder under the use-cases directory."""
    path = Path(text)
    if path.exists() or "/" in text:
        return path
    return _usecases_dir() / text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aerodrome", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="group", required=True)
    usecase = commands.add_parser("usecase", help="scaffold and check use cases").add_subparsers(
        dest="command", required=True
    )

    new = usecase.add_parser("new", help="write a commented starter folder <dir>/<name>/")
    new.add_argument("name", help="lower-case letters, digits and _; names the folder, the DAGs and the model")
    new.add_argument("--dir", type=Path, default=None, help="use-cases directory (default: AERODROME_USECASES_DIR)")
    new.add_argument("--force", action="store_true", help="overwrite an existing usecase.yaml")
    new.add_argument("--sample-days", type=int, default=14, help="generated sample days to write (default 14)")
    new.add_argument(
        "--dags-folder",
        type=Path,
        default=None,
        help="write the use case's DAG file <folder>/usecases/<name>.py (default: the project's dags/ when the "
        "use case goes to the project's include/usecases, else none)",
    )

    check = usecase.add_parser("check", help="check the spec, and with --sample its expectations and features")
    check.add_argument("folder", help="the use-case folder (or its name under the use-cases directory)")
    check.add_argument(
        "--sample",
        action="append",
        type=Path,
        default=[],
        help="a sample file (one day) or a folder of them; repeatable",
    )
    check.add_argument("--ds", default=None, help="the day (YYYY-MM-DD) of a single sample (default: from its name)")
    check.add_argument("--rows", type=int, default=5, help="rows of each feature table to print (default 5)")

    sample = usecase.add_parser("sample", help="write sample days from the spec's demo feed (source.replay)")
    sample.add_argument("folder", help="the use-case folder (or its name)")
    sample.add_argument("--out", type=Path, required=True, help="folder to write the files into")
    sample.add_argument("--start", type=date.fromisoformat, default=None, help="first day (default: schedule start)")
    sample.add_argument("--days", type=int, default=3, help="number of days (default 3)")
    return parser


def _new(args: argparse.Namespace) -> int:
    from aerodrome.cli.scaffold import SAMPLES_DIR, new_usecase

    usecases_dir = args.dir or _usecases_dir()
    made = new_usecase(
        args.name,
        usecases_dir,
        force=args.force,
        sample_days=args.sample_days,
        dags_folder=args.dags_folder or _dags_folder(usecases_dir),
    )
    print(f"wrote {made.folder}/:")
    for path in made.files:
        print(f"  {path}")
    print(
        "\nnext:\n"
        f"  1. edit {made.folder}/usecase.yaml (every section is commented); put a few real days in {SAMPLES_DIR}/\n"
        f"  2. python -m aerodrome.cli usecase check {made.folder} --sample {made.folder}/{SAMPLES_DIR}\n"
        f"  3. copy the days into the landing folder, then: make demo USECASE={args.name} DAYS=<days> "
        f"(see {made.folder}/README.md)"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from aerodrome.cli.check import check_usecase

    report = check_usecase(_folder(args.folder), args.sample, ds=args.ds, rows=args.rows)
    if report.passed:
        checked = f" on {len(report.days)} sample day(s)" if report.days else " (spec only: add --sample FILE)"
        print(f"\ncheck passed{checked} in {report.seconds:.1f} s")
        return 0
    print(f"\ncheck FAILED ({len(report.problems)} problem(s)) in {report.seconds:.1f} s:", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def _sample(args: argparse.Namespace) -> int:
    from aerodrome.landing import feed_for
    from aerodrome.storage import LocalStorage
    from aerodrome.usecase import FileDropSource, load_usecase

    spec = load_usecase(_folder(args.folder))
    if not isinstance(spec.source, FileDropSource) or not spec.source.replay:
        raise AerodromeError(
            f"use case {spec.name!r} has no demo feed (source.replay): copy a few days of your source into "
            f"{args.out} instead, one file per day"
        )
    first = args.start or spec.schedule.start_date
    days = [first + timedelta(days=i) for i in range(args.days)]
    for drop in feed_for(spec.source.replay)(LocalStorage(args.out), spec.source, days):
        print(f"{drop.uri} ({drop.rows:,} rows, day {drop.ds})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"new": _new, "check": _check, "sample": _sample}
    try:
        return handlers[args.command](args)
    except AerodromeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
