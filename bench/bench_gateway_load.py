"""The gateway under load from a second process while a canary step and a model reload happen.

Setup (not timed): `bench_gateway`'s data root (validated flight days 2013-01-01..02-14 with features,
an XGBoost `@champion` through the real gates, the online store materialized) plus a second version
(fewer trees, the window's last 30 days) as `@challenger`. The gateway runs as its own process;
`aerodrome_airflow.loadgen` sends 1-row predictions from another process (8 asyncio workers, keep-alive)
for `AERODROME_LOAD_SECONDS` (60 s; 20 with --quick). A quarter in, the challenger's share goes
0 -> 25 % (a canary step, through the admin route the canary DAG uses); at half time the gateway
reloads its models from the registry (`force`: both versions are fetched and verified again) while
answering. Reported: failed requests (goal 0), p50/p99, requests per second, and what served.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from bench.bench_gateway import DAY, USECASE, _env, _prepare, _wait
from bench.proc import free_port, stop_tree


def _challenger(spec, settings, storage) -> str:
    from aerodrome.features.builders import builder_for
    from aerodrome.registry.aliases import AliasMove, move_alias, registry_client
    from aerodrome.train import train_model

    clock = builder_for(spec).clock
    start, end = clock.start_of(date(2013, 1, 16)).to_pydatetime(), clock.start_of(date(2013, 2, 15)).to_pydatetime()
    version = train_model(spec, settings, storage, start, end, params={"n_estimators": 200}).version
    move = AliasMove(USECASE, "challenger", str(version), None, "bench_gateway_load", "load benchmark")
    move_alias(registry_client(settings.tracking_uri), storage, move)
    return str(version)


def run(quick: bool = False):
    from aerodrome.serving.client import GatewayClient
    from aerodrome.serving.replay import day_traffic
    from aerodrome_airflow.loadgen import load_during

    seconds = float(os.environ.get("AERODROME_LOAD_SECONDS") or (20 if quick else 60))
    with tempfile.TemporaryDirectory(prefix="aerodrome-bench-load-") as tmp:
        root = Path(tmp) / "data"
        spec, settings, storage = _prepare(root)
        challenger = _challenger(spec, settings, storage)
        rows, _ = day_traffic(spec, storage, DAY)
        env, port = _env(settings), free_port()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "aerodrome.serving", "--port", str(port), "--usecase", USECASE],
            env={**env, "AERODROME_DATA_ROOT": str(Path(tmp) / "served")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        admin = GatewayClient(url, env["AERODROME_GATEWAY_TOKEN"], env["AERODROME_GATEWAY_ADMIN_TOKEN"], timeout_s=120)
        try:
            _wait(f"{url}/health", gateway)
            actions = [
                (seconds / 4, "canary step 0 -> 25 %", lambda: admin.set_traffic(USECASE, 25)["challenger_percent"]),
                (seconds / 2, "model reload", lambda: admin.reload(USECASE, force=True)["models"]),
            ]
            load, done = load_during(
                url, env["AERODROME_GATEWAY_TOKEN"], USECASE, rows, seconds, actions, Path(tmp) / "load"
            )
        finally:
            stop_tree(gateway)
    print(json.dumps({"load": load, "actions": done}, indent=2, default=str))
    served = ", ".join(f"{k} {v}" for k, v in sorted(load["served_by"].items()))
    note = f"{seconds:.0f} s, {load['concurrency']} async workers in a second process; {load['sent']} requests"
    reload_s = next(a["took_s"] for a in done if a["action"] == "model reload")
    return [
        {
            "name": "failed requests under load (canary step + reload)",
            "value": load["failed"],
            "goal": "<= 0",
            "note": note,
        },
        {"name": "p99 under load", "value": load["p99_ms"], "unit": "ms", "note": f"p50 {load['p50_ms']} ms"},
        {"name": "throughput under load", "value": load["requests_per_s"], "unit": "req/s", "note": served},
        {
            "name": "model reload while serving",
            "value": reload_s,
            "unit": "s",
            "note": f"champion and challenger v{challenger} fetched and verified again",
        },
    ]
