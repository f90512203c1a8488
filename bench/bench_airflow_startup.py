"""Local Airflow: start-up time, memory, listening addresses and per-task scheduling latency.

Three launches in the same run, each with a fresh temporary AIRFLOW_HOME and free ports:
  baseline  `airflow standalone` with Airflow's defaults (only the home, the ports, the API host and
            the dags and plugins folders are set, so that it runs the same project without colliding
            with anything);
  ours      `python -m aerodrome_airflow.up` (`make up`), the embedded profile;
  ours-1s   the same with the scheduler's default `scheduler_idle_sleep_time` (1 s), for latency only.
Start-up = launch -> `GET /api/v2/monitor/health` reports the metadata DB, scheduler, dag-processor
and triggerer healthy. Memory = total PSS over the launched process tree (shared pages split
between the processes that map them), the largest of 5 samples taken once every DAG is visible.
Latency = trigger (`POST /api/v2/dags/{id}/dagRuns`) -> success of a chain of 5 trivial tasks.
Every wait is bounded; every process started is stopped (and killed if it lingers) at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aerodrome_airflow.embedded import PROJECT_ROOT, api_environ
from aerodrome_airflow.up import ADMIN_USER, access_token, api_request, generated_password, health, is_healthy

from bench.proc import (
    become_subreaper,
    free_port,
    is_loopback,
    listening_addresses,
    stop_tree,
    tree_cpu_percent,
    tree_pss_mb,
)

PROBE_FILE = Path(__file__).resolve().parent / "dags" / "latency_probe.py"
PROBE_DAG = "aerodrome_latency_probe"
PROBE_TASKS = 5
COMPONENTS = ("scheduler", "dag_processor", "triggerer")
START_TIMEOUT_S = 150.0
DAGS_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 120.0
STARTUP_GOAL_S = 30
PSS_GOAL_MB = 1000
IDLE_WINDOW_S = 10.0
DEFAULT_IDLE_SLEEP_S = "1.0"  # Airflow's default [scheduler] scheduler_idle_sleep_time


@dataclass
class Launch:
    label: str
    healthy_s: float | None = None
    dags_s: float | None = None
    pss_mb: float | None = None
    processes: int | None = None
    idle_cpu_percent: float | None = None
    listening: list[str] = field(default_factory=list)
    first_run_s: float | None = None
    latencies_s: list[float] = field(default_factory=list)
    task_seconds: list[float] = field(default_factory=list)
    stop_s: float | None = None
    stopped_cleanly: bool | None = None
    error: str | None = None


def _clean_environ() -> dict[str, str]:
    """This environment without any Airflow or Aerodrome settings, so each launch starts from defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AERODROME_"))}


def _dags_folder(root: Path) -> Path:
    """The project's DAG files plus the latency probe, in a throw-away dags folder."""
    folder = root / "dags"
    shutil.copytree(PROJECT_ROOT / "dags", folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROBE_FILE, folder / PROBE_FILE.name)
    return folder


