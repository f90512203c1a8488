# shellcheck shell=bash disable=SC2034
# Shared settings for the local single-node Kubernetes harness (sourced by the other scripts).
# Everything listens on 127.0.0.1 only. Override any of these through the environment.
AERODROME_K8S_CACHE="${AERODROME_K8S_CACHE:-/var/cache/aerodrome-k8s}"
AERODROME_K8S_RUN="${AERODROME_K8S_RUN:-/var/lib/aerodrome-k8s}"
K8S_BIN="${K8S_BIN:-$AERODROME_K8S_CACHE/bin}"
K8S_IMAGES="${K8S_IMAGES:-$AERODROME_K8S_CACHE/images}"
K8S_KUBECONFIG="${K8S_KUBECONFIG:-$AERODROME_K8S_RUN/kubeconfig}"
K8S_NAMESPACE="${K8S_NAMESPACE:-aerodrome}"
K8S_NODE_NAME="${K8S_NODE_NAME:-aerodrome-local}"
K8S_VERSION="v1.20.2"
# Image names as the CRI sees them (containerd normalises "aerodrome/x:local" to docker.io/aerodrome/x:local).
K8S_PAUSE_IMAGE="${K8S_PAUSE_IMAGE:-docker.io/aerodrome/pause:local}"
K8S_BUSYBOX_IMAGE="${K8S_BUSYBOX_IMAGE:-docker.io/aerodrome/busybox:local}"
K8S_HOSTRT_IMAGE="${K8S_HOSTRT_IMAGE:-docker.io/aerodrome/host-runtime:local}"
K8S_DEBPY_IMAGE="${K8S_DEBPY_IMAGE:-docker.io/aerodrome/debian-python:local}"
CONTAINERD_SOCK="$AERODROME_K8S_RUN/containerd/containerd.sock"
K8S_LOG_DIR="$AERODROME_K8S_RUN/logs"
K8S_PID_DIR="$AERODROME_K8S_RUN/pids"
# The kubelet patch in build.sh only skips its loopback node-IP check when this is set.
export AERODROME_K8S_ALLOW_LOOPBACK_NODE_IP=1

k8s_log() { printf '[k8s %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
k8s_die() { k8s_log "ERROR: $*"; exit 1; }
k8s_need_root() { [ "$(id -u)" = 0 ] || k8s_die "must run as root"; }
# proc_alive PID: running and not a zombie (an unreaped child still answers kill -0).
proc_alive() {
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [ -n "$st" ] && [ "$st" != Z ]
}
# The mirror apt already uses for bookworm main (deb822 or one-line format).
debian_mirror() {
  local uri=""
  uri="$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 || true)"
  [ -n "$uri" ] || uri="$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1 || true)"
  echo "${uri:-http://deb.debian.org/debian}"
}

kctl() { "$K8S_BIN/kubectl" --kubeconfig "$K8S_KUBECONFIG" "$@"; }
ctr_k8s() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s until it succeeds or the time is up.
wait_for() {
  local limit="$1" what="$2"; shift 2
  local end=$((SECONDS + limit))
  while [ "$SECONDS" -lt "$end" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  k8s_log "timed out after ${limit}s waiting for $what"
  return 1
}
