"""KubernetesPodOperator settings for the local single-node cluster of scripts/k8s (the "local" profile).

The cluster has no registry and pods have no route off the machine, so a pod that runs project code uses
the ``host-runtime`` image (no binaries of its own), ``image_pull_policy="Never"``, ``hostNetwork: true``
(to reach services on 127.0.0.1, e.g. MLflow) and read-only hostPath volumes for /usr and the venv's
base interpreter, plus the project tree (read-write) at the same paths as on the host, so the venv's
absolute paths hold inside the pod::

    from kpo_local import local_pod_kwargs          # scripts/k8s on sys.path
    KubernetesPodOperator(task_id="train", name="train",
                          cmds=[sys.executable, "-m", "aerodrome.train"], **local_pod_kwargs())

Only the standard library and (lazily) the ``kubernetes`` client are imported.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

KUBECONFIG = os.environ.get("AERODROME_K8S_KUBECONFIG", "/var/lib/aerodrome-k8s/kubeconfig")
NAMESPACE = os.environ.get("AERODROME_K8S_NAMESPACE", "aerodrome")
HOST_RUNTIME_IMAGE = "docker.io/aerodrome/host-runtime:local"
BUSYBOX_IMAGE = "docker.io/aerodrome/busybox:local"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def connection_extra() -> dict:
    """Extras of the ``kubernetes_default`` connection for the local cluster.

    ``xcom_sidecar_container_image`` replaces the default alpine sidecar (not pullable here) for
    ``do_xcom_push=True``.
    """
    return {"kube_config_path": KUBECONFIG, "namespace": NAMESPACE, "xcom_sidecar_container_image": BUSYBOX_IMAGE}


def connection_env() -> dict[str, str]:
    """``AIRFLOW_CONN_KUBERNETES_DEFAULT`` (JSON form) for the local cluster."""
    return {"AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps({"conn_type": "kubernetes", "extra": connection_extra()})}


def _base_prefix(python: str) -> Path:
    """The prefix of the interpreter a venv python finally resolves to (e.g. /root/.pyenv/versions/3.11.7)."""
    real = Path(os.path.realpath(python))
    return real.parent.parent  # .../bin/python3.11 -> prefix


def _minimal(paths: list[Path]) -> list[Path]:
    """Drop paths inside another path of the list (a mount already covers them)."""
    out: list[Path] = []
    for p in sorted({Path(os.path.abspath(x)) for x in paths}, key=lambda x: len(x.parts)):
        if not any(p == o or o in p.parents for o in out):
            out.append(p)
    return out


def host_mounts(
    project_root: str | os.PathLike | None = None,
    python: str | None = None,
    extra_rw: tuple[str, ...] = (),
    extra_ro: tuple[str, ...] = (),
) -> list[tuple[str, bool]]:
    """(host path, read_only) pairs a pod needs to run ``python`` from the project venv."""
    root = Path(project_root or PROJECT_ROOT).resolve()
    python = python or str(root / ".venv" / "bin" / "python")
    venv = Path(python).parent.parent
    rw = _minimal([root, venv, *map(Path, extra_rw)])
    ro = [
        p
        for p in _minimal([Path("/usr"), _base_prefix(python), *map(Path, extra_ro)])
        if not any(p == r or r in p.parents for r in rw)
    ]
    return [(str(p), True) for p in ro] + [(str(p), False) for p in rw]


def local_pod_kwargs(
    project_root: str | os.PathLike | None = None,
    python: str | None = None,
    extra_rw: tuple[str, ...] = (),
    extra_ro: tuple[str, ...] = (),
    host_network: bool = True,
    image: str = HOST_RUNTIME_IMAGE,
) -> dict:
    """Keyword arguments for KubernetesPodOperator in the local profile."""
    from kubernetes.client import models as k8s

    volumes, mounts = [], []
    for i, (path, read_only) in enumerate(host_mounts(project_root, python, extra_rw, extra_ro)):
        name = f"host-{i}"
        volumes.append(k8s.V1Volume(name=name, host_path=k8s.V1HostPathVolumeSource(path=path, type="Directory")))
        mounts.append(k8s.V1VolumeMount(name=name, mount_path=path, read_only=read_only))
    return {
        "config_file": KUBECONFIG,
        "in_cluster": False,
        "namespace": NAMESPACE,
        "image": image,
        "image_pull_policy": "Never",
        "hostnetwork": host_network,
        "volumes": volumes,
        "volume_mounts": mounts,
        "get_logs": True,
        "on_finish_action": "delete_pod",
        "startup_timeout_seconds": 120,
        # the operator polls a starting pod every 5 s by default: most of a short pod's latency here
        "startup_check_interval_seconds": 1,
    }


if __name__ == "__main__":  # print the mounts this checkout would use
    for path, ro in host_mounts(python=sys.argv[1] if len(sys.argv) > 1 else None):
        print(("ro " if ro else "rw ") + path)
