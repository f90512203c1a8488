#!/usr/bin/env bash
# Local images without a registry: build a docker-archive from a rootfs folder (tar + sha256sum, no
# podman/docker) into the image cache, and import it into containerd's k8s.io namespace. Pods use
# them with imagePullPolicy: Never.
#
#   image.sh build NAME[:TAG] ROOTFS_DIR [CMD ARG...]  archive ROOTFS_DIR as NAME (default CMD /bin/sh)
#   image.sh busybox        docker.io/aerodrome/busybox:local   (busybox-static, every applet linked)
#   image.sh host-runtime   docker.io/aerodrome/host-runtime:local (empty /usr + mount points: runs the
#                           host's own binaries, e.g. the project .venv, through hostPath volumes)
#   image.sh pause          docker.io/aerodrome/pause:local     (the static pause binary)
#   image.sh debian-python  docker.io/aerodrome/debian-python:local (debootstrap minbase + python3; the
#                           rootfs tarball is cached; optional, self-contained, ~2-4 min the first time)
#   image.sh prepare        pause, busybox and host-runtime, each when its archive is missing or stale
#   image.sh import TAR...  import archives (containerd must be up: scripts/k8s/up.sh)
#   image.sh import-all     import every archive in the image cache
#   image.sh list           images containerd knows in k8s.io
# Each archive is written to $K8S_IMAGES; it is imported at once when containerd is running.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

containerd_up() { [ -S "$CONTAINERD_SOCK" ] && ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }
archive_path() { local n="${1#docker.io/}"; echo "$K8S_IMAGES/$(echo "$n" | tr '/:' '__').tar"; }
json_str() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; printf '"%s"' "$s"; }

# build_archive NAME ROOTFS CMD...: a one-layer docker-archive (reproducible: sorted, mtime 0).
build_archive() {
  local name="$1" rootfs="$2"; shift 2
  [ -d "$rootfs" ] || k8s_die "rootfs folder $rootfs not found"
  [ "$#" -gt 0 ] || set -- /bin/sh
  case "$name" in *:*) ;; *) name="$name:latest" ;; esac
  local short="${name#docker.io/}" out work diff cfgsha cmd="" a
  out="$(archive_path "$short")"; mkdir -p "$K8S_IMAGES"
  work="$(mktemp -d)"
  tar -C "$rootfs" --sort=name --mtime=@0 --numeric-owner -cf "$work/layer.tar" .
  diff="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
  mkdir "$work/$diff"; mv "$work/layer.tar" "$work/$diff/layer.tar"
  for a in "$@"; do cmd="${cmd:+$cmd,}$(json_str "$a")"; done
  printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":[%s],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$cmd" "$diff" > "$work/config.json"
  cfgsha="$(sha256sum "$work/config.json" | cut -d' ' -f1)"; mv "$work/config.json" "$work/$cfgsha.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$cfgsha" "$short" "$diff" > "$work/manifest.json"
  tar -C "$work" --sort=name --mtime=@0 --numeric-owner -cf "$out.tmp" manifest.json "$cfgsha.json" "$diff"
  mv "$out.tmp" "$out"; rm -rf "$work"
  k8s_log "image $short -> $out ($(du -h "$out" | cut -f1))"
  if containerd_up; then import_archives "$out"; fi
}

import_archives() {
  containerd_up || k8s_die "containerd is not running (scripts/k8s/up.sh)"
  local t
  for t in "$@"; do
    timeout 120 ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$t" >/dev/null \
      || k8s_die "import of $t failed"
  done
}

base_dirs() { # minimal FHS skeleton with root's passwd entry
  local r="$1"
  mkdir -p "$r"/{etc,tmp,root,proc,sys,dev,run,var/tmp}
  chmod 1777 "$r/tmp" "$r/var/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$r/etc/group"
}

img_busybox() {
  local bb r; bb="$(command -v busybox || true)"
  [ -n "$bb" ] && "$bb" --list >/dev/null 2>&1 || k8s_die "busybox-static is not installed (build.sh installs it)"
  file -L "$bb" 2>/dev/null | grep -q 'dynamically' && k8s_die "$bb is dynamically linked; need busybox-static"
  r="$(mktemp -d)"; base_dirs "$r"; mkdir -p "$r/bin"
  cp "$(readlink -f "$bb")" "$r/bin/busybox"
  local a; for a in $("$bb" --list); do [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"; done
  ln -s bin "$r/sbin"; mkdir -p "$r/usr"; ln -s ../bin "$r/usr/bin"
  # Debian's busybox-static has no pgrep, which KPO's xcom sidecar kill runs (`pgrep -u UID -f sh`).
  [ -e "$r/bin/pgrep" ] || cat > "$r/bin/pgrep" <<'SH'
#!/bin/sh
# Minimal pgrep for this image: pgrep [-u UID] [-f] PATTERN (substring match, not a regex).
uid=""; full=0
while [ "$#" -gt 1 ]; do
  case "$1" in -u) uid="$2"; shift 2 ;; -f) full=1; shift ;; *) shift ;; esac
