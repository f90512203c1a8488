"""Gateway replicas sharing one data root act as one gateway (aerodrome.serving.replicas).

Two real gateway processes on loopback (`python -m aerodrome.serving --sync-seconds`) over the same data
root, MLflow registry (SQLite) and Feast online store as tests/test_gateway.py: an admin call sent to
one replica (traffic step, reload after an alias move, fault drill) is applied by the other within the
sync interval, and the canary window read from either counts both replicas' requests, with outcomes
posted to one joined to predictions the other served. Nothing is mocked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from aerodrome.registry.aliases import CHALLENGER, AliasMove, move_alias, registry_client
from aerodrome.serving.app import create_app
from aerodrome.serving.gateway import BUCKETS, Gateway, bucket
from aerodrome.serving.replicas import (
    SLOT_SECONDS,
    ControlDocument,
    SharedWindow,
    models_key,
    sync_seconds_from_env,
    traffic_key,
    window_prefix,
)
from aerodrome.serving.window import Served, TrafficWindow
from aerodrome.storage import LocalStorage
from conftest import ROOT
from test_gateway import (  # noqa: F401 (fixtures)
    ADMIN,
    DAY,
    FLIGHTS,
    TOKEN,
    UC,
    _free_port,
    auth,
    requests_of,
    s3_lake,
    served,
)

SYNC_SECONDS = 0.5
MARGIN_S = 3.0  # a busy 2-core machine: the poll's thread may wait for the GIL


def _start(settings, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "AERODROME_DATA_ROOT": settings.data_root,
        "AERODROME_FEATURE_REPO": settings.feature_repo,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "AERODROME_USECASES_DIR": str(ROOT / "include/usecases"),
        "AERODROME_GATEWAY_TOKEN": TOKEN,
        "AERODROME_GATEWAY_ADMIN_TOKEN": ADMIN,
        "AERODROME_GATEWAY_SYNC_SECONDS": str(SYNC_SECONDS),
    }
    command = [sys.executable, "-m", "aerodrome.serving", "--port", str(port), "--usecase", UC]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_ready(url: str, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 180
    while True:
        try:
            health = httpx.get(f"{url}/health", timeout=1).json()
            if health["usecases"][UC]["models"] == {"champion": "1", "challenger": "2"}:
                return health["replica"]
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()[-3000:]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def replicas(served):  # noqa: F811
    """Two gateway processes sharing the served data root: [(url, replica id, http client)] * 2."""
    settings, _ = served
    ports = [_free_port(), _free_port()]
    processes = [_start(settings, port) for port in ports]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        ids = [_wait_ready(url, process) for url, process in zip(urls, processes, strict=True)]
        assert ids[0] != ids[1]
        clients = [httpx.Client(base_url=url, timeout=30) for url in urls]
        yield list(zip(urls, ids, clients, strict=True))
        for client in clients:
            client.close()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def _models(client: httpx.Client) -> dict:
    answer = client.get(f"/v1/{UC}/models", headers=auth())
    assert answer.status_code == 200, answer.text
    return answer.json()


def _until(check, limit_s: float) -> float:
    """Seconds until `check()` holds (fails after `limit_s`)."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < limit_s, f"not within {limit_s} s"
        time.sleep(0.05)
    return time.monotonic() - began


