#!/usr/bin/env bash
# Smoke test of a running local cluster (scripts/k8s/up.sh): node Ready; a busybox pod prints and exits 0
# (logs through `kubectl logs`); a pod exiting 42 reports exit code 42; a host-runtime pod runs the
# project venv's python through hostNetwork + hostPath. Prints each pod's start latency. Exit 0 = all ok.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
PROJECT="$(cd "$HERE/../.." && pwd)"
PY="${AERODROME_K8S_PYTHON:-$PROJECT/.venv/bin/python}"
FAILS=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }
now() { date +%s.%N; }

kctl get node "$K8S_NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' | grep -qx True \
  && ok "node $K8S_NODE_NAME Ready" || bad "node not Ready"

# run_pod NAME YAML -> waits (bounded) until the pod finished; sets PHASE, EXIT, SECS
run_pod() {
  local name="$1" yaml="$2" t0 end
  kctl -n "$K8S_NAMESPACE" delete pod "$name" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
  t0="$(now)"
  echo "$yaml" | kctl -n "$K8S_NAMESPACE" apply -f - >/dev/null
  end=$((SECONDS + 120)); PHASE=""
  while [ "$SECONDS" -lt "$end" ]; do
    PHASE="$(kctl -n "$K8S_NAMESPACE" get pod "$name" -o 'jsonpath={.status.phase}' 2>/dev/null || true)"
    case "$PHASE" in Succeeded|Failed) break ;; esac
    sleep 0.2
  done
  SECS="$(awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.1f", a - b}')"
  EXIT="$(kctl -n "$K8S_NAMESPACE" get pod "$name" -o 'jsonpath={.status.containerStatuses[0].state.terminated.exitCode}' 2>/dev/null || true)"
}
pod_yaml() { # pod_yaml NAME IMAGE SHELL-COMMAND
  cat <<Y
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  containers:
  - name: main
    image: $2
    imagePullPolicy: Never
    command: ["sh", "-c", "$3"]
Y
}

run_pod smoke-hello "$(pod_yaml smoke-hello "$K8S_BUSYBOX_IMAGE" 'echo hello-from-busybox; hostname')"
LOGS="$(kctl -n "$K8S_NAMESPACE" logs smoke-hello 2>&1 || true)"
[ "$PHASE" = Succeeded ] && [ "$EXIT" = 0 ] && ok "busybox pod exit 0 in ${SECS}s (create -> Succeeded)" || bad "busybox pod: phase=$PHASE exit=$EXIT"
echo "$LOGS" | grep -q hello-from-busybox && ok "kubectl logs: $(echo "$LOGS" | head -1)" || bad "kubectl logs: $LOGS"
kctl -n "$K8S_NAMESPACE" get pod smoke-hello -o 'jsonpath={.status.podIP}{"\n"}' | sed 's/^/     pod IP: /'

run_pod smoke-exit42 "$(pod_yaml smoke-exit42 "$K8S_BUSYBOX_IMAGE" 'echo exiting 42; exit 42')"
[ "$PHASE" = Failed ] && [ "$EXIT" = 42 ] && ok "exit-42 pod: phase Failed, exit code 42 (${SECS}s)" || bad "exit-42 pod: phase=$PHASE exit=$EXIT"

if [ -x "$PY" ]; then
  # Volumes the kpo_local helper would mount for this checkout (read-only /usr and interpreter, rw project).
  VOLS=""; MNTS=""; i=0
  while read -r mode path; do
    ro=false; [ "$mode" = ro ] && ro=true
    VOLS+="  - {name: h$i, hostPath: {path: \"$path\", type: Directory}}"$'\n'
    MNTS+="    - {name: h$i, mountPath: \"$path\", readOnly: $ro}"$'\n'
    i=$((i + 1))
  done < <("$PY" "$HERE/kpo_local.py" "$PY")
  YAML="apiVersion: v1
kind: Pod
metadata: {name: smoke-venv}
spec:
  restartPolicy: Never
  hostNetwork: true
  automountServiceAccountToken: false
  volumes:
$VOLS  containers:
  - name: main
    image: $K8S_HOSTRT_IMAGE
    imagePullPolicy: Never
    command: [\"$PY\", \"-c\", \"import sys, socket, numpy; print('hello from venv python', sys.version.split()[0], sys.prefix, socket.gethostname())\"]
    volumeMounts:
$MNTS"
  run_pod smoke-venv "$YAML"
  LOGS="$(kctl -n "$K8S_NAMESPACE" logs smoke-venv 2>&1 || true)"
  [ "$PHASE" = Succeeded ] && echo "$LOGS" | grep -q 'hello from venv python' \
    && ok "venv python pod (hostNetwork, hostPath) in ${SECS}s: $LOGS" || bad "venv python pod: phase=$PHASE exit=$EXIT logs=$LOGS"
else
  echo "skip venv python pod: $PY not found"
fi
kctl -n "$K8S_NAMESPACE" delete pod smoke-hello smoke-exit42 smoke-venv --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
[ "$FAILS" = 0 ] && echo "smoke: all ok" || echo "smoke: $FAILS failed"
[ "$FAILS" = 0 ]