done
pat="$1"; found=1
for d in /proc/[0-9]*; do
  pid="${d##*/}"; [ "$pid" = "$$" ] && continue
  if [ -n "$uid" ]; then [ "$(stat -c %u "$d" 2>/dev/null)" = "$uid" ] || continue; fi
  if [ "$full" = 1 ]; then s="$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)"; else read -r s < "$d/comm" 2>/dev/null || continue; fi
  case "$s" in *"$pat"*) echo "$pid"; found=0 ;; esac
done
exit "$found"
SH
  chmod 0755 "$r/bin/pgrep"
  build_archive "$K8S_BUSYBOX_IMAGE" "$r" /bin/sh
  rm -rf "$r"
}

# No binaries at all: bin/lib/lib64/sbin are symlinks into /usr (like merged-/usr Debian), which the pod
# mounts from the host read-only, together with the project tree and its venv's base interpreter
# (see scripts/k8s/kpo_local.py). A few /etc files are copied from the host at build time.
img_host_runtime() {
  local r f; r="$(mktemp -d)"; base_dirs "$r"
  mkdir -p "$r/usr" "$r/work" "$r/opt"
  ln -s usr/bin "$r/bin"; ln -s usr/sbin "$r/sbin"; ln -s usr/lib "$r/lib"; ln -s usr/lib64 "$r/lib64"
  for f in passwd group nsswitch.conf ld.so.cache ld.so.conf localtime timezone os-release debian_version \
           ca-certificates.conf host.conf; do
    [ -e "/etc/$f" ] && cp -aL "/etc/$f" "$r/etc/$f"
  done
  [ -d /etc/ld.so.conf.d ] && cp -a /etc/ld.so.conf.d "$r/etc/"
  [ -d /etc/ssl ] && cp -a /etc/ssl "$r/etc/"   # certs are symlinks into /usr/share (mounted)
  rm -rf "$r/etc/ssl/private"
  build_archive "$K8S_HOSTRT_IMAGE" "$r" /bin/sh
  rm -rf "$r"
}

# A self-contained Debian bookworm (minbase + python3, ~40 MB compressed) from debootstrap; the rootfs
# tarball is cached, so only the first build downloads. For pods that must not see the host's files.
img_debian_python() {
  local tgz="$AERODROME_K8S_CACHE/rootfs/debian-python3.tar.gz" r
  if [ ! -f "$tgz" ]; then
    command -v debootstrap >/dev/null || { k8s_log "installing debootstrap"
      DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends debootstrap >/dev/null; }
    r="$(mktemp -d)"
    k8s_log "debootstrap bookworm minbase + python3 (downloads ~30 MB of packages)"
    timeout 1200 debootstrap --variant=minbase --include=python3 bookworm "$r" "$(debian_mirror)" \
      > "$AERODROME_K8S_CACHE/debootstrap.log" 2>&1 || { rm -rf "$r"; k8s_die "debootstrap failed (log: $AERODROME_K8S_CACHE/debootstrap.log)"; }
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/var/log/*.log
    mkdir -p "$(dirname "$tgz")"
    tar -C "$r" --numeric-owner -czf "$tgz.tmp" . && mv "$tgz.tmp" "$tgz"
    rm -rf "$r"
  fi
  r="$(mktemp -d)"; tar -C "$r" --numeric-owner -xzf "$tgz"
  build_archive "$K8S_DEBPY_IMAGE" "$r" /usr/bin/python3
  rm -rf "$r"
}

img_pause() {
  [ -x "$K8S_BIN/pause" ] || k8s_die "$K8S_BIN/pause missing (scripts/k8s/build.sh)"
  local r; r="$(mktemp -d)"; cp "$K8S_BIN/pause" "$r/pause"
  build_archive "$K8S_PAUSE_IMAGE" "$r" /pause
  rm -rf "$r"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  build)        [ "$#" -ge 2 ] || k8s_die "usage: image.sh build NAME[:TAG] ROOTFS_DIR [CMD...]"; build_archive "$@" ;;
  busybox)      img_busybox ;;
  host-runtime) img_host_runtime ;;
  pause)        img_pause ;;
  debian-python) img_debian_python ;;
  prepare)  # (re)build an archive that is missing or older than this script
    fresh() { [ -f "$1" ] && [ "$1" -nt "$HERE/image.sh" ]; }
    fresh "$(archive_path "$K8S_PAUSE_IMAGE")" || img_pause
    fresh "$(archive_path "$K8S_BUSYBOX_IMAGE")" || img_busybox
    fresh "$(archive_path "$K8S_HOSTRT_IMAGE")" || img_host_runtime ;;
  import)       import_archives "$@" ;;
  import-all)   shopt -s nullglob; set -- "$K8S_IMAGES"/*.tar; [ "$#" -eq 0 ] || import_archives "$@" ;;
  list)         ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q ;;
  *)            awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; [ -z "$cmd" ] || exit 2 ;;
esac
