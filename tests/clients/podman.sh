#!/usr/bin/env bash
# podman against a registry, with its own temporary storage (vfs): load an
# image from an OCI archive, push it, remove it locally, pull it back, check
# the image id, the digest and the files, and run it.
#
#   tests/clients/podman.sh HOST:PORT
set -euo pipefail
# shellcheck source=tests/clients/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
client_init podman "$@"
require_tools podman umoci jq curl tar

isolate_containers_config

REPO=$(uniq_repo img)
IMG=$HOST/$REPO
CONTENT="podman $REPO"

pm() {
  podman --root "$TMP/storage" --runroot "$TMP/run" --storage-driver vfs \
    --cgroup-manager cgroupfs --events-backend none \
    --tmpdir "$TMP/libpod-tmp" "$@"
}

build() {
  build_image "$TMP/src" img "$CONTENT"
  SRC_MANIFEST=$(layout_digest "$TMP/src" img)
  SRC_CONFIG=$(manifest_config "$TMP/src" "$SRC_MANIFEST")
  SRC_DIFF_ID=$(jq -r '.rootfs.diff_ids[0]' "$(layout_blob "$TMP/src" "$SRC_CONFIG")")
  tar -C "$TMP/src" -cf "$TMP/img.oci.tar" .
}

image_id() { pm image inspect --format '{{.Id}}' "$1"; }

load() {
  pm load -q -i "$TMP/img.oci.tar" > "$TMP/load.out"
  expect_match "$(cat "$TMP/load.out")" "localhost/img:latest" "name podman gives the loaded image"
  expect_eq "sha256:$(image_id localhost/img:latest)" "$SRC_CONFIG" "image id after load (= config digest)"
}

push() {
  pm tag localhost/img:latest "$IMG:v1"
  pm push -q --tls-verify=false --signature-policy "$POLICY" \
    --digestfile "$TMP/push.digest" "$IMG:v1"
  PUSHED=$(cat "$TMP/push.digest")
  expect_match "$PUSHED" '^sha256:[0-9a-f]{64}$' "digest podman reports for the push"
  expect_eq "$(manifest_digest_http "$REPO" v1)" "$PUSHED" "Docker-Content-Digest of HEAD $REPO:v1"
  # The pushed manifest names the same config, and its one layer unpacks to
  # the same diff id (podman may recompress the layer).
  reg_curl -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$HOST/v2/$REPO/manifests/$PUSHED" > "$TMP/pushed.json"
  expect_eq "$(sha256_of "$TMP/pushed.json")" "$PUSHED" "sha256 of the manifest served for $PUSHED"
  expect_eq "$(jq -r .config.digest "$TMP/pushed.json")" "$SRC_CONFIG" "config digest in the pushed manifest"
  expect_eq "$(jq -r '.layers | length' "$TMP/pushed.json")" 1 "layer count in the pushed manifest"
  reg_curl -L "http://$HOST/v2/$REPO/blobs/$(jq -r '.layers[0].digest' "$TMP/pushed.json")" > "$TMP/layer"
  expect_eq "$(sha256_of "$TMP/layer")" "$(jq -r '.layers[0].digest' "$TMP/pushed.json")" "sha256 of the pushed layer"
  expect_eq "$(gzip -dc < "$TMP/layer" | sha256sum | cut -d' ' -f1 | sed 's/^/sha256:/')" "$SRC_DIFF_ID" "diff id of the pushed layer"
}

remove() {
  pm rmi "$IMG:v1" localhost/img:latest > /dev/null
  expect_fail "image exists after rmi" pm image exists "$IMG:v1"
  expect_eq "$(pm images -q | wc -l)" 0 "images left after rmi"
}

pull() {
  pm pull -q --tls-verify=false --signature-policy "$POLICY" "$IMG:v1" > "$TMP/pull.out"
  expect_eq "sha256:$(cat "$TMP/pull.out")" "$SRC_CONFIG" "image id podman pull prints"
  expect_eq "sha256:$(image_id "$IMG:v1")" "$SRC_CONFIG" "image id after the pull"
  expect_eq "$(pm image inspect --format '{{.Digest}}' "$IMG:v1")" "$PUSHED" "image digest after the pull"
  pm image inspect --format '{{json .RepoDigests}}' "$IMG:v1" > "$TMP/repodigests"
  expect_eq "$(jq -r --arg d "$IMG@$PUSHED" 'index($d) != null' "$TMP/repodigests")" true "RepoDigests contains $IMG@$PUSHED"
}

files() {
  local mnt
  mnt=$(pm image mount "$IMG:v1")
  on_exit "podman --root '$TMP/storage' --runroot '$TMP/run' --storage-driver vfs image unmount --all"
  check_rootfs "$mnt" "$CONTENT"
  pm image unmount "$IMG:v1" > /dev/null
}

run() {
  # runc with cgroupfs and ulimits no higher than ours: the default (crun,
  # raised RLIMIT_NOFILE/NPROC) is refused in unprivileged sandboxes.
  local out
  out=$(pm run --rm --network none --runtime runc \
    --ulimit "nofile=1024:1024" --ulimit "nproc=1024:1024" \
    "$IMG:v1" /bin/cat /etc/berth-test)
  expect_eq "$out" "$CONTENT" "cat /etc/berth-test in a container of the pulled image"
  out=$(pm run --rm --network none --runtime runc \
    --ulimit "nofile=1024:1024" --ulimit "nproc=1024:1024" "$IMG:v1")
  expect_eq "$out" "$CONTENT" "the image's default command"
}

pull_by_digest() {
  pm rmi -a -f > /dev/null
  pm pull -q --tls-verify=false --signature-policy "$POLICY" "$IMG@$PUSHED" > /dev/null
  expect_eq "sha256:$(image_id "$IMG@$PUSHED")" "$SRC_CONFIG" "image id pulled by digest"
  expect_fail "pull of a tag that does not exist" \
    pm pull -q --tls-verify=false --signature-policy "$POLICY" "$IMG:no-such-tag"
  expect_fail "pull of a repository that does not exist" \
    pm pull -q --tls-verify=false --signature-policy "$POLICY" "$HOST/$(uniq_repo never-pushed):v1"
}

run_step build build
run_step load load
run_step login client_login pm
run_step push push
run_step remove remove
run_step pull pull
run_step files files
run_step run run
run_step pull-by-digest pull_by_digest
client_done
