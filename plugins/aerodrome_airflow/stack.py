"""The embedded Airflow as users run it (`make up`), driven through the official REST client.

`EmbeddedStack` starts `python -m aerodrome_airflow.up` on a free loopback port with its own
AIRFLOW_HOME, data root and use-case folder, logs in through SimpleAuthManager and talks to it with
`apache-airflow-client`. Tests and benchmarks use it to check what the real scheduler does (several
asset events per run, partitions, restarts), which `dag.test()` hides. Dev tooling: nothing in a
task or a production image imports it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from aerodrome_airflow.embedded import API_HOST
from aerodrome_airflow.up import ADMIN_USER, access_token, descendants, generated_password, parent_pid

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((API_HOST, 0))
        return sock.getsockname()[1]


class EmbeddedStack:
    """`make up` in a child process on `port`, with `env` on top of the current environment."""

    def __init__(self, home: Path, env: dict[str, str], port: int | None = None, gateway_port: int = 0) -> None:
        self.home = Path(home)
        self.port = port or free_port()
        self.gateway_port = gateway_port  # 0: no gateway
        self.base_url = f"http://{API_HOST}:{self.port}"
        self.env = {**os.environ, **env, "AIRFLOW_HOME": str(self.home)}
        self.proc: subprocess.Popen | None = None
        self.output = self.home / "up-supervisor.log"
        self._api = None

    def start(self, timeout_s: float = 240.0) -> EmbeddedStack:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.output, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "aerodrome_airflow.up", "--port", str(self.port)),
                *("--timeout", str(timeout_s), "--gateway-port", str(self.gateway_port)),
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_for(lambda: "Airflow UI" in self.supervisor_output(), timeout_s, "the stack to be healthy")
        return self

    def supervisor_output(self) -> str:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"`aerodrome up` exited with {self.proc.returncode}:\n{self.tail()}")
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def tail(self, lines: int = 40) -> str:
        text = self.output.read_text(errors="replace") if self.output.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the official REST client --------------------------------------------------------------
    @property
    def api(self):
        import airflow_client.client as ac

        if self._api is None:
            password = generated_password(self.home, ADMIN_USER)
            token = access_token(self.base_url, ADMIN_USER, password or "admin")
            self._api = ac.ApiClient(ac.Configuration(host=self.base_url, access_token=token))
        return self._api

    def unpause(self, dag_ids: Iterable[str]) -> None:
        import airflow_client.client as ac
        from airflow_client.client.api.dag_api import DAGApi

        self.wait_for(lambda: set(dag_ids) <= set(self.dag_ids()), 120, f"DAGs {sorted(dag_ids)} to be parsed")
        for dag_id in dag_ids:
            DAGApi(self.api).patch_dag(dag_id, ac.DAGPatchBody(is_paused=False))

    def dag_ids(self) -> list[str]:
        from airflow_client.client.api.dag_api import DAGApi

        return [d.dag_id for d in DAGApi(self.api).get_dags(limit=1000).dags]

    def trigger(self, dag_id: str, *, partition_key: str | None = None, conf: dict | None = None):
        import airflow_client.client as ac
        from airflow_client.client.api.dag_run_api import DagRunApi

        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if partition_key:
            body["partition_key"] = partition_key
        return DagRunApi(self.api).trigger_dag_run(dag_id, ac.TriggerDAGRunPostBody(**body))

    def runs(self, dag_id: str) -> list:
        from airflow_client.client.api.dag_run_api import DagRunApi

        found, cursor = [], ""
        while True:
            page = DagRunApi(self.api).get_dag_runs(dag_id, limit=100, cursor=cursor)
            found += page.dag_runs
            if not page.dag_runs or not page.next_cursor:
                return found
            cursor = page.next_cursor

    def task_instances(self, dag_id: str, run_id: str) -> list:
        from airflow_client.client.api.task_instance_api import TaskInstanceApi

        return TaskInstanceApi(self.api).get_task_instances(dag_id, run_id).task_instances

    def asset_events(self, asset_name: str) -> list:
        from airflow_client.client.api.asset_api import AssetApi

        assets = AssetApi(self.api).get_assets(name_pattern=asset_name).assets
        asset = next((a for a in assets if a.name == asset_name), None)
        if asset is None:
            return []
        found: list = []
        while True:
            page = self._events_page(asset.id, len(found))
            found += page.asset_events
            if not page.asset_events or len(found) >= page.total_entries:
                return found

    def _events_page(self, asset_id: int, offset: int, patience_s: float = 60.0):
        """One page of an asset's events. Airflow 3.3.2's endpoint answers 500 while a run an event created
        is still queued (its start_date is None, which the response model refuses): wait for it to start."""
        from airflow_client.client.api.asset_api import AssetApi
        from airflow_client.client.exceptions import ServiceException

        deadline = time.monotonic() + patience_s
        while True:
            try:
                return AssetApi(self.api).get_asset_events(asset_id=asset_id, limit=100, offset=offset)
            except ServiceException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    # -- processes ----------------------------------------------------------------------------
    def component_pid(self, name: str) -> int | None:
        """The pid of one component (`scheduler`, `api-server`, ...) under the supervisor."""
        if self.proc is None:
            return None
        for pid in descendants(self.proc.pid):
            if parent_pid(pid) != self.proc.pid:  # components are the supervisor's own children
                continue
            try:
                text = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            # `.../python .../airflow scheduler ...`, or its own title `airflow scheduler -- ...`
            if re.search(rf"(^|/)airflow ({re.escape(name)}|{re.escape(name.replace('-', '_'))})( |$)", text):
                return pid
        return None

    def wait_for(self, check: Callable[[], T], timeout_s: float, what: str, every_s: float = 1.0) -> T:
        deadline = time.monotonic() + timeout_s
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s:.0f}s for {what}; supervisor said:\n{self.tail()}")
            time.sleep(every_s)
