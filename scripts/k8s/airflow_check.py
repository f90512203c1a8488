"""End-to-end check of KubernetesPodOperator against the local cluster (scripts/k8s/up.sh first).

Writes a small DAG into a temporary dags folder with an embedded SQLite AIRFLOW_HOME under /tmp, runs
it with ``dag.test()`` and checks: the venv-python pod (host-runtime image, hostNetwork, hostPath) succeeds
and its log reaches the task log; a busybox pod exiting 42 fails its task with the exit code in the error;
a deferrable pod that takes its connection from AIRFLOW_CONN_KUBERNETES_DEFAULT succeeds; a pod with
``do_xcom_push=True`` (busybox sidecar set in the connection) hands its result to a downstream task; no pod
is left.

    .venv/bin/python scripts/k8s/airflow_check.py      # exit 0 when every check holds
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from kpo_local import KUBECONFIG, NAMESPACE, connection_env  # noqa: E402

DAG_ID = "aerodrome_k8s_check"
DAG_FILE = """
import json
import sys
sys.path.insert(0, {k8s_dir!r})
import pendulum
from airflow.sdk import DAG, task
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kpo_local import local_pod_kwargs, BUSYBOX_IMAGE, KUBECONFIG, NAMESPACE

PY = {python!r}
common = dict(namespace=NAMESPACE, image_pull_policy="Never", get_logs=True, on_finish_action="delete_pod",
              startup_timeout_seconds=120, startup_check_interval_seconds=1, labels={{"aerodrome-check": "1"}})
with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False) as dag:
    KubernetesPodOperator(
        task_id="venv_hello", name="venv-hello", labels={{"aerodrome-check": "1"}},
        cmds=[PY, "-c", "import sys, airflow; print('HELLO-FROM-POD', sys.version.split()[0], airflow.__version__)"],
        **local_pod_kwargs())
    KubernetesPodOperator(
        task_id="exit_42", name="exit-42", image=BUSYBOX_IMAGE, config_file=KUBECONFIG, in_cluster=False,
        cmds=["sh", "-c", "echo ABOUT-TO-EXIT-42; exit 42"], **common)
    KubernetesPodOperator(  # no config_file: kube_config_path comes from AIRFLOW_CONN_KUBERNETES_DEFAULT
        task_id="deferred_hello", name="deferred-hello", image=BUSYBOX_IMAGE, deferrable=True,
        poll_interval=1, cmds=["sh", "-c", "echo DEFERRED-HELLO"], **common)
    pushed = KubernetesPodOperator(  # xcom sidecar: busybox image from the connection extra
        task_id="xcom_push", name="xcom-push", do_xcom_push=True, labels={{"aerodrome-check": "1"}},
        cmds=[PY, "-c", "import json; json.dump({{'auc': 0.91}}, open('/airflow/xcom/return.json', 'w'))"],
        **local_pod_kwargs())

    @task
    def show(value):
        print("XCOM-VALUE " + json.dumps(value), flush=True)

    show(pushed.output)

if __name__ == "__main__":
    dr = dag.test()
    states = {{ti.task_id: str(ti.state) for ti in dr.get_task_instances()}}
    print("TASK-STATES " + json.dumps(states), flush=True)
    secs = {{ti.task_id: round(ti.duration or 0, 1) for ti in dr.get_task_instances()}}
    print("TASK-SECONDS " + json.dumps(secs), flush=True)
"""


def kubectl(*args: str) -> str:
    kubectl_bin = os.environ.get("K8S_BIN", "/var/cache/aerodrome-k8s/bin") + "/kubectl"
    return subprocess.run(
        [kubectl_bin, "--kubeconfig", KUBECONFIG, *args], check=True, text=True, capture_output=True, timeout=60
    ).stdout


def main() -> int:
    python = sys.executable
    home = Path(tempfile.mkdtemp(prefix="aerodrome-k8s-airflow-", dir="/tmp"))
    dags = home / "dags"
    dags.mkdir()
    dag_path = dags / "k8s_check_dag.py"
    dag_path.write_text(DAG_FILE.format(k8s_dir=str(HERE), python=python, dag_id=DAG_ID))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        **connection_env(),
    }
    airflow = str(Path(python).with_name("airflow"))
    t0 = time.monotonic()
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    t_db = time.monotonic() - t0
    t1 = time.monotonic()
    run = subprocess.run([python, str(dag_path)], env=env, cwd=str(dags), text=True, capture_output=True, timeout=600)
    t_run = time.monotonic() - t1
    out = run.stdout + run.stderr
    (home / "dag_test.log").write_text(out)
    states, secs = {}, {}
    for line in out.splitlines():
        if line.startswith("TASK-STATES "):
            states = json.loads(line[len("TASK-STATES ") :])
        if line.startswith("TASK-SECONDS "):
            secs = json.loads(line[len("TASK-SECONDS ") :])
    deadline = time.monotonic() + 45  # deleted pods may still be terminating for a moment
    while True:
        leftover = kubectl("get", "pods", "-n", NAMESPACE, "-l", "aerodrome-check=1", "-o", "name").split()
        if not leftover or time.monotonic() > deadline:
            break
        time.sleep(1)
    checks = {
        "venv_hello succeeded": states.get("venv_hello") == "success",
        "venv_hello pod log in task log": "HELLO-FROM-POD" in out,
        "exit_42 failed": states.get("exit_42") == "failed",
        "exit code 42 in the error": bool(re.search(r"returned a failure", out))
        and bool(re.search(r"""exit_code['"]?: 42\b""", out)),
        "exit_42 pod log in task log": "ABOUT-TO-EXIT-42" in out,
        "deferred_hello succeeded": states.get("deferred_hello") == "success",
        "xcom_push result reached a downstream task": '"auc": 0.91' in out and states.get("show") == "success",
        "no pod left": not leftover,
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(f"airflow db migrate {t_db:.1f}s, dag.test() {t_run:.1f}s; task states {states}; task seconds {secs}")
    print(f"log: {home}/dag_test.log")
    if leftover:
        print("left pods:", leftover)
    if all(checks.values()) and not os.environ.get("AERODROME_K8S_KEEP_HOME"):
        shutil.rmtree(home, ignore_errors=True)  # keep the home (and its log) only when a check failed
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