def _admin(client: httpx.Client, method: str, path: str, **kwargs) -> dict:
    answer = client.request(method, path, headers=auth(ADMIN), **kwargs)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_window_of_either_replica_counts_both_and_joins_outcomes_across_them(replicas):
    (_, id_a, a), (_, id_b, b) = replicas
    _admin(a, "POST", f"/admin/{UC}/traffic", json={"challenger_percent": 0})
    _until(lambda: _models(b)["challenger_percent"] == 0, SYNC_SECONDS + MARGIN_S)
    rows = requests_of(DAY, 30)
    began = time.time()
    for i, row in enumerate(rows):
        client, rid = (a, f"a{i}") if i % 3 else (b, f"b{i}")  # 20 requests to A, 10 to B
        answer = client.post(f"/v1/{UC}/predict", json={"rows": [row], "request_id": rid}, headers=auth())
        assert answer.status_code == 200 and answer.json()["alias"] == "champion", answer.text
    # every outcome arrives at B, also those of the 20 predictions A served
    labels = [{"request_id": f"{'a' if i % 3 else 'b'}{i}", "row": 0, "label": float(i % 2)} for i in range(30)]
    assert b.post(f"/v1/{UC}/labels", json={"labels": labels}, headers=auth()).json()["accepted"] == 30

    def window(client: httpx.Client) -> dict:
        answer = client.get(f"/v1/{UC}/window", params={"seconds": time.time() - began}, headers=auth())
        assert answer.status_code == 200, answer.text
        return answer.json()

    for client in (a, b):
        _until(lambda c=client: window(c)["aliases"].get("champion", {}).get("labelled") == 30, SYNC_SECONDS + MARGIN_S)
        merged = window(client)
        assert sorted(merged["replicas"]) == sorted([id_a, id_b])
        champion = merged["aliases"]["champion"]
        assert champion["requests"] == 30 and champion["errors"] == 0 and "challenger" not in merged["aliases"]
        assert len(champion["predictions"]) == 30 and champion["label_coverage"] == 1.0
        assert champion["online_log_loss"] > 0 and champion["p99_ms"] >= champion["p50_ms"] > 0


def test_a_traffic_step_sent_to_one_replica_is_applied_by_the_other(replicas):
    (_, _, a), (_, _, b) = replicas
    for percent, (sender, follower) in ((25, (a, b)), (50, (b, a)), (0, (a, b))):
        assert (
            _admin(sender, "POST", f"/admin/{UC}/traffic", json={"challenger_percent": percent})["challenger_percent"]
            == percent
        )
        lag = _until(lambda f=follower, p=percent: _models(f)["challenger_percent"] == p, SYNC_SECONDS + MARGIN_S)
        print(f"traffic {percent} % applied by the other replica after {lag:.2f} s")


def test_a_reload_after_an_alias_move_on_one_replica_is_picked_up_by_the_other(replicas, served):  # noqa: F811
    settings, storage = served
    (_, _, a), (_, _, b) = replicas
    client = registry_client(settings.tracking_uri)
    move_alias(client, storage, AliasMove(UC, CHALLENGER, None, None, "test", "rolled back"))
    try:
        assert _admin(a, "POST", f"/admin/{UC}/reload")["models"] == {"champion": "1", "challenger": None}
        lag = _until(lambda: _models(b)["models"]["challenger"] is None, SYNC_SECONDS + MARGIN_S)
        print(f"challenger removal picked up by the other replica after {lag:.2f} s")
    finally:
        move_alias(client, storage, AliasMove(UC, CHALLENGER, "2", None, "test", "back"))
    assert _admin(b, "POST", f"/admin/{UC}/reload")["models"] == {"champion": "1", "challenger": "2"}
    # the other replica loads v2 again (registry read, signature check, model load, warm-up)
    lag = _until(lambda: _models(a)["models"]["challenger"] == "2", SYNC_SECONDS + MARGIN_S + 15)
    print(f"challenger v2 loaded by the other replica after {lag:.2f} s")


