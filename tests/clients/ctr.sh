#!/usr/bin/env bash
# containerd's ctr against a registry. The test runs its own containerd (temp
# root, state and unix socket, CRI plugin off; the machine's containerd, if
# any, is not touched) and kills it on exit, failed or not.
#
# Images are put in the registry with skopeo, pulled with ctr (unpacked with
# the native snapshotter: overlayfs is not dependable in sandboxes), checked
# (digest, files), pushed with ctr to another repository and checked with
# skopeo; a multi-arch index is pulled with --all-platforms and pushed on;
# an image imported from an OCI archive is pushed.
#
#   tests/clients/ctr.sh HOST:PORT
set -euo pipefail
# shellcheck source=tests/clients/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
client_init ctr "$@"
require_tools containerd ctr skopeo umoci jq curl tar
isolate_containers_config

REPO=$(uniq_repo src)
REPO_PUSH=$(uniq_repo pushed)
REPO_IMPORT=$(uniq_repo imported)
NS=berth-test
SNAP=native

# A unix socket path must be short (108 bytes): fall back to /tmp.
SOCKDIR=$TMP
if [ "${#TMP}" -gt 70 ]; then
  SOCKDIR=$(mktemp -d /tmp/berth-ctr-sock.XXXXXX)
  on_exit "rm -rf '$SOCKDIR'"
fi
SOCK=$SOCKDIR/containerd.sock
CTRD_PID=""

# ctr has no login: credentials go with each pull and push (containerd then
# runs the token flow itself, with the OAuth2 POST form).
CTR_AUTH=()
if [ -n "${BERTH_REGISTRY_USER:-}" ]; then
  CTR_AUTH=(--user "$BERTH_REGISTRY_USER:$BERTH_REGISTRY_PASSWORD")
fi

c() { ctr --address "$SOCK" --namespace "$NS" --timeout 120s "$@"; }
sk() { skopeo --policy "$POLICY" --command-timeout 120s "$@"; }

stop_containerd() {
  [ -n "$CTRD_PID" ] || return 0
  kill -TERM "$CTRD_PID" 2>/dev/null || true
  # (kill -0 succeeds on a zombie: look at the state instead.)
  for _ in $(seq 100); do
    case "$(ps -o stat= -p "$CTRD_PID" 2>/dev/null)" in
      "" | Z*) break ;;
    esac
    sleep 0.1
  done
  kill -KILL "$CTRD_PID" 2>/dev/null || true
  wait "$CTRD_PID" 2>/dev/null || true
  CTRD_PID=""
  # Anything still mounted under our dirs (a failed `images mount`).
  awk -v t="$TMP" 'index($2, t) == 1 {print $2}' /proc/self/mounts | sort -r | xargs -r -n1 umount -l
}

start_containerd() {
  local d=$TMP/containerd
  mkdir -p "$d/root" "$d/state" "$d/opt"
  cat > "$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.restart",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
EOF
  containerd --config "$d/config.toml" > "$TMP/containerd.log" 2>&1 &
  CTRD_PID=$!
  on_exit stop_containerd
  for _ in $(seq 100); do
    if ctr --address "$SOCK" version > /dev/null 2>&1; then
      return 0
    fi
    kill -0 "$CTRD_PID" 2>/dev/null || { tail -20 "$TMP/containerd.log" >&2; die "containerd exited"; }
    sleep 0.1
  done
  tail -20 "$TMP/containerd.log" >&2
  die "containerd did not answer on $SOCK within 10 s"
}

# The pull-only robot is refused a push.
pull_only_robot() {
  if [ -z "${BERTH_READER_USER:-}" ]; then
    log "   (no BERTH_READER_USER)"
    return 0
  fi
  c images tag "$HOST/$REPO:img" "$HOST/$REPO_PUSH:by-reader" > /dev/null
  # ctr reports the refusal only as "read/write on closed pipe": check the
  # failure, and that nothing arrived.
  if c images push --plain-http --user "$BERTH_READER_USER:$BERTH_READER_PASSWORD" \
    "$HOST/$REPO_PUSH:by-reader" > "$TMP/reader-push.out" 2>&1; then
    die "a push by the pull-only robot succeeded"
  fi
  expect_eq "$(http_status HEAD "http://$HOST/v2/$REPO_PUSH/manifests/by-reader")" 404 \
    "HEAD of the tag the pull-only robot tried to push"
}

# image_digest REF: the target digest ctr records for REF.
image_digest() { c images ls | awk -v r="$1" '$1 == r {print $3}'; }

seed() {
  build_image "$TMP/src" img "ctr $REPO"
  build_multiarch "$TMP/src" multi "ctr multi $REPO"
  IMG=$(layout_digest "$TMP/src" img)
  MULTI=$(layout_digest "$TMP/src" multi)
  sk copy --quiet --dest-tls-verify=false --preserve-digests "oci:$TMP/src:img" "docker://$HOST/$REPO:img"
  sk copy --quiet --all --dest-tls-verify=false --preserve-digests "oci:$TMP/src:multi" "docker://$HOST/$REPO:multi"
}

start() {
  start_containerd
  c version > /dev/null
}

