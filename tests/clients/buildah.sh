#!/usr/bin/env bash
# buildah against a registry, with its own temporary storage (vfs): an image
# built from scratch (busybox + a file), committed, pushed as OCI and as
# Docker schema 2, checked with skopeo (the layer holds the files), pulled
# back; and a manifest list of two images pushed with `manifest push --all`.
#
#   tests/clients/buildah.sh HOST:PORT
set -euo pipefail
# shellcheck source=tests/clients/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
client_init buildah "$@"
require_tools buildah skopeo jq curl tar
isolate_containers_config

REPO=$(uniq_repo img)
IMG=$HOST/$REPO
CONTENT="buildah $REPO"

bh() { buildah --root "$TMP/storage" --runroot "$TMP/run" --storage-driver vfs "$@"; }
sk() { skopeo --policy "$POLICY" --command-timeout 120s "$@"; }

# verify_pushed REF DIGEST CONTENT ARCH: the manifest REF serves has DIGEST;
# copied with skopeo to a `dir:` (which keeps any manifest type byte for
# byte), its blobs have their digests and its layers hold our files.
verify_pushed() {
  local ref=$1 digest=$2 content=$3 arch=$4 dir l cfg
  dir=$(mktemp -d "$TMP/verify.XXXXXX")
  expect_eq "$(sk inspect --tls-verify=false --format '{{.Digest}}' "docker://$ref")" "$digest" "skopeo inspect digest of $ref"
  sk copy --quiet --src-tls-verify=false --preserve-digests "docker://$ref" "dir:$dir/img"
  expect_eq "$(sha256_of "$dir/img/manifest.json")" "$digest" "sha256 of the manifest of $ref"
  cfg=$(jq -r .config.digest "$dir/img/manifest.json")
  expect_eq "$(sha256_of "$dir/img/${cfg#sha256:}")" "$cfg" "sha256 of the config of $ref"
  expect_eq "$(jq -r .architecture "$dir/img/${cfg#sha256:}")" "$arch" "architecture in the config of $ref"
  mkdir "$dir/rootfs"
  for l in $(jq -r '.layers[].digest' "$dir/img/manifest.json"); do
    expect_eq "$(sha256_of "$dir/img/${l#sha256:}")" "$l" "sha256 of layer $l of $ref"
    tar -xf "$dir/img/${l#sha256:}" -C "$dir/rootfs"
  done
  check_rootfs "$dir/rootfs" "$content"
}

build() {
  local ctr
  make_rootfs "$TMP/rootfs" "$CONTENT"
  ctr=$(bh from --quiet scratch)
  bh copy --quiet "$ctr" "$TMP/rootfs/" / > /dev/null
  bh config --cmd '["/bin/cat","/etc/berth-test"]' --os linux --arch amd64 \
    --label org.opencontainers.image.title=berth-test "$ctr"
  IMAGE_ID=$(bh commit --quiet --format oci --rm "$ctr" localhost/berth-img)
  expect_match "$IMAGE_ID" '^[0-9a-f]{64}$' "image id buildah commit prints"
}

push_oci() {
  bh push --quiet --tls-verify=false --signature-policy "$POLICY" \
    --digestfile "$TMP/oci.digest" localhost/berth-img "docker://$IMG:oci"
  OCI_DIGEST=$(cat "$TMP/oci.digest")
  expect_eq "$(manifest_digest_http "$REPO" oci)" "$OCI_DIGEST" "Docker-Content-Digest of HEAD $REPO:oci"
  sk inspect --tls-verify=false --raw "docker://$IMG:oci" > "$TMP/oci.raw"
  expect_eq "$(jq -r .mediaType "$TMP/oci.raw")" "application/vnd.oci.image.manifest.v1+json" "mediaType of the OCI push"
  expect_eq "$(jq -r .config.digest "$TMP/oci.raw")" "sha256:$IMAGE_ID" "config digest (= image id) of the OCI push"
  verify_pushed "$IMG:oci" "$OCI_DIGEST" "$CONTENT" amd64
}

push_docker() {
  bh push --quiet --tls-verify=false --signature-policy "$POLICY" --format v2s2 \
    --digestfile "$TMP/docker.digest" localhost/berth-img "docker://$IMG:docker"
  DOCKER_DIGEST=$(cat "$TMP/docker.digest")
  expect_ne "$DOCKER_DIGEST" "$OCI_DIGEST" "the Docker and OCI manifests"
  expect_eq "$(manifest_digest_http "$REPO" docker)" "$DOCKER_DIGEST" "Docker-Content-Digest of HEAD $REPO:docker"
  sk inspect --tls-verify=false --raw "docker://$IMG:docker" > "$TMP/docker.raw"
  expect_eq "$(jq -r .mediaType "$TMP/docker.raw")" "application/vnd.docker.distribution.manifest.v2+json" "mediaType of the Docker push"
  expect_eq "$(jq -r .config.mediaType "$TMP/docker.raw")" "application/vnd.docker.container.image.v1+json" "config mediaType of the Docker push"
  expect_eq "$(jq -r '.layers[0].mediaType' "$TMP/docker.raw")" "application/vnd.docker.image.rootfs.diff.tar.gzip" "layer mediaType of the Docker push"
  verify_pushed "$IMG:docker" "$DOCKER_DIGEST" "$CONTENT" amd64
  # The registry answers with the Docker media type for it.
  reg_curl -o /dev/null -D "$TMP/docker.headers" \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$HOST/v2/$REPO/manifests/docker"
  expect_match "$(tr -d '\r' < "$TMP/docker.headers" | awk -F': ' 'tolower($1)=="content-type"{print $2}')" \
    '^application/vnd\.docker\.distribution\.manifest\.v2\+json' "Content-Type of GET $REPO:docker"
}

pull_back() {
  bh rmi -a -f > /dev/null
  expect_eq "$(bh images -q | wc -l)" 0 "images left after rmi -a"
  bh pull --quiet --tls-verify=false --signature-policy "$POLICY" "docker://$IMG:oci" > "$TMP/pull.out"
  expect_eq "$(cat "$TMP/pull.out")" "$IMAGE_ID" "image id buildah pull prints"
  # A container from the pulled image has the files.
  local ctr mnt
  ctr=$(bh from --quiet --pull-never "$IMG:oci")
  mnt=$(bh mount "$ctr")
  check_rootfs "$mnt" "$CONTENT"
  bh umount "$ctr" > /dev/null
  bh rm "$ctr" > /dev/null
}

manifest_list() {
  local ctr
  # A second image: the same files, another /etc/berth-test, arm64 config.
  make_rootfs "$TMP/rootfs-arm64" "$CONTENT arm64"
  ctr=$(bh from --quiet scratch)
  bh copy --quiet "$ctr" "$TMP/rootfs-arm64/" / > /dev/null
  bh config --os linux --arch arm64 "$ctr"
  bh commit --quiet --format oci --rm "$ctr" localhost/berth-img-arm64 > /dev/null
  bh manifest create localhost/berth-list > /dev/null
  bh manifest add localhost/berth-list "$IMG:oci" > /dev/null
  bh manifest add --arch arm64 localhost/berth-list localhost/berth-img-arm64 > /dev/null
  bh manifest push --quiet --all --format oci --tls-verify=false --signature-policy "$POLICY" \
    --digestfile "$TMP/list.digest" localhost/berth-list "docker://$IMG:list"
  LIST_DIGEST=$(cat "$TMP/list.digest")
  expect_eq "$(manifest_digest_http "$REPO" list)" "$LIST_DIGEST" "Docker-Content-Digest of HEAD $REPO:list"
  sk inspect --tls-verify=false --raw "docker://$IMG:list" > "$TMP/list.raw"
  expect_eq "$(sha256_of "$TMP/list.raw")" "$LIST_DIGEST" "sha256 of the index served"
  expect_eq "$(jq -r .mediaType "$TMP/list.raw")" "application/vnd.oci.image.index.v1+json" "mediaType of the index"
  expect_eq "$(jq -r '[.manifests[].platform.architecture] | sort | join(",")' "$TMP/list.raw")" "amd64,arm64" "platforms in the index"
  verify_pushed "$IMG@$(jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest' "$TMP/list.raw")" \
    "$(jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest' "$TMP/list.raw")" "$CONTENT" amd64
  verify_pushed "$IMG@$(jq -r '.manifests[] | select(.platform.architecture == "arm64") | .digest' "$TMP/list.raw")" \
    "$(jq -r '.manifests[] | select(.platform.architecture == "arm64") | .digest' "$TMP/list.raw")" "$CONTENT arm64" arm64
  # skopeo picks the arm64 image out of the index.
  sk --override-arch arm64 inspect --tls-verify=false "docker://$IMG:list" > "$TMP/list-arm64.json"
  expect_eq "$(jq -r .Architecture "$TMP/list-arm64.json")" arm64 "architecture skopeo picks for arm64"
  expect_eq "$(sk --override-arch arm64 inspect --tls-verify=false --config "docker://$IMG:list" | jq -r .architecture)" arm64 "config of the arm64 image"
}

run_step build build
run_step login client_login bh
run_step push-oci push_oci
run_step push-docker push_docker
run_step pull pull_back
run_step manifest-list manifest_list
client_done
