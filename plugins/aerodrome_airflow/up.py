"""`make up`: the embedded Airflow UI on http://127.0.0.1:8080 with every DAG; Ctrl-C stops it.

Migrates the metadata DB and loads `airflow_settings.yaml` (one short-lived child), then runs only the
four components a local Airflow needs, as child processes: api-server (1 worker), scheduler
(LocalExecutor with `[core] parallelism` workers), dag-processor and triggerer. Cheaper than
`airflow standalone` (no supervisor holding Airflow in memory, no 32 idle workers, no example DAGs).

Everything listens on 127.0.0.1 only. The log servers (8793/8794) are not started: Airflow binds them
to every interface with no option to change it, and they are not needed here because the API server
reads task logs straight from `$AIRFLOW_HOME/logs` on the same machine.

The API server starts first, and nothing that runs tasks starts before it answers (a task's first
call goes to it). This supervisor never imports Airflow (it stays ~15 MB). It waits for
`GET /api/v2/monitor/health`, prints the URL and the login, and watches the children: one that dies
is restarted with back-off (1 s, doubling to 60 s; reset after 2 minutes of good health), and says
so; a component that crashes 5 times within 5 minutes stops everything with its last log lines.
Tasks that were running when the scheduler died finish in their own processes and report through
the API server; their idle LocalExecutor workers are then stopped. On Ctrl-C / SIGTERM it stops them
all (SIGTERM, SIGKILL after a grace period; a second Ctrl-C skips the wait) and reaps every
descendant, so nothing is left running. Component output is appended to
`$AIRFLOW_HOME/logs/up/*.log` (rotated to `*.log.1` past 20 MB; `--verbose` streams it to the
terminal instead).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aerodrome_airflow.embedded import API_HOST, API_PORT, PROJECT_ROOT, api_environ, apply_embedded_environ

COMPONENTS: dict[str, list[str]] = {
    "api-server": ["api-server", "--workers", "1"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
HEALTH_PATH = "/api/v2/monitor/health"
FIRST_COMPONENT = "api-server"  # tasks call it from their first line: it must listen before anything runs them
LOG_ROTATE_BYTES = 20 * 1024 * 1024
BACKOFF_FIRST_S, BACKOFF_MAX_S, HEALTHY_AFTER_S = 1.0, 60.0, 120.0
CRASH_LIMIT, CRASH_WINDOW_S = 5, 300.0
IDLE_WORKER_TITLE = "airflow worker -- LocalExecutor"
# an orphaned worker idle this long has drained its dead scheduler's queue (an idle worker takes any item left)
ORPHAN_IDLE_S = 10.0
_idle_since: dict[int, float] = {}
ADMIN_USER = "admin"  # SimpleAuthManager's default `[core] simple_auth_manager_users = admin:admin`
STOP_GRACE_S = 20.0
GATEWAY_PORT = 8090
GATEWAY_TOKENS_HINT = "$AERODROME_DATA_ROOT/gateway/tokens.json"

# `airflow db migrate` through the CLI's main (which also writes airflow.cfg, with the fernet key and
# the JWT secret, on a fresh home: it must exist *before* the components start, or each one generates
# its own secret and task tokens fail), then airflow_settings.yaml, in one child process.
PREPARE_CODE = """
import pathlib, sys
settings_file = pathlib.Path(sys.argv[1])
sys.argv = ["airflow", "db", "migrate"]
from airflow.__main__ import main
main()
from aerodrome_airflow.airflow_settings import load_airflow_settings
c = load_airflow_settings(settings_file)
print(f"airflow_settings.yaml: {c.connections} connections, {c.variables} variables, {c.pools} pools")
"""

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop every component."""


def _say(message: str) -> None:
    print(f"[aerodrome up {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _prctl(option: int, value: int) -> None:
    """Linux process control; a no-op elsewhere (the normal shutdown path still stops the children)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def become_subreaper() -> None:
    """Orphaned descendants (task processes) are re-parented to this process, to be found and reaped."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _child_setup() -> None:
    os.setpgid(0, 0)  # own group: Ctrl-C reaches only the supervisor, which stops children in order
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)  # and SIGTERM if the supervisor dies uncleanly


