"""The model gateway against `mlflow models serve`: 1-row latency, throughput, and the canary's overhead.

Setup (not timed): validated flight days 2013-01-01..02-14 with their features in a temporary data
root, one XGBoost model trained and promoted to `@champion` (the real gates), the online store
materialized. Then, in the same run, same client (httpx, keep-alive), same model:
  gateway    `python -m aerodrome.serving` with everything on: request features by the builder, Feast
             online lookup, routing (challenger weight 0 %), prediction log flushed every second;
             a request carries the flight's raw schedule columns;
  mlflow     `mlflow models serve -m models:/flight_delay@champion --env-manager local`; a request
             carries the full feature row already (MLflow looks up nothing);
  in-process the gateway's predict without HTTP, and the bare model call (`predictor.predict` on the
             assembled 1-row frame): the difference is the price of features + routing + logging.
Latency: sequential 1-row requests (after a warm-up), p50 / p99. Throughput: 4 client threads for a
few seconds, requests per second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np

from bench.proc import free_port, stop_tree

USECASE = "flight_delay"
DAY = date(2013, 2, 14)


def _prepare(root: Path):
    from aerodrome.features import compute_features_range
    from aerodrome.features.builders import builder_for
    from aerodrome.features.online import materialize
    from aerodrome.features.repo import apply_definitions
    from aerodrome.registry.promote import apply_decision, judge_candidate
    from aerodrome.settings import PROJECT_ROOT, Settings
    from aerodrome.storage import LocalStorage
    from aerodrome.train import train_model
    from aerodrome.usecase import load_usecase

    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from conftest import publish_flights

    spec = load_usecase(PROJECT_ROOT / "include" / "usecases" / USECASE)
    storage = LocalStorage(root)
    publish_flights(storage, spec, date(2013, 1, 1), DAY)
    compute_features_range(spec, storage, date(2013, 1, 1), DAY)
    settings = Settings(
        data_root=str(root),
        usecases_dir=PROJECT_ROOT / "include" / "usecases",
        feature_repo=str(root / "repo"),
        mlflow_tracking_uri=f"sqlite:///{root}/mlflow.db",
    )
    clock = builder_for(spec).clock
    start, end = clock.start_of(date(2013, 1, 1)).to_pydatetime(), clock.start_of(date(2013, 2, 15)).to_pydatetime()
    version = train_model(spec, settings, storage, start, end).version
    report = judge_candidate(spec, settings, storage, version)
    apply_decision(spec, settings, storage, report, "bench")
    apply_definitions(spec, settings)
    materialize(spec, settings, end)
    return spec, settings, storage


def _env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "AERODROME_DATA_ROOT": settings.data_root,
        "AERODROME_FEATURE_REPO": str(settings.feature_repo),
        "AERODROME_USECASES_DIR": str(settings.usecases_dir),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "AERODROME_SIGNING_TRUSTED_KEYS": f"{settings.data_root}/signing/ed25519.pub",  # a gateway elsewhere
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "AERODROME_GATEWAY_TOKEN": "bench",
        "AERODROME_GATEWAY_ADMIN_TOKEN": "bench-admin",
        # `mlflow models serve` starts `uvicorn` by name: the environment's bin folder must be on PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _wait(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:4]} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def _latency(send, bodies: list, warmup: int = 50) -> tuple[float, float]:
    for body in bodies[:warmup]:
        send(body)
    spent = []
    for body in bodies:
        began = time.perf_counter()
        send(body)
        spent.append((time.perf_counter() - began) * 1000)
    return float(np.percentile(spent, 50)), float(np.percentile(spent, 99))


def _throughput(make_send, bodies: list, threads: int = 4, seconds: float = 4.0) -> float:
    done = [0] * threads
    stop = time.monotonic() + seconds

    def worker(n: int) -> None:
        send, i = make_send(), n
        while time.monotonic() < stop:
            send(bodies[i % len(bodies)])
            done[n] += 1
            i += threads

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    began = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done) / (time.perf_counter() - began)


def run(quick: bool = False):
    import httpx
    import pandas as pd
    from aerodrome.serving.gateway import Gateway
    from aerodrome.serving.inputs import entity_rows, model_frame, request_events
    from aerodrome.serving.replay import day_traffic

    requests = 200 if quick else 500
    with tempfile.TemporaryDirectory(prefix="aerodrome-bench-gateway-") as tmp:
        root = Path(tmp) / "data"
        spec, settings, storage = _prepare(root)
        rows, _ = day_traffic(spec, storage, DAY)
        rows = (rows * (requests // len(rows) + 1))[:requests]

        # in-process: the gateway's predict, and the bare model on the same assembled frame
        gateway = Gateway([spec], settings, storage).start()
        service = gateway.services[USECASE]
        from aerodrome.features.online import online_features

        frames = []
        for row in rows[:100]:
            events = request_events(spec, [row])
            looked_up = online_features(spec, settings, entity_rows(spec, events))
            frames.append(pd.DataFrame(model_frame(events, looked_up, service.features)))
        champion = service.models["champion"].predictor
        bare = _latency(lambda f: champion.predict(f), frames * (requests // 100), warmup=20)
        inproc = _latency(lambda r: service.predict([r]), rows, warmup=20)
        gateway.close()
        columns = list(champion.encoding.columns)
        split = [json.loads(f[columns].iloc[[0]].to_json(orient="split", index=False)) for f in frames]
        mlflow_bodies = [{"dataframe_split": {"columns": b["columns"], "data": b["data"]}} for b in split]
        mlflow_bodies = (mlflow_bodies * (requests // 100 + 1))[:requests]

        env = _env(settings)
        gw_port, ml_port = free_port(), free_port()
        gw = subprocess.Popen(
            [sys.executable, "-m", "aerodrome.serving", "--port", str(gw_port), "--usecase", USECASE],
            env={**env, "AERODROME_DATA_ROOT": str(Path(tmp) / "served")}
            | {"AERODROME_FEATURE_REPO": str(settings.feature_repo)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
        started = time.perf_counter()
        ml = subprocess.Popen(
            [
                mlflow_bin,
                "models",
                "serve",
                "-m",
                f"models:/{USECASE}@champion",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(ml_port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait(f"http://127.0.0.1:{gw_port}/health", gw)
            _wait(f"http://127.0.0.1:{ml_port}/ping", ml)
            mlflow_up = time.perf_counter() - started
            auth = {"Authorization": "Bearer bench"}

            def gw_sender():
                client = httpx.Client(base_url=f"http://127.0.0.1:{gw_port}", headers=auth, timeout=30)
                return lambda row: client.post(f"/v1/{USECASE}/predict", json={"rows": [row]}).raise_for_status()

            def ml_sender():
                client = httpx.Client(base_url=f"http://127.0.0.1:{ml_port}", timeout=30)
                return lambda body: client.post("/invocations", json=body).raise_for_status()

            gw_latency = _latency(gw_sender(), rows)
            ml_latency = _latency(ml_sender(), mlflow_bodies)
            gw_rps = _throughput(gw_sender, rows, seconds=3 if quick else 5)
            ml_rps = _throughput(ml_sender, mlflow_bodies, seconds=3 if quick else 5)
        finally:
            stop_tree(gw)
            stop_tree(ml)

    note = f"{requests} sequential 1-row requests after a warm-up, one httpx client, same model"
    return [
        {
            "name": "gateway p50 (features + routing + log on)",
            "value": round(gw_latency[0], 2),
            "unit": "ms",
            "baseline": round(ml_latency[0], 2),
            "note": f"baseline: mlflow models serve p50; {note}",
        },
        {"name": "gateway p99", "value": round(gw_latency[1], 2), "unit": "ms", "baseline": round(ml_latency[1], 2)},
        {
            "name": "gateway p99 / mlflow p99",
            "value": round(gw_latency[1] / ml_latency[1], 2),
            "unit": "x",
            "goal": "<= 0.5",
            "note": "at most half of MLflow's",
        },
        {
            "name": "gateway throughput (4 clients)",
            "value": round(gw_rps, 1),
            "unit": "req/s",
            "baseline": round(ml_rps, 1),
            "note": "baseline: mlflow models serve, same clients",
        },
        {
            "name": "gateway throughput / mlflow throughput",
            "value": round(gw_rps / ml_rps, 2),
            "unit": "x",
            "goal": ">= 2",
            "note": "at least twice MLflow's",
        },
        {
            "name": "in-process: gateway predict p99 (no HTTP)",
            "value": round(inproc[1], 2),
            "unit": "ms",
            "baseline": round(bare[1], 2),
            "note": f"baseline: the bare model call p99 (p50 {bare[0]:.2f} ms); gateway p50 {inproc[0]:.2f} ms",
        },
        {
            "name": "canary overhead: features + routing + logging (p50)",
            "value": round(inproc[0] - bare[0], 2),
            "unit": "ms",
            "note": "in-process gateway predict p50 minus the bare model call p50",
        },
        {"name": "mlflow models serve: start to first answer", "value": round(mlflow_up, 1), "unit": "s"},
    ]
