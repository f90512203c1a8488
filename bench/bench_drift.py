"""Drift-check wall time and peak memory: ours against Evidently's `DataDriftPreset` with default settings.

Frames carry the flight_delay model's feature set (41 numeric, 3 categorical) plus the prediction,
drawn from fixed distributions (seeded; the current batch has one shifted feature): a Feast join of
1M served rows is not what is measured here. The reference is 100k rows. Per size of the served batch:

* `ours`: `check_batch` scoring every feature and the prediction, on every served row, against the
  reference statistics computed beforehand (once per version, at promotion: not timed);
* `ours_with_report`: that plus the Evidently report the nightly run stores (the 12 most drifted
  columns + prediction, 5,000 rows per side), i.e. the drift task's whole compute;
* `evidently_default`: `Report([DataDriftPreset()])` on the full current and reference frames.

Each measurement runs in a fresh process (same data, same seed); peak memory = the process's high-water
RSS minus its RSS once the frames are built. ratio = ours / Evidently (time; below 1 is faster).

Run: `python bench/bench_drift.py [--quick]` (quick: 20k and 100k served rows).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REFERENCE_ROWS = 100_000
ROOT = Path(__file__).resolve().parents[1]


def frames(rows: int, seed: int, shift: bool) -> tuple[pd.DataFrame, list[str], list[str]]:
    from aerodrome.train.inputs import model_columns
    from aerodrome.usecase import load_usecase

    numeric, categorical = model_columns(load_usecase(ROOT / "include/usecases/flight_delay"))
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i, name in enumerate(numeric):
        data[name] = rng.gamma(2.0 + i % 5, 1.0 + i % 3, rows)
    data[numeric[5]] = data[numeric[5]] + (8.0 if shift else 0.0)
    for name, levels in zip(categorical, (16, 3, 100), strict=True):
        weights = np.random.default_rng(0).dirichlet(np.ones(levels))  # the same mix on both sides
        data[name] = pd.Categorical(rng.choice([f"{name[:2]}{k}" for k in range(levels)], rows, p=weights)).astype(str)
    data["prediction"] = rng.beta(2, 6, rows)
    return pd.DataFrame(data), numeric, categorical


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def child(tool: str, rows: int) -> dict[str, float]:
    """One measurement in this process: seconds and peak MB above the built frames."""
    from aerodrome.drift.check import check_batch
    from aerodrome.drift.reference import profile
    from aerodrome.drift.report import evidently_snapshot
    from aerodrome.usecase import DriftPolicy

    reference, numeric, categorical = frames(REFERENCE_ROWS, 1, False)
    current, _, _ = frames(rows, 2, True)
    policy = DriftPolicy()
    stats = profile("bench", "1", reference, numeric, categorical, reference["prediction"].to_numpy())
    if tool == "evidently_default":
        from evidently import DataDefinition, Dataset, Report  # noqa: F401  (imported before the clock)
        from evidently.presets import DataDriftPreset
    before = _rss_kb("VmRSS:")
    began = time.perf_counter()
    if tool == "evidently_default":
        definition = DataDefinition(numerical_columns=[*numeric, "prediction"], categorical_columns=categorical)
        Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
    else:
        result = check_batch(stats, current, policy, ["bench"], current["prediction"].to_numpy())
        assert [c.column for c in result.drifted] == [numeric[5]], result.drifted
        if tool == "ours_with_report":
            ranked = sorted(result.columns, key=lambda c: -c.score)[: policy.report_columns]
            sample = current.sample(policy.report_rows, random_state=0)
            ref = reference.sample(5000, random_state=0)
            num = [c.column for c in ranked if c.kind == "numeric"] + ["prediction"]
            evidently_snapshot(sample, ref, num, [c.column for c in ranked if c.kind == "categorical"], policy)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "peak_mb": (_rss_kb("VmHWM:") - before) / 1024}


def measure(tool: str, rows: int) -> dict[str, float]:
    code = f"import json, bench.bench_drift as b; print(json.dumps(b.child({tool!r}, {rows})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{tool} on {rows:,} rows failed: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict]:
    out = []
    for rows in (20_000, 100_000) if quick else (100_000, 1_000_000):
        theirs = measure("evidently_default", rows)
        for tool in ("ours", "ours_with_report"):
            ours = measure(tool, rows)
            label = f"{tool} {rows:,} rows x 45"
            out.append(
                {
                    "name": f"{label} time",
                    "value": round(ours["seconds"], 3),
                    "unit": "s",
                    "baseline": round(theirs["seconds"], 3),
                    "note": "baseline: Evidently DataDriftPreset default, same frames",
                }
            )
            out[-1]["ratio"] = ours["seconds"] / theirs["seconds"]
            out.append(
                {
                    "name": f"{label} peak memory",
                    "value": round(ours["peak_mb"], 1),
                    "unit": "MB",
                    "baseline": round(theirs["peak_mb"], 1),
                    "note": "high-water RSS above the built frames",
                }
            )
    return out


if __name__ == "__main__":
    for item in run(quick="--quick" in sys.argv):
        ratio = f"  ({item['value'] / item['baseline']:.3f}x Evidently)" if item.get("baseline") else ""
        print(f"{item['name']}: {item['value']} {item['unit']} vs {item['baseline']}{ratio}")
