"""Orchestration overhead of the Kubernetes training path on the local cluster (`make bench-k8s`).

The payload is `python -m aerodrome.train.preflight --usecase flight_delay` (about a second of real
trainer-side work), run by the project's own operators from one DAG through `dag.test()`, in order:
  local         `LocalTrainingOperator` (subprocess): the baseline;
  pod_sync      `TrainingPodOperator`, deferrable=False (the worker polls the pod);
  pod_deferred  `TrainingPodOperator`, deferrable=True, the default (the trigger runs in line, as
                `dag.test()` does; a real triggerer adds its own poll interval).
A Kubernetes watch in this process stamps when each pod's container is seen running and terminated;
the task's start and end come from its task instance. Per variant (median of the runs):
  start     task start -> container running (pod create, schedule, sandbox, container start);
  finish    container terminated -> task end (log fetch, pod delete, task bookkeeping);
  duration  the whole task; the local subprocess task is the baseline of the ratios, and "extra over
            local" is what the Kubernetes path adds to the same payload (the payload's bare wall time
            is printed in the note). A warm-up task first takes the one-off costs of a dag.test() run.
Needs the cluster (`make k8s-up`); without it the module reports one row saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aerodrome.settings import PROJECT_ROOT

K8S_DIR = PROJECT_ROOT / "scripts" / "k8s"
PAYLOAD = ["-m", "aerodrome.train.preflight", "--usecase", "flight_delay"]
VARIANTS = ("local", "pod_sync", "pod_deferred")
DAG_ID = "aerodrome_bench_k8s_overhead"
DAG_FILE = """
import json, sys
from datetime import datetime, timedelta, timezone
sys.path.insert(0, {k8s_dir!r})
from airflow.sdk import DAG, task
from aerodrome.usecase import Resources
from aerodrome_airflow.k8s import TrainingPodOperator
from aerodrome_airflow.training import LocalTrainingOperator
from kpo_local import host_mounts

PY, ARGS = {python!r}, {args!r}
paths = [p + (":ro" if ro else "") for p, ro in host_mounts({root!r}, PY, extra_rw=({data!r},))]
pod = dict(resources=Resources(cpu="1", memory="1Gi"), trainer_arguments=ARGS, module="aerodrome.train.preflight",
           image="docker.io/aerodrome/host-runtime:local", image_pull_policy="Never", namespace="aerodrome",
           python=PY, host_paths=paths, hostnetwork=True, retries=0)
with DAG({dag_id!r}, schedule=None, start_date=datetime(2025, 1, 1, tzinfo=timezone.utc), catchup=False) as dag:
    local = LocalTrainingOperator(task_id="local", arguments=ARGS, module="aerodrome.train.preflight", retries=0)
    sync = TrainingPodOperator(task_id="pod_sync", deferrable=False, **pod)
    deferred = TrainingPodOperator(task_id="pod_deferred", deferrable=True, **pod)
    @task
    def warm_up():  # the first task of a dag.test() run pays one-off costs: keep them out of the figures
        return "warm"

    warm_up() >> local >> sync >> deferred

if __name__ == "__main__":
    for i in range({runs}):
        run = dag.test(logical_date=datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(days=i))
        tis = {{ti.task_id: [ti.state, ti.start_date.timestamp(), ti.end_date.timestamp()]
               for ti in run.get_task_instances()}}
        print("BENCH-TIS " + json.dumps(tis), flush=True)
"""


class PodClock:
    """Watches the namespace's training pods; stamps (wall clock) container running and terminated."""

    def __init__(self, kubeconfig: str, namespace: str = "aerodrome") -> None:
        from kubernetes import client, config, watch

        config.load_kube_config(kubeconfig)
        self.api, self.watch, self.namespace = client.CoreV1Api(), watch.Watch(), namespace
        self.seen: dict[str, dict] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stream = self.watch.stream(
            self.api.list_namespaced_pod, self.namespace, label_selector="aerodrome.io/stage=train", timeout_seconds=0
        )
        with contextlib.suppress(Exception):  # the stream is cut when the benchmark stops the watch
            self._stamp(stream)

    def _stamp(self, stream) -> None:
        for event in stream:
            now, pod = time.time(), event["object"]
            entry = self.seen.setdefault(pod.metadata.name, {"task": (pod.metadata.labels or {}).get("task_id")})
            for status in (pod.status.container_statuses or []) if pod.status else []:
                if status.name != "base" or not status.state:
                    continue
                if status.state.running and "running" not in entry:
                    entry["running"] = now
                if status.state.terminated and "terminated" not in entry:
                    entry["terminated"] = now
                    entry.setdefault("running", now)  # ran and ended between two events

    def stop(self) -> None:
        self.watch.stop()
        self.api.api_client.close()  # ends the open stream

    def pod_within(self, task: str, start: float, end: float) -> dict | None:
        for entry in self.seen.values():
            if entry["task"] == task and "terminated" in entry and start <= entry["running"] <= end:
                return entry
        return None


