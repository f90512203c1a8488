"""DAG-file parse cost of `dags/aerodrome_usecases.py` beyond importing `airflow.sdk`.

Every DAG file is re-parsed by the dag-processor every `min_file_process_interval` and imported by
every task process, so whatever it imports at top level is paid again and again. Measured in fresh
interpreters (no warm module cache): median over N of (import airflow.sdk + exec the file) minus
median over N of (import airflow.sdk alone). Also lists heavy libraries the file pulled in.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from aerodrome_airflow.embedded import PROJECT_ROOT, embedded_environ

DAG_FILE = PROJECT_ROOT / "dags" / "aerodrome_usecases.py"
HEAVY = ("pandas", "pyarrow", "feast", "mlflow", "torch", "great_expectations", "xgboost", "evidently")
GOAL_S = 0.3

# Runs in a fresh interpreter: times the airflow.sdk import, then (optionally) the DAG file's exec.
PROBE = """
import importlib.util, json, sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
out = {"sdk_s": t1 - t0}
if len(sys.argv) > 1:
    before = set(sys.modules)
    spec = importlib.util.spec_from_file_location("aerodrome_bench_dagfile", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    t2 = time.perf_counter()
    from airflow.sdk import DAG
    out.update(
        total_s=t2 - t0,
        parse_s=t2 - t1,
        dags=sorted(v.dag_id for v in vars(module).values() if isinstance(v, DAG)),
        new_modules=sorted({m.split(".")[0] for m in set(sys.modules) - before}),
    )
print("BENCH_JSON " + json.dumps(out))
"""


def _probe(env: dict[str, str], dag_file: Path | None) -> dict:
    argv = [sys.executable, "-c", PROBE, *([str(dag_file)] if dag_file else [])]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line.removeprefix("BENCH_JSON "))
    raise RuntimeError(f"parse probe failed (exit {result.returncode}): {result.stderr[-2000:]}")


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="aerodrome-bench-parse-") as home:
        # the embedded profile, with a throw-away AIRFLOW_HOME so the project's .airflow is untouched
        env = {**os.environ, **embedded_environ(Path(home)), "PYTHONDONTWRITEBYTECODE": "1"}
        _probe(env, DAG_FILE)  # warm the OS page cache once (not the interpreter: each run is fresh)
        sdk_alone, with_file = [], []
        for _ in range(repeats):  # interleaved, so drift on a noisy machine hits both alike
            sdk_alone.append(_probe(env, None)["sdk_s"])
            with_file.append(_probe(env, DAG_FILE))
    sdk_median = statistics.median(sdk_alone)
    total_median = statistics.median(r["total_s"] for r in with_file)
    in_process = statistics.median(r["parse_s"] for r in with_file)
    heavy = sorted({m for r in with_file for m in r["new_modules"] if m in HEAVY})
    dags = with_file[-1]["dags"]
    beyond = total_median - sdk_median
    return [
        {
            "name": "dag file parse beyond airflow.sdk",
            "value": round(beyond, 3),
            "unit": "s",
            "goal": f"< {GOAL_S}",
            "note": f"median of {repeats} fresh interpreters each; {len(dags)} DAG(s): {', '.join(dags)}",
        },
        {
            "name": "dag file exec, same interpreter",
            "value": round(in_process, 3),
            "unit": "s",
            "goal": f"< {GOAL_S}",
            "note": "cross-check: exec time measured inside each run, after airflow.sdk",
        },
        {
            "name": "import airflow.sdk (reference)",
            "value": round(sdk_median, 3),
            "unit": "s",
            "note": f"median of {repeats}",
        },
        {
            "name": "heavy modules imported by the dag file",
            "value": len(heavy),
            "unit": "modules",
            "goal": "< 1",
            "note": ", ".join(heavy) if heavy else f"none of {', '.join(HEAVY)}",
        },
    ]
