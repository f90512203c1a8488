#!/usr/bin/env bash
# Start a single-node Kubernetes v1.20 on loopback only: etcd, containerd (own config), kube-apiserver,
# kube-controller-manager, kube-scheduler and kubelet, state under $AERODROME_K8S_RUN
# (/var/lib/aerodrome-k8s). Waits (bounded) for the node to be Ready and creates namespace aerodrome.
# Idempotent: when the cluster is already up it just says so. Needs scripts/k8s/build.sh first.
# Prints the kubeconfig path on stdout (last line); progress goes to stderr.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
k8s_need_root
READY_TIMEOUT="${AERODROME_K8S_READY_TIMEOUT:-120}"
ETCD_PORT="${AERODROME_K8S_ETCD_PORT:-12379}"
ETCD_PEER_PORT="${AERODROME_K8S_ETCD_PEER_PORT:-12380}"
API_PORT="${AERODROME_K8S_API_PORT:-6443}"
# Pods without hostNetwork get an address from a loopback range (127.77.0.0/16) on a host bridge that
# has no address of its own: no route off the pod, nothing but loopback addresses anywhere.
POD_CIDR="${AERODROME_K8S_POD_CIDR:-127.77.0.0/16}"
SERVICE_CIDR="${AERODROME_K8S_SERVICE_CIDR:-127.78.0.0/24}"
SERVICE_IP="${SERVICE_CIDR%.*}.1"
BRIDGE="${AERODROME_K8S_BRIDGE:-aerok8s0}"
PKI="$AERODROME_K8S_RUN/pki"
API="https://127.0.0.1:$API_PORT"

for b in etcd containerd runc kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
  case "$b" in kube*) p="$K8S_BIN/$b" ;; *) p="$(command -v "$b" || true)" ;; esac
  [ -n "$p" ] && [ -x "$p" ] || k8s_die "$b not found: run scripts/k8s/build.sh first"
done
[ -x /usr/lib/cni/bridge ] || k8s_die "CNI plugins missing (containernetworking-plugins): run scripts/k8s/build.sh"