def open_log(path: Path, rotate_bytes: int = LOG_ROTATE_BYTES) -> IO[bytes]:
    """Append to `path`, first moving it to `path.1` when it has grown past `rotate_bytes`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > rotate_bytes:
        path.replace(path.with_name(path.name + ".1"))
    return open(path, "ab")  # noqa: SIM115 - closed by the component


@dataclass
class Component:
    name: str
    argv: list[str]
    log_path: Path | None
    proc: subprocess.Popen | None = None
    log: IO[bytes] | None = field(default=None, repr=False)
    starts: int = 0
    started_at: float = 0.0
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None  # set while waiting out the back-off after a crash

    def start(self, env: dict[str, str]) -> None:
        self.starts += 1
        self.started_at = time.monotonic()
        self.restart_at = None
        if self.log_path is not None:
            if self.log is not None:
                self.log.close()
            self.log = open_log(self.log_path)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            self.log.write(f"\n===== aerodrome up: {self.name} start #{self.starts} at {stamp} =====\n".encode())
            self.log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup,
        )

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def backoff(self, now: float) -> float:
        """Seconds to wait before restarting after a crash at `now` (doubling; reset after a healthy spell)."""
        if now - self.started_at >= HEALTHY_AFTER_S:
            self.crashes = [now]
            return BACKOFF_FIRST_S
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW_S] + [now]
        return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (len(self.crashes) - 1))

    def crash_looping(self) -> bool:
        return len(self.crashes) >= CRASH_LIMIT

    def tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def descendants(root: int) -> list[int]:
    """Pids of every live process below `root`, read from /proc (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else []:
        if entry.name.isdigit() and (ppid := parent_pid(int(entry.name))) is not None:
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def orphaned_idle_workers(supervisor: int) -> list[int]:
    """LocalExecutor workers of a dead scheduler, re-parented to us, that have no task left to run."""
    children = [pid for pid in descendants(supervisor) if parent_pid(pid) == supervisor]
    return [pid for pid in children if _cmdline(pid).startswith(IDLE_WORKER_TITLE) and _cmdline(pid).endswith("<idle>")]


def _reap() -> None:
    """Collect exited children, including re-parented grandchildren (we are a child subreaper)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def stop_all(components: list[Component], grace_s: float = STOP_GRACE_S, hurry=lambda: False) -> None:
    """SIGTERM each component, wait up to `grace_s`, then SIGKILL whatever is left below us.

    Only the component's own process gets the signal: it stops its children in order (a LocalExecutor
    worker killed by a group-wide signal can leave the others blocked and the scheduler waiting).
    """
    for c in components:
        if c.proc is not None and c.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and not hurry():
        _reap()
        running = [c for c in components if c.proc is not None and c.proc.poll() is None]
        if not running and not descendants(os.getpid()):
            break
        time.sleep(0.2)
    # what is still alive ignored SIGTERM, or is a task process in its own group re-parented here
    leftovers = descendants(os.getpid())
    if leftovers:
        _say(f"killing {len(leftovers)} process(es) still running")
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for c in components:
        if c.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=5)
        if c.log is not None:
            c.log.close()
    _reap()


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def api_request(
    method: str, url: str, body: dict | None = None, token: str | None = None, timeout: float = 10.0
) -> dict:
    """One JSON call to the Airflow REST API (stdlib only, so this supervisor stays small)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def health(base_url: str) -> dict | None:
    """The health document, or None while the API server does not answer."""
    try:
        return api_request("GET", base_url + HEALTH_PATH, timeout=2.0)
    except (OSError, ValueError):
        return None


def is_healthy(doc: dict | None, components: tuple[str, ...]) -> bool:
    """The metadata DB and every named component (`scheduler`, `dag_processor`, ...) report healthy."""
    return bool(doc) and all((doc.get(k) or {}).get("status") == "healthy" for k in ("metadatabase", *components))


