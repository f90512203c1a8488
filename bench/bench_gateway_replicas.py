"""What replica sync costs the gateway (aerodrome.serving.replicas), and how fast an admin call spreads.

Setup (not timed): the data root of bench_gateway (flight days, one XGBoost `@champion`, the online
store). Then, on one local data root:
  throughput  three gateway processes, replica sync off, every 2 s (the manifests' default) and every
              0.2 s; 4 client threads each, in alternating rounds, requests per second (best round);
  poll        one idle sync round of a replica in-process (three control documents read, nothing new);
  spread      a fourth process, replica B (sync every 2 s): seconds from a traffic step answered by the
              2 s replica until B serves it; `GET /window` of the 2 s replica (the segments of the three
              replicas merged) vs the in-memory window of the process without sync;
  under load  two replicas (sync 2 s) with a `@challenger` (bench_gateway_load's), each loaded by its own
              load-generator process (as a Service would spread clients) for `AERODROME_LOAD_SECONDS`
              (60 s; 20 with --quick); a quarter in, a canary step 0 -> 25 % is sent to replica A, at
              half time a forced reload to replica B. Failed requests (goal 0), p99, whether both
              replicas end on the same share and versions, and whether A's merged window counts both.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_gateway import USECASE, _env, _prepare, _throughput, _wait
from bench.proc import free_port, stop_tree


def _gateway(env: dict[str, str], sync_seconds: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "aerodrome.serving", "--port", str(port), "--usecase", USECASE]
    process = subprocess.Popen(
        [*command, "--sync-seconds", str(sync_seconds)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return process, f"http://127.0.0.1:{port}"


def _window_ms(client, seconds: float, rounds: int = 20) -> float:
    spent = []
    for _ in range(rounds):
        began = time.perf_counter()
        client.get(f"/v1/{USECASE}/window", params={"seconds": seconds}).raise_for_status()
        spent.append((time.perf_counter() - began) * 1000)
    return float(np.median(spent))


def _under_load(spec, settings, storage, env: dict[str, str], rows: list, seconds: float, workdir: Path) -> dict:
    """Two replicas under load while a canary step reaches one and a forced reload the other."""
    import threading

    import httpx
    from aerodrome.serving.client import GatewayClient
    from aerodrome_airflow.loadgen import load_during

    from bench.bench_gateway_load import _challenger

    challenger = _challenger(spec, settings, storage)
    token, admin_token = env["AERODROME_GATEWAY_TOKEN"], env["AERODROME_GATEWAY_ADMIN_TOKEN"]
    replicas = [_gateway(env, 2.0) for _ in range(2)]
    try:
        for process, url in replicas:
            _wait(f"{url}/health", process)
        admins = [GatewayClient(url, token, admin_token, timeout_s=120) for _, url in replicas]
        for admin in admins:  # each loads the challenger at start; wait until both serve it
            while admin.health()["usecases"][USECASE]["models"].get("challenger") != challenger:
                time.sleep(0.5)
        actions = [
            [(seconds / 4, "canary step 0 -> 25 % (to replica A)", lambda: admins[0].set_traffic(USECASE, 25))],
            [(seconds / 2, "forced reload (to replica B)", lambda: admins[1].reload(USECASE, force=True)["models"])],
        ]
        results: list = [None, None]

        def load(i: int) -> None:
            url = replicas[i][1]
            results[i] = load_during(url, token, USECASE, rows, seconds, actions[i], workdir / f"load-{i}")

        threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
        began = time.time()  # the window counts from here: earlier phases shared this data root too
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if None in results:
            raise RuntimeError("a load generator failed (see its thread's traceback above)")
        time.sleep(3)  # one sync interval and a margin: the last segments are written
        states = [(a.health()["usecases"][USECASE]) for a in admins]
        with httpx.Client(base_url=replicas[0][1], headers={"Authorization": f"Bearer {token}"}) as client:
            window = client.get(f"/v1/{USECASE}/window", params={"seconds": time.time() - began}).json()
    finally:
        for process, _ in replicas:
            stop_tree(process)
    loads = [r[0] for r in results]
    return {
        "failed": sum(x["failed"] for x in loads),
        "sent": sum(x["sent"] for x in loads),
        "p99_ms": max(x["p99_ms"] for x in loads),
        "p50_ms": [x["p50_ms"] for x in loads],
        "requests_per_s": round(sum(x["requests_per_s"] for x in loads), 1),
        "agree": states[0] == states[1],
        "states": states,
        "windowed": sum(a["requests"] for a in window["aliases"].values()),
        "window_replicas": len(window["replicas"]),
        "actions": [r[1] for r in results],
    }


def run(quick: bool = False):
    import httpx
    from aerodrome.serving.gateway import Gateway
    from aerodrome.serving.replay import day_traffic

    from bench.bench_gateway import DAY

    seconds = 3.0 if quick else 6.0
    with tempfile.TemporaryDirectory(prefix="aerodrome-bench-replicas-") as tmp:
        spec, settings, storage = _prepare(Path(tmp) / "data")
        rows, _ = day_traffic(spec, storage, DAY)
        rows = rows[:500]
        env = _env(settings)

        # one idle sync round, in-process: what every replica pays each interval
        gateway = Gateway([spec], settings, storage, sync_seconds=3600).start()
        service = gateway.services[USECASE]
        began = time.perf_counter()
        for _ in range(200):
            service.follow()
            service.flush_window()
        poll_ms = (time.perf_counter() - began) / 200 * 1000
        gateway.close()

        auth = {"Authorization": "Bearer bench"}
        modes = {"off": 0.0, "2 s": 2.0, "0.2 s": 0.2}
        started = {name: _gateway(env, sync) for name, sync in modes.items()}
        replica_b = _gateway(env, 2.0)
        try:
            for process, url in [*started.values(), replica_b]:
                _wait(f"{url}/health", process)

            rps: dict[str, list[float]] = {name: [] for name in modes}
            for _ in range(2):
                for name, (_, url) in started.items():

                    def sender(url=url):
                        client = httpx.Client(base_url=url, headers=auth, timeout=30)
                        return lambda row: client.post(
                            f"/v1/{USECASE}/predict", json={"rows": [row]}
                        ).raise_for_status()

                    rps[name].append(_throughput(sender, rows, seconds=seconds))

            # spread: a traffic step sent to the 2 s replica, seen by replica B
            a = httpx.Client(base_url=started["2 s"][1], headers={"Authorization": "Bearer bench-admin"}, timeout=30)
            b = httpx.Client(base_url=replica_b[1], headers=auth, timeout=30)
            lags = []
            for percent in (10, 0, 20, 0, 30, 0):
                time.sleep(random.uniform(0, 2.0))  # any phase of B's poll, not just after it
                a.post(f"/admin/{USECASE}/traffic", json={"challenger_percent": percent}).raise_for_status()
                sent = time.perf_counter()
                while b.get(f"/v1/{USECASE}/models").json()["challenger_percent"] != percent:
                    time.sleep(0.01)
                lags.append(time.perf_counter() - sent)
            merged = _window_ms(httpx.Client(base_url=started["2 s"][1], headers=auth, timeout=30), 600)
            alone = _window_ms(httpx.Client(base_url=started["off"][1], headers=auth, timeout=30), 600)
        finally:
            for process, _ in [*started.values(), replica_b]:
                stop_tree(process)
        load_seconds = float(os.environ.get("AERODROME_LOAD_SECONDS") or (20 if quick else 60))
        loaded = _under_load(spec, settings, storage, env, rows, load_seconds, Path(tmp) / "load")
        print(loaded)

    best = {name: max(values) for name, values in rps.items()}
    note = f"4 clients, best of 2 alternating rounds of {seconds:g} s; the three gateways run side by side"
    return [
        {"name": "gateway throughput, replica sync off", "value": round(best["off"], 1), "unit": "req/s", "note": note},
        {
            "name": "gateway throughput, sync every 2 s",
            "value": round(best["2 s"], 1),
            "unit": "req/s",
            "baseline": round(best["off"], 1),
            "note": "the autoscaled manifests' interval",
        },
        {
            "name": "gateway throughput, sync every 0.2 s",
            "value": round(best["0.2 s"], 1),
            "unit": "req/s",
            "baseline": round(best["off"], 1),
        },
        {
            "name": "idle sync round (3 control reads, local data root)",
            "value": round(poll_ms, 3),
            "unit": "ms",
            "note": "in-process, per use case and interval",
        },
        {
            "name": "traffic step spread to another replica (sync 2 s)",
            "value": round(float(np.median(lags)), 2),
            "unit": "s",
            "goal": "<= 2.5",
            "note": f"median of {len(lags)}; max {max(lags):.2f} s",
        },
        {
            "name": "GET /window, every replica merged",
            "value": round(merged, 2),
            "unit": "ms",
            "baseline": round(alone, 2),
            "note": "3 replicas' segments after their throughput rounds; baseline: one process's in-memory window "
            "after its own; median of 20",
        },
        {
            "name": "2 replicas under load (canary step to A, reload to B): failed requests",
            "value": loaded["failed"],
            "goal": "<= 0",
            "note": f"{load_seconds:g} s, {loaded['sent']} requests, {loaded['requests_per_s']} req/s, two loaders",
        },
        {
            "name": "2 replicas under load: p99",
            "value": loaded["p99_ms"],
            "unit": "ms",
            "note": f"p50 {loaded['p50_ms']} ms",
        },
        {
            "name": "2 replicas end on the same share and versions",
            "value": int(loaded["agree"]),
            "goal": ">= 1",
            "note": str(loaded["states"][0]),
        },
        {
            "name": "requests in replica A's merged window / sent to both",
            "value": round(loaded["windowed"] / max(loaded["sent"], 1), 3),
            "goal": ">= 0.99",
            "note": f"{loaded['windowed']} of {loaded['sent']}, from {loaded['window_replicas']} replicas",
        },
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