pid_alive() { local f="$K8S_PID_DIR/$1.pid"; [ -f "$f" ] && proc_alive "$(cat "$f")"; }
node_ready() {
  [ "$(kctl get node "$K8S_NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
node_untainted() { [ -z "$(kctl get node "$K8S_NODE_NAME" -o 'jsonpath={.spec.taints}' 2>/dev/null)" ]; }
all_alive() { local c; for c in etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet; do pid_alive "$c" || return 1; done; }

kubelet_healthy() { curl -fsS --max-time 2 http://127.0.0.1:10248/healthz; }
if all_alive && kubelet_healthy >/dev/null 2>&1 && node_ready && kctl get namespace "$K8S_NAMESPACE" >/dev/null 2>&1; then
  k8s_log "already up (node $K8S_NODE_NAME Ready)"
  echo "$K8S_KUBECONFIG"; exit 0
fi

T0=$SECONDS
on_exit() { [ "$1" = 0 ] || k8s_log "up.sh failed; logs in $K8S_LOG_DIR; scripts/k8s/down.sh stops what started"; }
trap 'on_exit $?' EXIT
mkdir -p "$AERODROME_K8S_RUN" "$K8S_LOG_DIR" "$K8S_PID_DIR" "$PKI"

# start NAME CMD...: run in its own session, output to logs/NAME.log, pid to pids/NAME.pid.
start() {
  local name="$1"; shift
  if pid_alive "$name"; then k8s_log "$name already running"; return 0; fi
  k8s_log "starting $name"
  setsid "$@" >>"$K8S_LOG_DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$K8S_PID_DIR/$name.pid"
}
check_alive() { pid_alive "$1" || { tail -20 "$K8S_LOG_DIR/$1.log" >&2; k8s_die "$1 exited (log: $K8S_LOG_DIR/$1.log)"; }; }

# ---- PKI (openssl): one CA, serving certs with loopback SANs, client certs per component ----
mkcert() { # mkcert NAME SUBJECT [SANS]   (client+server usage; signed by the CA)
  local n="$1" subj="$2" sans="${3:-}"
  [ -f "$PKI/$n.crt" ] && return 0
  openssl genrsa -out "$PKI/$n.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$n.key" -subj "$subj" -out "$PKI/$n.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -z "$sans" ] || echo "subjectAltName=$sans"
  } > "$PKI/$n.ext"
  openssl x509 -req -in "$PKI/$n.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$n.ext" -out "$PKI/$n.crt" 2>/dev/null
  rm -f "$PKI/$n.csr" "$PKI/$n.ext"
}
if [ ! -f "$PKI/ca.crt" ]; then
  k8s_log "creating CA and certificates in $PKI"
  openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -nodes -key "$PKI/ca.key" -subj "/CN=aerodrome-local-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt" 2>/dev/null
fi
mkcert apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
mkcert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
mkcert admin "/O=system:masters/CN=aerodrome-admin"
mkcert controller-manager "/CN=system:kube-controller-manager"
mkcert scheduler "/CN=system:kube-scheduler"
mkcert kubelet-client "/O=system:nodes/CN=system:node:$K8S_NODE_NAME"
mkcert kubelet-serving "/CN=$K8S_NODE_NAME" "IP:127.0.0.1,DNS:localhost,DNS:$K8S_NODE_NAME"
[ -f "$PKI/sa.key" ] || { openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null; openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null; }
chmod 600 "$PKI"/*.key

mkkubeconfig() { # mkkubeconfig FILE CERTNAME
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: aerodrome-local
  cluster:
    server: $API
    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 < "$PKI/$2.crt")
    client-key-data: $(base64 -w0 < "$PKI/$2.key")
contexts:
- name: aerodrome-local
  context:
    cluster: aerodrome-local
    user: $2
    namespace: $K8S_NAMESPACE
current-context: aerodrome-local
KC
  chmod 600 "$1"
}
mkkubeconfig "$K8S_KUBECONFIG" admin
mkkubeconfig "$AERODROME_K8S_RUN/controller-manager.kubeconfig" controller-manager
mkkubeconfig "$AERODROME_K8S_RUN/scheduler.kubeconfig" scheduler
mkkubeconfig "$AERODROME_K8S_RUN/kubelet.kubeconfig" kubelet-client

# ---- etcd ----
start etcd etcd --name aerodrome --data-dir "$AERODROME_K8S_RUN/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "aerodrome=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn

# ---- containerd (own config; CRI with runc v2, cgroupfs, the local pause image, CNI) ----
CD="$AERODROME_K8S_RUN/containerd"
mkdir -p "$CD" "$AERODROME_K8S_RUN/cni/net.d"
cat > "$CD/config.toml" <<TOML
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$CONTAINERD_SOCK"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CD/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$K8S_PAUSE_IMAGE"
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$CD/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$AERODROME_K8S_RUN/cni/net.d"
    max_conf_num = 1
TOML
cat > "$AERODROME_K8S_RUN/cni/net.d/10-aerodrome.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "aerodrome",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false, "hairpinMode": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]],
              "dataDir": "$AERODROME_K8S_RUN/cni/ipam"}},
    {"type": "tuning", "sysctl": {"net.ipv6.conf.eth0.disable_ipv6": "1"}},
    {"type": "loopback"}
  ]
}
CNI
# Pre-create the pod bridge without IPv6 address generation, so the host gets no link-local address on it
# (the bridge plugin reuses it; the tuning step above turns IPv6 off on each pod's eth0).
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge || k8s_die "cannot create bridge $BRIDGE (needs CAP_NET_ADMIN)"
fi
ip link set "$BRIDGE" addrgenmode none 2>/dev/null || true
ip -6 addr flush dev "$BRIDGE" 2>/dev/null || true
ip link set "$BRIDGE" up
start containerd containerd --config "$CD/config.toml"

wait_for 30 etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health" || { check_alive etcd; k8s_die "etcd not healthy"; }
check_alive etcd
wait_for 30 containerd ctr --address "$CONTAINERD_SOCK" version || { check_alive containerd; k8s_die "containerd not answering"; }
check_alive containerd
"$HERE/image.sh" prepare
"$HERE/image.sh" import-all

# ---- kube-apiserver ----
start kube-apiserver "$K8S_BIN/kube-apiserver" \
  --advertise-address=127.0.0.1 --bind-address=127.0.0.1 --secure-port="$API_PORT" --insecure-port=0 \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP,Hostname \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --service-cluster-ip-range="$SERVICE_CIDR" --endpoint-reconciler-type=none \
  --allow-privileged=true --profiling=false --cert-dir="$AERODROME_K8S_RUN/apiserver-certs" --v=1
wait_for 60 kube-apiserver curl -fsS --cacert "$PKI/ca.crt" "$API/readyz" || { check_alive kube-apiserver; k8s_die "apiserver not ready (log: $K8S_LOG_DIR/kube-apiserver.log)"; }
k8s_log "apiserver ready after $((SECONDS - T0))s"

# ---- controller-manager (node lifecycle removes the not-ready taint; tokens for service accounts) ----
start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig="$AERODROME_K8S_RUN/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$AERODROME_K8S_RUN/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$AERODROME_K8S_RUN/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --port=0 --secure-port=10257 --cert-dir="$AERODROME_K8S_RUN/controller-manager-certs" \
  --controllers='*,-nodeipam,-service,-route,-cloud-node-lifecycle' --leader-elect=false \
  --node-monitor-period=2s --use-service-account-credentials=true --service-account-private-key-file="$PKI/sa.key" \
  --root-ca-file="$PKI/ca.crt" --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --v=1
start kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig="$AERODROME_K8S_RUN/scheduler.kubeconfig" \
  --authentication-kubeconfig="$AERODROME_K8S_RUN/scheduler.kubeconfig" \
  --authorization-kubeconfig="$AERODROME_K8S_RUN/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --port=0 --secure-port=10259 --cert-dir="$AERODROME_K8S_RUN/scheduler-certs" \
  --leader-elect=false --v=1

# ---- kubelet ----
KL="$AERODROME_K8S_RUN/kubelet"
mkdir -p "$KL"
cat > "$AERODROME_K8S_RUN/kubelet-config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$PKI/kubelet-serving.crt"
tlsPrivateKeyFile: "$PKI/kubelet-serving.key"
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
makeIPTablesUtilChains: false
hairpinMode: none
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# Local images cannot be pulled again: never garbage-collect them; evict only when nearly full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
runtimeRequestTimeout: 2m
# Recompute node status every 2 s (default 10 s): the node turns Ready ~8 s sooner after a start.
nodeStatusUpdateFrequency: 2s
maxPods: 60
YAML
start kubelet env AERODROME_K8S_ALLOW_LOOPBACK_NODE_IP=1 "$K8S_BIN/kubelet" \
  --config="$AERODROME_K8S_RUN/kubelet-config.yaml" --kubeconfig="$AERODROME_K8S_RUN/kubelet.kubeconfig" \
  --container-runtime=remote --container-runtime-endpoint="unix://$CONTAINERD_SOCK" \
  --node-ip=127.0.0.1 --hostname-override="$K8S_NODE_NAME" --root-dir="$KL" \
  --cert-dir="$AERODROME_K8S_RUN/kubelet-certs" --v=1

wait_for 60 "kubelet healthz" kubelet_healthy || { check_alive kubelet; k8s_die "kubelet not healthy (log: $K8S_LOG_DIR/kubelet.log)"; }
if ! wait_for "$READY_TIMEOUT" "node $K8S_NODE_NAME Ready" node_ready; then
  for c in kube-controller-manager kube-scheduler kubelet containerd; do check_alive "$c"; done
  tail -20 "$K8S_LOG_DIR/kubelet.log" >&2; k8s_die "node not Ready within ${READY_TIMEOUT}s"
fi
wait_for 60 "not-ready taint removal" node_untainted || k8s_log "node still tainted: $(kctl get node "$K8S_NODE_NAME" -o 'jsonpath={.spec.taints}')"
kctl get namespace "$K8S_NAMESPACE" >/dev/null 2>&1 || kctl create namespace "$K8S_NAMESPACE" >/dev/null
wait_for 60 "default service account in $K8S_NAMESPACE" kctl -n "$K8S_NAMESPACE" get serviceaccount default \
  || k8s_die "no default service account (controller-manager log: $K8S_LOG_DIR/kube-controller-manager.log)"
echo "$((SECONDS - T0))" > "$AERODROME_K8S_RUN/up-seconds"
k8s_log "up in $((SECONDS - T0))s: node $K8S_NODE_NAME Ready, namespace $K8S_NAMESPACE; kubeconfig:"
echo "$K8S_KUBECONFIG"