def generated_password(home: Path, username: str = ADMIN_USER) -> str | None:
    """The password SimpleAuthManager generated for `username` on first start (None if there is none)."""
    default = home / "simple_auth_manager_passwords.json.generated"
    path = Path(os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE") or default)
    try:
        return json.loads(path.read_text() or "{}").get(username)
    except (OSError, ValueError):
        return None


def access_token(base_url: str, username: str, password: str) -> str:
    body = {"username": username, "password": password}
    return api_request("POST", base_url + "/auth/token", body)["access_token"]


def prepare_metadata(env: dict[str, str], log_path: Path | None, timeout_s: float) -> str:
    """`airflow db migrate` + airflow_settings.yaml in one child (both idempotent); returns its summary."""
    result = subprocess.run(
        [sys.executable, "-c", PREPARE_CODE, str(PROJECT_ROOT / "airflow_settings.yaml")],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"`airflow db migrate` / airflow_settings.yaml failed (exit {result.returncode})")
    return (result.stdout.strip().splitlines() or ["metadata DB ready"])[-1]


def wait_until_healthy(base_url: str, components: list[Component], timeout_s: float) -> None:
    """Return once every component reports healthy; SystemExit if one dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    watched = tuple(c.name.replace("-", "_") for c in components if c.name not in ("api-server", "gateway"))
    doc = None
    while time.monotonic() < deadline:
        for c in components:
            if c.exit_code() is not None:
                raise SystemExit(f"{c.name} exited with code {c.exit_code()} while starting:\n{c.tail()}")
        doc = health(base_url)
        if is_healthy(doc, watched):
            return
        time.sleep(0.25)
    raise SystemExit(f"not healthy after {timeout_s:.0f}s; last health document: {doc}")


def wait_until_answering(base_url: str, components: list[Component], timeout_s: float) -> None:
    """Return once the API server answers its health endpoint with a healthy metadata DB."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for c in components:
            if c.exit_code() is not None:
                raise SystemExit(f"{c.name} exited with code {c.exit_code()} while starting:\n{c.tail()}")
        if is_healthy(health(base_url), ()):
            return
        time.sleep(0.25)
    raise SystemExit(f"the API server did not answer {base_url}{HEALTH_PATH} within {timeout_s:.0f}s")


def keep_running(components: list[Component], env: dict[str, str]) -> bool:
    """Restart components that died (after their back-off); False when one is crash-looping."""
    now = time.monotonic()
    for c in components:
        code = c.exit_code()
        if code is None:
            continue
        if c.restart_at is None:
            delay = c.backoff(now)
            if c.crash_looping():
                _say(f"{c.name} crashed {len(c.crashes)} times within {CRASH_WINDOW_S:.0f}s; stopping\n{c.tail()}")
                return False
            c.restart_at = now + delay
            _say(f"{c.name} exited with code {code}; restarting it in {delay:.0f}s (restart #{c.starts})")
        elif now >= c.restart_at:
            c.start(env)
            _say(f"{c.name} restarted (pid {c.proc.pid})")
    idle = orphaned_idle_workers(os.getpid())
    for pid in list(_idle_since):
        if pid not in idle:
            del _idle_since[pid]
    for pid in idle:
        if now - _idle_since.setdefault(pid, now) >= ORPHAN_IDLE_S:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # drained and idle: it would wait forever on a dead queue
                _say(f"stopped idle LocalExecutor worker {pid} of a scheduler that died")
    reap_orphans({c.proc.pid for c in components if c.proc is not None})
    return True


def reap_orphans(keep: set[int]) -> None:
    """Collect exited re-parented descendants, leaving our own components to Popen (it keeps their codes)."""
    me = os.getpid()
    for pid in descendants(me):
        if pid not in keep and parent_pid(pid) == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def list_dags(base_url: str, token: str, timeout_s: float) -> tuple[list[str], int]:
    """DAG ids and the import-error count, once the dag-processor has parsed the dags folder."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            dags = api_request("GET", f"{base_url}/api/v2/dags?limit=1000", token=token)
            errors = api_request("GET", f"{base_url}/api/v2/importErrors?limit=1", token=token)
        except (OSError, ValueError):
            dags, errors = {}, {}
        ids = sorted(d["dag_id"] for d in dags.get("dags", []))
        if ids or errors.get("total_entries") or time.monotonic() > deadline:
            return ids, int(errors.get("total_entries") or 0)
        time.sleep(0.5)


def prepare_gateway(host: str, port: int) -> str:
    """The gateway's URL and tokens in this environment, so every component (tasks, triggers) reaches it."""
    from aerodrome.serving.tokens import ADMIN_TOKEN_ENV, TOKEN_ENV, URL_ENV, gateway_tokens

    token, admin = gateway_tokens(os.environ["AERODROME_DATA_ROOT"])
    url = f"http://{host}:{port}"
    os.environ.update({TOKEN_ENV: token, ADMIN_TOKEN_ENV: admin, URL_ENV: url})
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help=f"UI/API port on {API_HOST} (default {API_PORT})")
    parser.add_argument("--no-triggerer", action="store_true", help="skip it (no deferrable tasks)")
    parser.add_argument(
        "--gateway-port", type=int, default=GATEWAY_PORT, help=f"model gateway on {API_HOST} (0: no gateway)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for healthy")
    parser.add_argument("--verbose", action="store_true", help="component output to the terminal")
    args = parser.parse_args(argv)

    started = time.monotonic()
    if args.port is not None:
        os.environ.update(api_environ(args.port))
    env = apply_embedded_environ()
    home = Path(env["AIRFLOW_HOME"])
    host, port = env["AIRFLOW__API__HOST"], int(env["AIRFLOW__API__PORT"])
    base_url = f"http://{host}:{port}"
    if host not in ("127.0.0.1", "localhost", "::1"):
        _say(f"warning: AIRFLOW__API__HOST={host} from your environment exposes the UI beyond this machine")
    if not port_is_free(host, port):
        _say(f"{host}:{port} is already in use (another `make up`?): stop it or pass --port")
        return 1

    airflow = str(Path(sys.executable).with_name("airflow"))
    logs = None if args.verbose else home / "logs" / "up"
    names = [n for n in COMPONENTS if not (args.no_triggerer and n == "triggerer")]
    components = [Component(n, [airflow, *COMPONENTS[n]], logs / f"{n}.log" if logs else None) for n in names]
    if args.gateway_port:
        gateway_url = prepare_gateway(host, args.gateway_port)
        argv = [sys.executable, "-m", "aerodrome.serving", "--host", host, "--port", str(args.gateway_port)]
        components.append(Component("gateway", argv, logs / "gateway.log" if logs else None))
        names.append("gateway")
    stopping: list[bool] = []

    def request_stop(signum, frame):
        if stopping:  # a second Ctrl-C while stopping: do not wait for running tasks
            stopping.append(True)
            return
        raise Stop

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    become_subreaper()
    try:
        _say(f"AIRFLOW_HOME {home}: airflow db migrate + airflow_settings.yaml")
        _say(prepare_metadata(dict(os.environ), logs / "prepare.log" if logs else None, args.timeout))
        first = [c for c in components if c.name == FIRST_COMPONENT]
        for c in first:
            c.start(dict(os.environ))
        wait_until_answering(base_url, first, max(10.0, args.timeout - (time.monotonic() - started)))
        for c in components:
            if c.proc is None:
                c.start(dict(os.environ))
        _say(f"started {', '.join(names)}" + (f"; logs appended to {logs}/" if logs else ""))
        wait_until_healthy(base_url, components, max(10.0, args.timeout - (time.monotonic() - started)))
        _say(f"healthy after {time.monotonic() - started:.1f}s")
        password = generated_password(home)
        if password:
            try:
                dag_ids, errors = list_dags(base_url, access_token(base_url, ADMIN_USER, password), 60)
                problems = f"; {errors} import error(s), see the UI" if errors else ""
                _say(f"{len(dag_ids)} DAG(s): {', '.join(dag_ids)}{problems}")
            except (OSError, ValueError, KeyError) as exc:
                _say(f"could not list the DAGs through the API: {exc}")
        login = f"{ADMIN_USER} / {password}" if password else "as set in [core] simple_auth_manager_users"
        gateway = f"\n  gateway     {gateway_url} (tokens in {GATEWAY_TOKENS_HINT})" if args.gateway_port else ""
        print(f"\n  Airflow UI  {base_url}\n  login       {login}{gateway}\n  Ctrl-C stops everything\n", flush=True)
        while True:
            if not keep_running(components, dict(os.environ)):
                return 1
            time.sleep(0.5)
    except Stop:
        _say("stopping (Ctrl-C again to skip waiting for running tasks)")
        return 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            _say(exc.code)
            return 1
        raise
    finally:
        stopping.append(False)
        stop_all(components, hurry=lambda: len(stopping) > 1)
        if any(c.proc is not None for c in components):
            _say("all components stopped")


if __name__ == "__main__":
    raise SystemExit(main())
