"""Load on the model gateway from a process of its own: `python -m aerodrome_airflow.loadgen`.

`concurrency` asyncio workers (`httpx.AsyncClient`, keep-alive) send 1-row predictions in a loop for
`seconds`, each request with its own id and routing key; every answer that is not HTTP 200 with one
prediction, and every transport error, counts as failed. Prints a `ready` line once sending starts and
writes the result (requests, failures with a sample of their messages, requests per second, latency
p50/p95/p99/max, the answers per alias and model version) as JSON to `--out`. Dev tooling for the
services tests and `bench/bench_gateway_load.py`; nothing in production imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TOKEN_ENV = "AERODROME_GATEWAY_TOKEN"
ERROR_SAMPLE = 10


@dataclass
class LoadResult:
    seconds: float
    concurrency: int
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    served_by: Counter = field(default_factory=Counter)  # "<alias> v<version>" -> answers
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def fail(self, message: str) -> None:
        self.failed += 1
        if len(self.errors) < ERROR_SAMPLE:
            self.errors.append(message[:300])

    def summary(self) -> dict[str, Any]:
        import numpy as np

        spent = np.asarray(self.latencies_ms or [0.0])
        doc = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        return {
            **doc,
            "served_by": dict(self.served_by),
            "requests_per_s": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
            **{f"p{q}_ms": round(float(np.percentile(spent, q)), 2) for q in (50, 95, 99)},
            "max_ms": round(float(spent.max()), 2),
        }


async def generate_load(
    url: str, token: str, usecase: str, rows: list[dict[str, Any]], seconds: float, concurrency: int = 8
) -> LoadResult:
    """Send `rows` round-robin as 1-row predictions from `concurrency` workers for `seconds`."""
    import httpx

    result = LoadResult(seconds=seconds, concurrency=concurrency)
    endpoint = f"{url.rstrip('/')}/v1/{usecase}/predict"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient, n: int) -> None:
        i = n
        while time.monotonic() < deadline:
            request_id = f"load-{n}-{i}"
            body = {"rows": [rows[i % len(rows)]], "request_id": request_id, "routing_key": request_id}
            began = time.perf_counter()
            try:
                answer = await client.post(endpoint, json=body)
            except httpx.HTTPError as exc:
                result.fail(f"{type(exc).__name__}: {exc}")
            else:
                result.latencies_ms.append((time.perf_counter() - began) * 1000)
                doc = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
                if answer.status_code != 200 or len(doc.get("predictions", [])) != 1:
                    result.fail(f"HTTP {answer.status_code}: {answer.text[:200]}")
                else:
                    result.served_by[f"{doc['alias']} v{doc['model_version']}"] += 1
            result.sent += 1
            i += concurrency

    began = time.monotonic()
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30.0) as client:
        print("ready", flush=True)
        await asyncio.gather(*(worker(client, n) for n in range(concurrency)))
    result.seconds = round(time.monotonic() - began, 2)
    return result


def load_during(
    url: str,
    token: str,
    usecase: str,
    rows: list[dict[str, Any]],
    seconds: float,
    actions: list[tuple[float, str, Callable[[], Any]]],
    workdir: Path,
    concurrency: int = 8,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Load from a second process for `seconds`; meanwhile run each `(at_s, name, action)` at `at_s`.

    Returns the load's summary and what each action returned (with when it ran and how long it took).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    rows_file, out = workdir / "load-rows.json", workdir / "load-result.json"
    rows_file.write_text(json.dumps(rows))
    out.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "aerodrome_airflow.loadgen", "--url", url, "--usecase", usecase]
    argv += ["--rows", str(rows_file), "--seconds", str(seconds), "--concurrency", str(concurrency), "--out", str(out)]
    proc = subprocess.Popen(
        argv, env={**os.environ, TOKEN_ENV: token}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        if proc.stdout is None or proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the load generator did not start: {proc.communicate(timeout=30)[1][-2000:]}")
        began, done = time.monotonic(), []
        for at_s, name, action in sorted(actions, key=lambda a: a[0]):
            time.sleep(max(0.0, began + at_s - time.monotonic()))
            start = time.monotonic()
            answer = action()
            done.append({"action": name, "at_s": round(start - began, 2), "took_s": round(time.monotonic() - start, 2)})
            done[-1]["answer"] = answer
        _, err = proc.communicate(timeout=seconds + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"the load generator failed (exit {proc.returncode}): {err[-2000:]}")
    return json.loads(out.read_text()), done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the gateway, e.g. http://127.0.0.1:8090")
    parser.add_argument("--usecase", required=True)
    parser.add_argument("--rows", type=Path, required=True, help="JSON list of raw request rows")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True, help="where the JSON result goes")
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise SystemExit(f"set {TOKEN_ENV} to the gateway's serving token")
    rows = json.loads(args.rows.read_text())
    if not isinstance(rows, list) or not rows:
        raise SystemExit(f"{args.rows}: expected a non-empty JSON list of request rows")
    result = asyncio.run(generate_load(args.url, token, args.usecase, rows, args.seconds, args.concurrency))
    args.out.write_text(json.dumps(result.summary(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