def _wait_dags(base_url: str, token: str, dag_ids: set[str], deadline: float) -> None:
    while True:
        try:
            listed = api_request("GET", f"{base_url}/api/v2/dags?limit=1000", token=token)
            if dag_ids <= {d["dag_id"] for d in listed.get("dags", [])}:
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"DAGs {sorted(dag_ids)} not all visible in time")
        time.sleep(0.25)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _trigger_and_wait(base_url: str, token: str) -> tuple[float, float]:
    """Seconds from trigger to success seen by the client, and the tasks' own run time summed."""
    runs = f"{base_url}/api/v2/dags/{PROBE_DAG}/dagRuns"
    started = time.monotonic()
    run_id = api_request("POST", runs, {"logical_date": None}, token)["dag_run_id"]
    deadline = started + RUN_TIMEOUT_S
    while True:
        state = api_request("GET", f"{runs}/{run_id}", token=token)["state"]
        if state in ("success", "failed"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {state} after {RUN_TIMEOUT_S:.0f}s")
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    if state != "success":
        raise RuntimeError(f"latency probe run {run_id} failed; see the task logs")
    tis = api_request("GET", f"{runs}/{run_id}/taskInstances", token=token)["task_instances"]
    busy = sum(
        (_parse_time(t["end_date"]) - _parse_time(t["start_date"])).total_seconds()
        for t in tis
        if t.get("start_date") and t.get("end_date")
    )
    return elapsed, busy


def measure(label: str, argv: list[str], env: dict[str, str], home: Path, port: int, stop_signal: int,
            latency_runs: int) -> Launch:  # fmt: skip
    result = Launch(label)
    base_url = f"http://127.0.0.1:{port}"
    log = open(home / "launch.log", "wb")  # noqa: SIM115 - closed below, whatever happens
    launched = time.monotonic()
    proc = subprocess.Popen(
        argv, env=env, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = launched + START_TIMEOUT_S
        while not is_healthy(health(base_url), COMPONENTS):
            if proc.poll() is not None:
                raise RuntimeError(f"exited with code {proc.returncode} before becoming healthy")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {START_TIMEOUT_S:.0f}s: {health(base_url)}")
            time.sleep(0.2)
        result.healthy_s = time.monotonic() - launched
        token = access_token(base_url, ADMIN_USER, generated_password(home) or "")
        _wait_dags(base_url, token, {PROBE_DAG, "ingest_flight_delay"}, time.monotonic() + DAGS_TIMEOUT_S)
        result.dags_s = time.monotonic() - launched
        samples = []
        for _ in range(5):
            samples.append(tree_pss_mb(proc.pid))
            time.sleep(1.0)
        result.pss_mb, result.processes = max(samples)
        result.idle_cpu_percent = tree_cpu_percent(proc.pid, IDLE_WINDOW_S)
        result.listening = listening_addresses(proc.pid)
        if latency_runs:
            api_request("PATCH", f"{base_url}/api/v2/dags/{PROBE_DAG}", {"is_paused": False}, token)
            result.first_run_s = _trigger_and_wait(base_url, token)[0]  # cold: first task processes
            for _ in range(latency_runs):
                elapsed, busy = _trigger_and_wait(base_url, token)
                result.latencies_s.append(elapsed)
                result.task_seconds.append(busy)
    except Exception as exc:  # reported in the table; the processes are stopped below either way
        result.error = f"{type(exc).__name__}: {exc}"
        tail = (home / "launch.log").read_text(errors="replace").splitlines()[-15:]
        print(f"[{label}] {result.error}\n" + "\n".join(tail), file=sys.stderr, flush=True)
    finally:
        stopping = time.monotonic()
        result.stopped_cleanly = stop_tree(proc, stop_signal, grace_s=30.0)
        result.stop_s = time.monotonic() - stopping
        log.close()
    return result


def _standalone(root: Path, dags: Path) -> Launch:
    home, port = root / "standalone", free_port()
    home.mkdir()
    venv_bin = str(Path(sys.executable).parent)  # standalone starts its components as `airflow` on PATH
    env = {
        **_clean_environ(),
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        **api_environ(port),
        # standalone binds the log servers to every interface on 8793/8794: free ports avoid clashes
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }
    argv = [str(Path(sys.executable).with_name("airflow")), "standalone"]
    # standalone stops its components on KeyboardInterrupt only; SIGTERM would orphan them
    return measure("standalone", argv, env, home, port, signal.SIGINT, latency_runs=0)


def _ours(root: Path, dags: Path, label: str, latency_runs: int, extra: dict[str, str]) -> Launch:
    home, port = root / label, free_port()
    home.mkdir()
    env = {
        **_clean_environ(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AERODROME_DATA_ROOT": str(root / "data"),
        **extra,
    }
    argv = [sys.executable, "-m", "aerodrome_airflow.up", "--port", str(port)]
    return measure(label, argv, env, home, port, signal.SIGTERM, latency_runs)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _note(launch: Launch, text: str) -> str:
    return f"{launch.label} FAILED: {launch.error}" if launch.error else text


def run(quick: bool = False) -> list[dict]:
    latency_runs = 1 if quick else 3
    become_subreaper()
    with tempfile.TemporaryDirectory(prefix="aerodrome-bench-airflow-") as tmp:
        root = Path(tmp)
        dags = _dags_folder(root)
        print("launch 1/3: airflow standalone (defaults)", flush=True)
        base = _standalone(root, dags)
        print(f"  {base}", flush=True)
        print("launch 2/3: make up profile", flush=True)
        ours = _ours(root, dags, "up", latency_runs, {})
        print(f"  {ours}", flush=True)
        print(f"launch 3/3: make up profile, scheduler_idle_sleep_time={DEFAULT_IDLE_SLEEP_S}", flush=True)
        slow = _ours(
            root, dags, "up-idle-1s", latency_runs,
            {"AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": DEFAULT_IDLE_SLEEP_S},
        )  # fmt: skip
        print(f"  {slow}", flush=True)

    exposed = [a for a in ours.listening if not is_loopback(a)]
    base_exposed = [a for a in base.listening if not is_loopback(a)]
    tuned, default = _median(ours.latencies_s), _median(slow.latencies_s)
    busy = _median(ours.task_seconds)
    return [
        {
            "name": "start-up to healthy API",
            "value": None if ours.healthy_s is None else round(ours.healthy_s, 1),
            "unit": "s",
            "baseline": None if base.healthy_s is None else round(base.healthy_s, 1),
            "goal": f"< {STARTUP_GOAL_S}",
            "note": _note(ours, _note(base, "baseline: airflow standalone, defaults")),
        },
        {
            "name": "start-up to every DAG visible",
            "value": None if ours.dags_s is None else round(ours.dags_s, 1),
            "unit": "s",
            "baseline": None if base.dags_s is None else round(base.dags_s, 1),
        },
        {
            "name": "total PSS, idle",
            "value": None if ours.pss_mb is None else round(ours.pss_mb),
            "unit": "MB",
            "baseline": None if base.pss_mb is None else round(base.pss_mb),
            "goal": f"< {PSS_GOAL_MB}",
            "note": f"{ours.processes} processes vs {base.processes}",
        },
        {
            "name": "CPU while idle",
            "value": None if ours.idle_cpu_percent is None else round(ours.idle_cpu_percent, 1),
            "unit": "% of a core",
            "baseline": None if base.idle_cpu_percent is None else round(base.idle_cpu_percent, 1),
            "note": f"whole tree over {IDLE_WINDOW_S:.0f}s once every DAG is visible; ours with "
            f"scheduler_idle_sleep_time {DEFAULT_IDLE_SLEEP_S}: {_round(slow.idle_cpu_percent, 1)}",
        },
        {
            "name": "listening sockets not on loopback",
            "value": len(exposed) if not ours.error else None,
            "unit": "sockets",
            "baseline": len(base_exposed) if not base.error else None,
            "goal": "< 1",
            "note": f"ours {', '.join(ours.listening) or '-'}; baseline {', '.join(base.listening) or '-'}",
        },
        {
            "name": f"trigger -> success, {PROBE_TASKS} chained tasks",
            "value": tuned,
            "unit": "s",
            "baseline": default,
            "note": _note(
                slow,
                f"median of {latency_runs}; baseline = same profile, scheduler_idle_sleep_time "
                f"{DEFAULT_IDLE_SLEEP_S} s (Airflow default); tasks' own run time {busy} s",
            ),
        },
        {
            "name": "first run after start-up (cold workers)",
            "value": None if ours.first_run_s is None else round(ours.first_run_s, 2),
            "unit": "s",
            "baseline": None if slow.first_run_s is None else round(slow.first_run_s, 2),
            "note": f"{PROBE_TASKS} chained tasks; not counted in the medians",
        },
        {
            "name": "scheduling latency per task",
            "value": None if tuned is None else round(tuned / PROBE_TASKS, 2),
            "unit": "s",
            "baseline": None if default is None else round(default / PROBE_TASKS, 2),
            "note": "trigger -> success / number of tasks",
        },
        {
            "name": "stop (SIGTERM / Ctrl-C) to all exited",
            "value": None if ours.stop_s is None else round(ours.stop_s, 1),
            "unit": "s",
            "baseline": None if base.stop_s is None else round(base.stop_s, 1),
            "note": f"clean exit: ours {ours.stopped_cleanly}, baseline {base.stopped_cleanly}",
        },
    ]
