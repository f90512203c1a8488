"""`python -m bench [--only NAME]... [--quick]`: run the benchmark modules and print one table.

Every `bench/bench_<name>.py` is discovered and run in turn; a module that fails is reported in the
table (and makes the exit code 1) without stopping the others. Results are merged into
`bench/results/latest.json` (a module run again replaces its own entry).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import re
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "latest.json"
_GOAL = re.compile(r"^\s*(<=|>=|<|>)\s*([0-9.eE+-]+)")


def discover() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def meets(value, goal) -> str:
    """'yes'/'NO' for a goal like '< 30' or '>= 1.0'; '' when there is no goal or no value."""
    match = _GOAL.match(str(goal)) if goal is not None else None
    if match is None or not isinstance(value, int | float):
        return ""
    op, bound = match.group(1), float(match.group(2))
    ok = {"<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound}[op]
    return "yes" if ok else "NO"


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3f}" if magnitude < 1 else f"{value:.2f}" if magnitude < 100 else f"{value:.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def run_module(name: str, quick: bool) -> tuple[list[dict], float, str | None]:
    started = time.monotonic()
    try:
        module = importlib.import_module(f"bench.bench_{name}")
        rows = list(module.run(quick=quick))
        error = None
    except Exception as exc:  # one failing benchmark must not hide the others
        traceback.print_exc()
        rows, error = [], f"{type(exc).__name__}: {exc}"
    for row in rows:
        value, baseline = row.get("value"), row.get("baseline")
        if row.get("ratio") is None and _number(value) and _number(baseline) and baseline:
            row["ratio"] = value / baseline
    return rows, time.monotonic() - started, error


def table(results: dict[str, dict]) -> str:
    header = ("benchmark", "measure", "value", "unit", "baseline", "ratio", "goal", "met", "note")
    lines = [header]
    for module, entry in results.items():
        if entry.get("error"):
            lines.append((module, "FAILED", "-", "", "", "", "", "NO", entry["error"][:100]))
        for row in entry.get("rows", []):
            lines.append(
                (
                    module,
                    str(row.get("name", "")),
                    _fmt(row.get("value")),
                    str(row.get("unit", "")),
                    _fmt(row.get("baseline")),
                    f"{row['ratio']:.2f}x" if isinstance(row.get("ratio"), int | float) else "",
                    str(row.get("goal") or ""),
                    meets(row.get("value"), row.get("goal")),
                    str(row.get("note") or ""),
                )
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for i, line in enumerate(lines):
        cells = [
            cell.rjust(width) if 2 <= j <= 5 else cell.ljust(width)  # numbers right-aligned
            for j, (cell, width) in enumerate(zip(line[:-1], widths, strict=True))
        ]
        out.append("  ".join([*cells, line[-1]]).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths) + "  ----")
    return "\n".join(out)


def machine() -> dict:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "bytecode": bytecode_cache(),
    }


def bytecode_cache() -> str:
    """Whether imports can use compiled .pyc files: without them every process compiles Airflow again."""
    spec = importlib.util.find_spec("airflow")
    package = Path(next(iter(spec.submodule_search_locations))) if spec else None
    compiled = bool(package) and any((package / "__pycache__").glob("*.pyc"))
    if sys.pycache_prefix:
        compiled = compiled or Path(sys.pycache_prefix).is_dir()
    writes = not sys.flags.dont_write_bytecode
    if compiled:
        return "cached .pyc present"
    return "compiled on first import, then cached" if writes else "none: PYTHONDONTWRITEBYTECODE and no .pyc"


def save(results: dict[str, dict], quick: bool) -> dict:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        merged = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        merged = {}
    merged.setdefault("modules", {}).update(results)
    merged.update(
        updated=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine(),
        command=" ".join(["python -m bench", *sys.argv[1:]]),
        quick=quick,
    )
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(merged, indent=2, default=str) + "\n")
    tmp.replace(RESULTS)
    return merged


def main(argv: list[str] | None = None) -> int:
    known = discover()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", metavar="NAME", help=f"one of {', '.join(known)}")
    parser.add_argument("--quick", action="store_true", help="smaller inputs and fewer repeats")
    args = parser.parse_args(argv)
    selected = [n.removeprefix("bench_").removesuffix(".py") for n in (args.only or known)]
    unknown = sorted(set(selected) - set(known))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}")

    mode = " (quick)" if args.quick else ""
    print(f"bench: {', '.join(selected)}{mode} on {os.cpu_count()} cores", flush=True)
    results: dict[str, dict] = {}
    for name in selected:
        print(f"\n== {name}", flush=True)
        load_before = os.getloadavg()[0]  # other work on the machine skews timings: keep a trace
        rows, seconds, error = run_module(name, args.quick)
        results[name] = {
            "rows": rows,
            "seconds": round(seconds, 1),
            "load_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
            "error": error,
            "quick": args.quick,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        print(f"== {name}: {'FAILED ' + error if error else 'done'} in {seconds:.1f}s", flush=True)
    save(results, args.quick)
    print("\n" + table(results))
    print(f"\nresults: {RESULTS.relative_to(BENCH_DIR.parent)}")
    return 1 if any(r["error"] for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