pull() {
  c images pull --plain-http "${CTR_AUTH[@]}" --snapshotter "$SNAP" "$HOST/$REPO:img" > "$TMP/pull.out"
  expect_eq "$(image_digest "$HOST/$REPO:img")" "$IMG" "digest ctr records for the pulled image"
  # Every blob in containerd's content store matches its digest.
  local cfg layer
  cfg=$(manifest_config "$TMP/src" "$IMG")
  layer=$(manifest_layers "$TMP/src" "$IMG")
  for d in "$IMG" "$cfg" $layer; do
    c content get "$d" | sha256sum | cut -d' ' -f1 | sed 's/^/sha256:/' > "$TMP/got"
    expect_file_content "$TMP/got" "$d" "content of $d in containerd"
  done
  # Unpacked: the file is in the image's filesystem.
  mkdir -p "$TMP/mnt"
  c images mount --snapshotter "$SNAP" "$HOST/$REPO:img" "$TMP/mnt" > /dev/null
  check_rootfs "$TMP/mnt" "ctr $REPO"
  c images unmount "$TMP/mnt" > /dev/null
  expect_fail "pull of a tag that does not exist" \
    c images pull --plain-http "${CTR_AUTH[@]}" --snapshotter "$SNAP" "$HOST/$REPO:no-such-tag"
}

push() {
  c images tag "$HOST/$REPO:img" "$HOST/$REPO_PUSH:img" > /dev/null
  c images push --plain-http "${CTR_AUTH[@]}" "$HOST/$REPO_PUSH:img" > "$TMP/push.out"
  expect_eq "$(manifest_digest_http "$REPO_PUSH" img)" "$IMG" "Docker-Content-Digest of HEAD $REPO_PUSH:img"
  sk copy --quiet --src-tls-verify=false "docker://$HOST/$REPO_PUSH:img" "oci:$TMP/check-push:img"
  expect_eq "$(layout_digest "$TMP/check-push" img)" "$IMG" "digest skopeo pulls from $REPO_PUSH"
  verify_layout_blobs "$TMP/check-push"
  unpack_image "$TMP/check-push" "$IMG" "$TMP/rootfs-push"
  check_rootfs "$TMP/rootfs-push" "ctr $REPO"
}

pull_push_multi() {
  c images pull --plain-http "${CTR_AUTH[@]}" --all-platforms --snapshotter "$SNAP" "$HOST/$REPO:multi" > "$TMP/pull-multi.out"
  expect_eq "$(image_digest "$HOST/$REPO:multi")" "$MULTI" "digest ctr records for the index"
  local arch d
  for arch in amd64 arm64; do
    d=$(layout_digest "$TMP/src" "multi-$arch")
    c content get "$d" > "$TMP/m-$arch"
    expect_eq "$(sha256_of "$TMP/m-$arch")" "$d" "the $arch manifest in containerd"
    for l in $(manifest_layers "$TMP/src" "$d"); do
      c content get "$l" | sha256sum | cut -d' ' -f1 | sed 's/^/sha256:/' > "$TMP/got"
      expect_file_content "$TMP/got" "$l" "the $arch layer in containerd"
    done
  done
  c images tag "$HOST/$REPO:multi" "$HOST/$REPO_PUSH:multi" > /dev/null
  c images push --plain-http "${CTR_AUTH[@]}" "$HOST/$REPO_PUSH:multi" > "$TMP/push-multi.out"
  expect_eq "$(manifest_digest_http "$REPO_PUSH" multi)" "$MULTI" "Docker-Content-Digest of HEAD $REPO_PUSH:multi"
  sk copy --quiet --all --src-tls-verify=false "docker://$HOST/$REPO_PUSH:multi" "oci:$TMP/check-multi:multi"
  expect_eq "$(layout_digest "$TMP/check-multi" multi)" "$MULTI" "index digest skopeo pulls from $REPO_PUSH"
  verify_layout_blobs "$TMP/check-multi"
  for arch in amd64 arm64; do
    d=$(layout_digest "$TMP/src" "multi-$arch")
    [ -f "$(layout_blob "$TMP/check-multi" "$d")" ] || die "the $arch manifest is missing after ctr push"
    unpack_image "$TMP/check-multi" "$d" "$TMP/rootfs-multi-$arch"
    check_rootfs "$TMP/rootfs-multi-$arch" "ctr multi $REPO $arch"
  done
}

import_push() {
  # An image that containerd got from an archive, not from this registry.
  build_image "$TMP/imp" imported "ctr imported $REPO"
  local d
  d=$(layout_digest "$TMP/imp" imported)
  tar -C "$TMP/imp" -cf "$TMP/imported.tar" .
  c images import --snapshotter "$SNAP" --base-name "$HOST/$REPO_IMPORT" --digests "$TMP/imported.tar" > /dev/null
  c images tag "$(c images ls -q | grep -F "$HOST/$REPO_IMPORT" | head -n1)" "$HOST/$REPO_IMPORT:v1" > /dev/null
  expect_eq "$(image_digest "$HOST/$REPO_IMPORT:v1")" "$d" "digest of the imported image"
  c images push --plain-http "${CTR_AUTH[@]}" "$HOST/$REPO_IMPORT:v1" > /dev/null
  expect_eq "$(manifest_digest_http "$REPO_IMPORT" v1)" "$d" "Docker-Content-Digest of HEAD $REPO_IMPORT:v1"
  sk copy --quiet --src-tls-verify=false "docker://$HOST/$REPO_IMPORT:v1" "oci:$TMP/check-import:v1"
  verify_layout_blobs "$TMP/check-import"
  unpack_image "$TMP/check-import" "$d" "$TMP/rootfs-import"
  check_rootfs "$TMP/rootfs-import" "ctr imported $REPO"
}

stop() {
  local pid=$CTRD_PID
  stop_containerd
  expect_fail "containerd still running after stop" kill -0 "$pid"
}

run_step login client_login sk
run_step seed seed
run_step start-containerd start
run_step pull pull
run_step push push
run_step pull-only-robot pull_only_robot
run_step pull-push-multi pull_push_multi
run_step import-push import_push
run_step stop-containerd stop
client_done
