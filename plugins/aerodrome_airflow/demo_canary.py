"""The demo's second half: a gateway serving the champion, replayed traffic, and the canary of a challenger.

`make demo` trains a first model on the early part of the window (it becomes `@champion`: nothing to
canary against), then a second on the whole window; if the promotion gates pass it becomes
`@challenger`, and the real canary DAG steps its traffic share through a real gateway process while
the replayer sends the last days' flights (and their outcomes) as clients would. The canary's analysis
windows are shortened for the demo (`--canary-seconds`, the spec says 30 minutes); everything else is
the spec's policy. The verdict of every step is printed and kept in the Airflow UI (the run's logs).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml


def demo_usecases(source: Path, target: Path, usecase: str, window_s: float) -> Path:
    """A copy of the use-cases folder (with their own modules) where `usecase`'s canary watches `window_s` per
    step (a demo cannot wait 30 min) and judges outcomes from 30 labelled predictions per model."""
    raw = yaml.safe_load((source / usecase / "usecase.yaml").read_text())
    raw.setdefault("canary", {}).update(analysis_minutes=window_s / 60, min_requests=10, min_labelled=30)
    skip = shutil.ignore_patterns("__pycache__")
    # every use case: each has its own DAG file in dags/usecases/, which must still find its spec here
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=skip)
    (target / usecase / "usecase.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return target


class ServedGateway:
    """`python -m aerodrome.serving` on a free loopback port, with tokens the DAGs find in the environment."""

    def __init__(self, usecase: str, log_file: Path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        os.environ["AERODROME_GATEWAY_URL"] = f"http://127.0.0.1:{self.port}"
        os.environ.setdefault("AERODROME_GATEWAY_TOKEN", secrets.token_urlsafe(16))
        os.environ.setdefault("AERODROME_GATEWAY_ADMIN_TOKEN", secrets.token_urlsafe(16))
        self.usecase, self.log_file = usecase, log_file
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ServedGateway:
        from aerodrome.serving.client import GatewayClient

        command = [sys.executable, "-m", "aerodrome.serving", "--port", str(self.port), "--usecase", self.usecase]
        self.process = subprocess.Popen(command, stdout=self.log_file.open("ab"), stderr=subprocess.STDOUT)
        self.client = GatewayClient(
            os.environ["AERODROME_GATEWAY_URL"],
            os.environ["AERODROME_GATEWAY_TOKEN"],
            os.environ["AERODROME_GATEWAY_ADMIN_TOKEN"],
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the gateway exited ({self.process.returncode}); see {self.log_file}")
            try:
                self.client.health()
                return self
            except Exception:
                time.sleep(0.5)
        raise SystemExit(f"the gateway did not answer within 120 s; see {self.log_file}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


LABEL_EVERY = 25  # outcomes follow their predictions in small batches, so each canary window has some


class Replayer(threading.Thread):
    """Sends `days` of flights through the gateway, round after round, posting their outcomes, until stopped."""

    def __init__(self, client: Any, spec: Any, storage: Any, days: list[date]) -> None:
        from aerodrome.serving.replay import day_traffic

        super().__init__(name="demo-replayer", daemon=True)
        self.client, self.usecase, self.stop = client, spec.name, threading.Event()
        traffic = [day_traffic(spec, storage, d) for d in days]
        self.rows = [r for rows, _ in traffic for r in rows]
        self.labels = [v for _, labels in traffic for v in labels]
        self.sent = self.failed = 0

    def run(self) -> None:
        from aerodrome.serving.replay import replay

        turn = 0
        while not self.stop.is_set():
            stats = replay(
                self.client,
                self.usecase,
                self.rows,
                self.labels,
                prefix=f"demo-{turn}",
                stop=self.stop,
                pause_s=0.01,
                label_every=LABEL_EVERY,
            )
            self.sent, self.failed, turn = self.sent + stats.sent, self.failed + stats.failed, turn + 1


def canary_of_challenger(spec: Any, storage: Any, days: list[date], load_dag: Any, say: Any) -> list[str]:
    """Run `canary_<uc>` on the current @challenger with replayed traffic; the lines to print."""
    from aerodrome.registry.aliases import CHALLENGER, CHAMPION, alias_version, registry_client
    from aerodrome.settings import Settings

    from aerodrome_airflow.canary import verdict_key

    client = registry_client(Settings.from_env().tracking_uri)
    version = alias_version(client, spec.name, CHALLENGER)
    log_file = Path(storage.root) / "demo-gateway.log"
    with ServedGateway(spec.name, log_file) as gateway:
        replayer = Replayer(gateway.client, spec, storage, days[-3:])
        say(
            f"gateway on 127.0.0.1:{gateway.port} ({gateway.client.health()['usecases'][spec.name]['models']}); "
            f"replaying {len(replayer.rows):,} flights of {days[-3]} .. {days[-1]} with their outcomes"
        )
        replayer.start()
        steps = " → ".join(f"{p:g} %" for p in spec.canary.steps)
        say(f"canary of v{version} (canary_{spec.name}): {steps}, {spec.canary.analysis_minutes * 60:.0f} s each ...")
        t0 = time.perf_counter()
        when = datetime(days[-1].year, days[-1].month, days[-1].day, tzinfo=UTC) + timedelta(days=2)
        try:
            run = load_dag(f"canary_{spec.name}").test(logical_date=when, run_conf={"version": version})
        finally:
            replayer.stop.set()
            replayer.join(timeout=30)
        tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        say(f"canary {run.state} ({time.perf_counter() - t0:.1f}s): {tasks}; replayer sent {replayer.sent:,}")
    lines = []
    for percent in spec.canary.steps:
        key = verdict_key(spec.name, version, percent)
        if storage.exists(key):
            step = json.loads(storage.read_bytes(key))
            lines.append(f"step {percent:g} %: {'passed' if step['passed'] else 'FAILED: ' + step['reasons']}")
    champion = alias_version(client, spec.name, CHAMPION)
    outcome = "crowned" if champion == version else "rolled back"
    return [f"v{version} {outcome}; @champion is v{champion}", *lines]
