#!/usr/bin/env bash
# Stop the local cluster started by up.sh: kubelet, control plane, every container and shim, containerd,
# etcd; unmount what they mounted, remove the pod bridge, clean /var/log/pods and /var/log/containers,
# and delete the run dir (cluster state) unless --keep-state. The binary and image cache stay.
# Every wait is bounded; safe to run when nothing is up.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
k8s_need_root
KEEP=0; [ "${1:-}" = "--keep-state" ] && KEEP=1
BRIDGE="${AERODROME_K8S_BRIDGE:-aerok8s0}"

stop() { # stop NAME [GRACE_SECONDS]: SIGTERM the recorded pid, SIGKILL after the grace period
  local name="$1" grace="${2:-10}" f="$K8S_PID_DIR/$1.pid" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if proc_alive "$pid"; then
    k8s_log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    local end=$((SECONDS + grace))
    while proc_alive "$pid" && [ "$SECONDS" -lt "$end" ]; do sleep 0.2; done
    proc_alive "$pid" && { k8s_log "killing $name"; kill -KILL "$pid" 2>/dev/null; sleep 0.2; }
  fi
  rm -f "$f"
}

stop kubelet 15
stop kube-scheduler
stop kube-controller-manager

# Containers: kill every task in k8s.io while containerd still answers, then remove them.
if [ -S "$CONTAINERD_SOCK" ] && timeout 5 ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; then
  for t in $(timeout 10 ctr_k8s tasks ls -q 2>/dev/null); do timeout 10 ctr_k8s tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 0.5
  for t in $(timeout 10 ctr_k8s tasks ls -q 2>/dev/null); do timeout 10 ctr_k8s tasks delete -f "$t" >/dev/null 2>&1; done
  for c in $(timeout 10 ctr_k8s containers ls -q 2>/dev/null); do timeout 10 ctr_k8s containers delete "$c" >/dev/null 2>&1; done
fi
stop containerd
# Shims outlive containerd: end those that belong to this containerd (their -address is our socket).
for p in /proc/[0-9]*; do
  cmd="$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" || continue
  case "$cmd" in
    *containerd-shim*"$CONTAINERD_SOCK"*) k8s_log "killing shim ${p#/proc/}"; kill -KILL "${p#/proc/}" 2>/dev/null ;;
  esac
done
stop kube-apiserver
stop etcd

# Unmount everything under the run dir (deepest first): pod volumes, rootfs overlays, shm, netns.
mapfile -t mnts < <(awk -v r="$AERODROME_K8S_RUN" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r)
for m in "${mnts[@]}"; do
  m="$(printf '%b' "$m")"   # mountinfo escapes spaces as \040
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || k8s_log "could not unmount $m"
done
ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE" 2>/dev/null
# kubelet 1.20 writes pod logs to /var/log/pods (and links in /var/log/containers) whatever its root dir.
rm -rf /var/log/pods /var/log/containers
# Paths these versions use whatever their configuration: remove our files, then the folders if empty.
rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/DEPRECATION /var/lib/cni/results/aerodrome-*
for d in /var/lib/kubelet/device-plugins /var/lib/kubelet /var/lib/cni/results /var/lib/cni \
         /run/containerd/s /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd; do
  rmdir "$d" 2>/dev/null || true
done
left="$(awk -v r="$AERODROME_K8S_RUN" 'index($5, r) == 1' /proc/self/mountinfo | wc -l)"
if [ "$KEEP" = 0 ] && [ "$left" -gt 0 ]; then
  k8s_log "$left mounts remain under $AERODROME_K8S_RUN: not deleting it"; KEEP=1
fi
if [ "$KEEP" = 0 ]; then
  rm -rf --one-file-system "$AERODROME_K8S_RUN"
  k8s_log "down; state removed (binary cache kept in $K8S_BIN)"
else
  k8s_log "down; state kept in $AERODROME_K8S_RUN"
fi
exit 0
