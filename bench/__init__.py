"""Aerodrome benchmarks: `python -m bench` runs every `bench/bench_<name>.py` and prints a table.

Each module exposes `run(quick: bool = False) -> list[dict]`; a dict has `name`, `value`, `unit` and
optionally `baseline` (measured in the same run), `ratio` (value / baseline), `goal` (e.g. "< 30")
and `note`. Results are merged into `bench/results/latest.json`.
"""