def test_a_fault_drill_started_on_one_replica_reaches_the_other(replicas):
    (_, _, a), (_, _, b) = replicas
    row = requests_of(DAY, 1)[0]
    key = next(str(i) for i in range(1000) if bucket(str(i)) < BUCKETS // 2)  # lands on the challenger at 50 %

    def answered_by_fallback() -> bool:
        answer = b.post(f"/v1/{UC}/predict", json={"rows": [row], "routing_key": key}, headers=auth())
        assert answer.status_code == 200, answer.text
        return answer.json()["fallback"]

    _until(lambda: _models(b)["models"]["challenger"] == "2", MARGIN_S + 15)
    _admin(a, "POST", f"/admin/{UC}/traffic", json={"challenger_percent": 50})
    _admin(a, "POST", f"/admin/{UC}/faults", json={"alias": "challenger", "error_share": 1.0})
    try:
        _until(answered_by_fallback, SYNC_SECONDS + MARGIN_S)
    finally:
        _admin(a, "DELETE", f"/admin/{UC}/faults")
        _admin(a, "POST", f"/admin/{UC}/traffic", json={"challenger_percent": 0})
    _until(lambda: not answered_by_fallback(), SYNC_SECONDS + MARGIN_S)


# --- the shared state itself, without processes ---------------------------------------------------


def test_a_single_gateway_shares_nothing(served, tmp_path):  # noqa: F811
    """The default (sync off): no replica id, no reload announcement, no window segment; its own window."""
    from fastapi.testclient import TestClient

    settings, _ = served
    storage = LocalStorage(tmp_path / "own")
    with TestClient(create_app(Gateway([FLIGHTS], settings, storage, flush_seconds=0.2), TOKEN, ADMIN)) as http:
        assert http.get("/health").json()["replica"] is None
        assert http.post(f"/admin/{UC}/reload", headers=auth(ADMIN)).status_code == 200
        assert http.post(f"/admin/{UC}/traffic", json={"challenger_percent": 0}, headers=auth(ADMIN)).status_code == 200
        row = requests_of(DAY, 1)[0]
        assert http.post(f"/v1/{UC}/predict", json={"rows": [row]}, headers=auth()).status_code == 200
        window = http.get(f"/v1/{UC}/window", headers=auth()).json()
        assert window["aliases"]["champion"]["requests"] == 1 and "replicas" not in window
    assert storage.exists(traffic_key(UC))  # as before: a restarted gateway keeps the share
    assert not storage.exists(models_key(UC)) and not storage.list(window_prefix(UC))


@pytest.fixture(params=["local", "s3"])
def shared_root(request, tmp_path):
    """The data root the replicas share: a folder, or S3 (a moto server on loopback, as in test_gateway.py)."""
    return LocalStorage(tmp_path) if request.param == "local" else request.getfixturevalue("s3_lake")


def test_the_shared_window_merges_replicas_like_one_window_and_prunes_old_minutes(shared_root):
    storage = shared_root
    now = time.time()
    one = SharedWindow(storage, UC, "classification", "pod-a")
    two = SharedWindow(storage, UC, "classification", "pod-b")
    alone = TrafficWindow("classification")
    requests = [
        Served(now - 30 + i, "champion" if i % 4 else "challenger", "1", f"r{i}", i, (i / 40,), False)
        for i in range(40)
    ]
    for s in requests:
        alone.record(s)
    labels = [[f"r{i}", 0, float(i % 2)] for i in range(0, 40, 2)]
    for rid, row, value in labels:
        alone.label(rid, row, value)
    one.write(requests[:25], [], now - 5)
    two.write(requests[25:], labels, now - 5)  # outcomes of pod-a's predictions, received by pod-b
    assert one.write([], [], now) is None  # nothing new: no segment
    merged, seen = one.merged(60, now)
    assert seen == ["pod-a", "pod-b"] and merged == alone.summary(60) and merged["champion"]["labelled"] == 10
    assert one.merged(60, now)[0] == merged  # again, from the cache
    # a segment from before the retention is deleted by any replica; a recent one is kept
    old = two.write(requests[:1], [], now - two.retention_seconds - 3 * SLOT_SECONDS)
    assert one.prune(now) == 1 and not storage.exists(old) and one.merged(60, now)[0] == merged


def test_a_control_document_is_news_once_per_change(shared_root):
    writer, reader = (ControlDocument(shared_root, "serving/uc/traffic.json") for _ in range(2))
    assert reader.changed() is None  # nobody wrote it yet
    writer.write({"challenger_percent": 5})
    assert writer.changed() is None  # its own write is no news to the writer
    assert reader.changed() == {"challenger_percent": 5} and reader.changed() is None
    writer.write({"challenger_percent": 25})
    assert reader.changed() == {"challenger_percent": 25}
    reader.forget()
    assert reader.changed() == {"challenger_percent": 25}  # applying it failed: read again


def test_the_sync_interval_setting_is_checked():
    assert sync_seconds_from_env({}) == 0.0 and sync_seconds_from_env({"AERODROME_GATEWAY_SYNC_SECONDS": "2"}) == 2.0
    with pytest.raises(ValueError, match="AERODROME_GATEWAY_SYNC_SECONDS='-1' is not a number of seconds >= 0"):
        sync_seconds_from_env({"AERODROME_GATEWAY_SYNC_SECONDS": "-1"})
    with pytest.raises(ValueError, match="'often' is not a number"):
        sync_seconds_from_env({"AERODROME_GATEWAY_SYNC_SECONDS": "often"})
