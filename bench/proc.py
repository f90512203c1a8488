"""Process-tree measurement for the benchmarks: total PSS, free ports, and stopping a tree for sure."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import time
from pathlib import Path

from aerodrome_airflow.stack import free_port
from aerodrome_airflow.up import become_subreaper, descendants

__all__ = [
    "become_subreaper",
    "descendants",
    "free_port",
    "is_loopback",
    "listening_addresses",
    "pss_kb",
    "stop_tree",
    "tree_cpu_percent",
    "tree_pss_mb",
]


def pss_kb(pid: int) -> int:
    """Proportional set size of one process (shared pages split between their users), 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def tree_pss_mb(root: int) -> tuple[float, int]:
    """Total PSS (MB) of `root` and every process below it, and how many processes that is."""
    pids = [root, *descendants(root)]
    return sum(pss_kb(p) for p in pids) / 1024, len(pids)


def _cpu_ticks(pid: int) -> int:
    """utime + stime of `pid` plus those of its reaped children (fields 14-17 of /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15])
    except (OSError, IndexError, ValueError):
        return 0


def tree_cpu_percent(root: int, seconds: float) -> float:
    """CPU used by `root` and its descendants over the next `seconds`, in % of one core."""
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    before = {p: _cpu_ticks(p) for p in [root, *descendants(root)]}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    after = {p: _cpu_ticks(p) for p in [root, *descendants(root)]}
    used = sum(ticks - before.get(pid, 0) for pid, ticks in after.items() if ticks >= before.get(pid, 0))
    return 100.0 * used / ticks_per_s / elapsed


def stop_tree(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace_s: float = 30.0) -> bool:
    """Send `sig` to `proc`, wait up to `grace_s` for it and its descendants, then SIGKILL the rest.

    Returns True when everything exited on its own. Needs `become_subreaper()` for grandchildren that
    outlive their parent.
    """
    me = os.getpid()
    tree = set(descendants(proc.pid)) | {proc.pid}
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    deadline = time.monotonic() + grace_s
    clean = False
    while time.monotonic() < deadline:
        proc.poll()
        alive = [p for p in (tree | set(descendants(me))) if _alive(p)]
        if not alive:
            clean = True
            break
        time.sleep(0.2)
    for pid in tree | set(descendants(me)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    return clean


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited and only waits to be reaped


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _decode(hex_addr: str) -> str:
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])
    else:  # four little-endian 32-bit words
        ip = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return f"[{ip}]:{int(port, 16)}" if ip.version == 6 else f"{ip}:{int(port, 16)}"


def listening_addresses(root: int) -> list[str]:
    """TCP addresses that `root` or its descendants listen on (from /proc/net/tcp and tcp6)."""
    inodes = set().union(*(_socket_inodes(p) for p in [root, *descendants(root)]))
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                found.add(_decode(fields[1]))
    return sorted(found)


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return ipaddress.ip_address(host).is_loopback
