#!/usr/bin/env bash
# Build the local Kubernetes (v1.20.2, from Debian's `kubernetes` source package, offline) into a
# binary cache, plus a static pause binary and the local images (pause, busybox, host-runtime).
# Idempotent: installed packages, a fetched source and built binaries are reused; a second run is
# instant. Usage: scripts/k8s/build.sh [--force]   (--force rebuilds the Kubernetes binaries)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
k8s_need_root
FORCE=0; [ "${1:-}" = "--force" ] && FORCE=1

# Bumped whenever the patch or build flags change, so a stale cache is rebuilt.
BUILD_STAMP="k8s=$K8S_VERSION loopback-patch=1 bins=apiserver,controller-manager,scheduler,kubelet,kubectl"
BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
PKGS=(etcd-server etcd-client containerd runc containernetworking-plugins busybox-static
      golang-go rsync make gcc libc6-dev dpkg-dev xz-utils openssl curl iproute2 iptables ca-certificates)

install_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    k8s_log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -q >/dev/null || k8s_log "apt-get update failed; trying the install anyway"
    # Keep dpkg from starting services (containerd/etcd) through any init system: we run our own.
    timeout 900 apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
  fi
  # Where an init system started Debian's own etcd/containerd services, they do not clash with ours:
  # up.sh uses its own ports (etcd 12379/12380), socket, state and config.
}

fetch_source() {
  local dl="$AERODROME_K8S_CACHE/src"
  mkdir -p "$dl"
  if ls "$dl"/kubernetes_*.dsc >/dev/null 2>&1; then return 0; fi
  # A private sources list, lists dir and cache: /etc/apt and the system's package lists stay untouched.
  local apt="$AERODROME_K8S_CACHE/apt"
  mkdir -p "$apt/parts" "$apt/lists/partial" "$apt/archives/partial"
  local key=/usr/share/keyrings/debian-archive-keyring.gpg
  printf 'deb-src [signed-by=%s] %s bookworm main\n' "$key" "$(debian_mirror)" > "$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/parts"
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::Archives=$apt/archives"
              -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Sandbox::User=root")
  k8s_log "fetching Debian's kubernetes source package (deb-src bookworm main)"
  timeout 600 apt-get "${opts[@]}" update -q >/dev/null
  (cd "$dl" && timeout 900 apt-get "${opts[@]}" source --download-only -q kubernetes >/dev/null)
  ls "$dl"/kubernetes_*.dsc >/dev/null 2>&1 || k8s_die "kubernetes source download failed"
}

unpack_source() {
  local dl="$AERODROME_K8S_CACHE/src" tree="$AERODROME_K8S_CACHE/src/tree"
  if [ ! -f "$tree/.aerodrome-unpacked" ]; then
    rm -rf "$tree"
    k8s_log "unpacking the source (dpkg-source -x)"
    local dsc; dsc="$(find "$dl" -maxdepth 1 -name 'kubernetes_*.dsc' | head -1)"
    dpkg-source --no-check -x "$dsc" "$tree" >/dev/null
    touch "$tree/.aerodrome-unpacked"
  fi
  echo "$tree"
}

# kubelet rejects --node-ip=127.0.0.1 ("nodeIP can't be loopback address"); without a node address
# `kubectl logs` has no address to use. Skip that one check when AERODROME_K8S_ALLOW_LOOPBACK_NODE_IP
# is set in kubelet's environment (up.sh sets it); unset, the kubelet behaves as upstream.
patch_loopback() {
  local f="$1/pkg/kubelet/kubelet_node_status.go"
  grep -q AERODROME_K8S_ALLOW_LOOPBACK_NODE_IP "$f" && return 0
  grep -q 'if nodeIP.IsLoopback() {' "$f" || k8s_die "loopback check not found in $f"
  sed -i 's/if nodeIP.IsLoopback() {/if nodeIP.IsLoopback() \&\& os.Getenv("AERODROME_K8S_ALLOW_LOOPBACK_NODE_IP") == "" {/' "$f"
  grep -q '^\s*"os"$' "$f" || sed -i '0,/^import (/s//import (\n\t"os"/' "$f"
  grep -q AERODROME_K8S_ALLOW_LOOPBACK_NODE_IP "$f" || k8s_die "patching $f failed"
  k8s_log "patched kubelet loopback node-IP check (env-gated)"
}

build_kube() {
  local tree="$1"
  k8s_log "building ${BINS[*]} (GOPATH mode, offline; several minutes on 2 cores)"
  local t0=$SECONDS
  (
    cd "$tree"
    jobs="$(nproc)"
    export GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 GO111MODULE=off GOFLAGS=-p="$jobs"
    export KUBE_GIT_VERSION="$K8S_VERSION" KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 KUBE_GIT_TREE_STATE=clean
    export KUBE_VERBOSE=0
    make WHAT="cmd/kube-apiserver cmd/kube-scheduler cmd/kubelet cmd/kube-controller-manager cmd/kubectl" \
      GOFLAGS=-p="$jobs" GOLDFLAGS="-s -w" > "$AERODROME_K8S_CACHE/build.log" 2>&1
  ) || { tail -30 "$AERODROME_K8S_CACHE/build.log" >&2; k8s_die "make failed (log: $AERODROME_K8S_CACHE/build.log)"; }
  local out b
  out="$(find "$tree/_output" -type f -name kube-apiserver -path '*bin*' | head -1 | xargs dirname)"
  mkdir -p "$K8S_BIN"
  for b in "${BINS[@]}"; do install -m 0755 "$out/$b" "$K8S_BIN/$b"; done
  echo "$BUILD_STAMP" > "$K8S_BIN/.stamp"
  echo "$((SECONDS - t0))" > "$AERODROME_K8S_CACHE/build-seconds"
  k8s_log "built in $((SECONDS - t0))s into $K8S_BIN"
}

build_pause() {
  local tree="$1"
  [ -x "$K8S_BIN/pause" ] && return 0
  k8s_log "building static pause binary"
  mkdir -p "$K8S_BIN"
  gcc -Os -static -Wall -DVERSION=aerodrome-local -o "$K8S_BIN/pause" "$tree/build/pause/linux/pause.c"
  strip "$K8S_BIN/pause" 2>/dev/null || true
}

have_all_bins() {
  local b
  [ -f "$K8S_BIN/.stamp" ] && [ "$(cat "$K8S_BIN/.stamp")" = "$BUILD_STAMP" ] || return 1
  for b in "${BINS[@]}" pause; do [ -x "$K8S_BIN/$b" ] || return 1; done
}

T0=$SECONDS
install_packages
if [ "$FORCE" = 0 ] && have_all_bins; then
  k8s_log "binaries cached in $K8S_BIN (build.sh --force to rebuild)"
else
  fetch_source
  TREE="$(unpack_source)"
  patch_loopback "$TREE"
  if [ "$FORCE" = 1 ] || [ ! -f "$K8S_BIN/.stamp" ] || [ "$(cat "$K8S_BIN/.stamp")" != "$BUILD_STAMP" ]; then
    build_kube "$TREE"
  fi
  build_pause "$TREE"
  # The unpacked tree and its _output are ~2 GB; the downloaded source stays for a rebuild.
  [ "${AERODROME_K8S_KEEP_TREE:-0}" = 1 ] || rm -rf "$TREE"
fi
"$HERE/image.sh" prepare
k8s_log "build done in $((SECONDS - T0))s; binaries: $K8S_BIN"