def _bare_seconds(env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, *PAYLOAD], env=env, check=True, capture_output=True, timeout=120)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _environment(home: Path) -> dict[str, str]:
    sys.path.insert(0, str(K8S_DIR))
    from aerodrome_airflow.embedded import embedded_environ
    from kpo_local import connection_env

    data = home / "data"
    (data / "validated" / "flight_delay" / "date=2013-01-01").mkdir(parents=True)
    (data / "validated" / "flight_delay" / "date=2013-01-01" / "part-0.parquet").write_bytes(b"")  # preflight counts
    env = {**os.environ, **embedded_environ(home / "airflow")}
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        AERODROME_DATA_ROOT=str(data),
        AERODROME_USECASES_DIR=str(PROJECT_ROOT / "include" / "usecases"),
        AERODROME_CODE_VERSION="bench",
        **connection_env(),
    )
    return env


def run(quick: bool = False) -> list[dict]:
    sys.path.insert(0, str(K8S_DIR))
    from kpo_local import KUBECONFIG

    if not Path(KUBECONFIG).exists():
        return [{"name": "not run", "note": f"{KUBECONFIG} missing: `make bench-k8s` starts the local cluster"}]
    runs = 2 if quick else 5
    home = Path(tempfile.mkdtemp(prefix="aerodrome-bench-k8s-"))
    env = _environment(home)
    (home / "dags").mkdir()
    dag_file = home / "dags" / "bench_k8s_overhead.py"
    dag_file.write_text(
        DAG_FILE.format(
            k8s_dir=str(K8S_DIR),
            python=sys.executable,
            args=PAYLOAD[2:],
            root=str(PROJECT_ROOT),
            data=str(home),
            dag_id=DAG_ID,
            runs=runs,
        )
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    bare = _bare_seconds(env, runs)
    clock = PodClock(KUBECONFIG)
    try:
        done = subprocess.run(
            [sys.executable, str(dag_file)], env=env, capture_output=True, text=True, timeout=900, cwd=home
        )
        time.sleep(1)  # the last pod's events
    finally:
        clock.stop()
    out = done.stdout + done.stderr
    rounds = [json.loads(line[len("BENCH-TIS ") :]) for line in out.splitlines() if line.startswith("BENCH-TIS ")]
    if done.returncode != 0 or len(rounds) != runs:
        raise RuntimeError(f"dag.test failed (exit {done.returncode}): {out[-3000:]}")
    figures: dict[str, dict[str, list[float]]] = {v: {"start": [], "finish": [], "duration": []} for v in VARIANTS}
    for tis in rounds:
        for variant in VARIANTS:
            state, start, end = tis[variant]
            if state != "success":
                raise RuntimeError(f"{variant} ended {state}: {out[-3000:]}")
            figures[variant]["duration"].append(end - start)
            pod = clock.pod_within(variant, start, end) if variant != "local" else None
            if pod:
                figures[variant]["start"].append(pod["running"] - start)
                figures[variant]["finish"].append(end - pod["terminated"])
    median = {v: {k: statistics.median(x) if x else None for k, x in f.items()} for v, f in figures.items()}
    local = median["local"]["duration"]
    note = f"payload: preflight, {bare:.2f} s as a bare subprocess; {runs} runs, medians"
    rows = [{"name": "local subprocess: task duration", "value": local, "unit": "s", "note": note}]
    for variant, label in (("pod_sync", "pod, sync"), ("pod_deferred", "pod, deferrable")):
        m = median[variant]
        rows += [
            {"name": f"{label}: task start -> pod running", "value": m["start"], "unit": "s"},
            {"name": f"{label}: pod exit -> task success", "value": m["finish"], "unit": "s"},
            {"name": f"{label}: task duration", "value": m["duration"], "unit": "s", "baseline": local},
            {"name": f"{label}: extra over local", "value": m["duration"] - local, "unit": "s"},
        ]
    return rows
