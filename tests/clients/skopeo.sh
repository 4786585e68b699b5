#!/usr/bin/env bash
# skopeo against a registry: OCI layout -> registry -> OCI layout with equal
# digests, a multi-arch index with --all, inspect --raw, list-tags, copies
# inside the registry (same and cross repository), and delete.
#
#   tests/clients/skopeo.sh HOST:PORT
set -euo pipefail
# shellcheck source=tests/clients/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
client_init skopeo "$@"
require_tools skopeo umoci jq curl sha256sum tar

isolate_containers_config

SRC=$TMP/src
REPO=$(uniq_repo img)
REPO2=$(uniq_repo other)
REG=docker://$HOST

sk() { skopeo --policy "$POLICY" --command-timeout 120s "$@"; }
copy() { sk copy --quiet --src-tls-verify=false --dest-tls-verify=false "$@"; }
insp() { sk inspect --tls-verify=false "$@"; }

build() {
  build_image "$SRC" v1 "skopeo v1 $REPO"
  build_image "$SRC" v2 "skopeo v2 $REPO"
  build_multiarch "$SRC" multi "skopeo multi $REPO"
  V1=$(layout_digest "$SRC" v1)
  V2=$(layout_digest "$SRC" v2)
  MULTI=$(layout_digest "$SRC" multi)
  MULTI_ARM64=$(layout_digest "$SRC" multi-arm64)
  expect_ne "$V1" "$V2" "the two test images"
}

# A pull-only robot pulls, and is refused a push.
pull_only_robot() {
  if [ -z "${BERTH_READER_USER:-}" ]; then
    log "   (no BERTH_READER_USER)"
    return 0
  fi
  local auth=$TMP/reader-auth.json
  printf '{"auths":{}}\n' > "$auth"
  printf '%s' "$BERTH_READER_PASSWORD" |
    sk login --tls-verify=false --authfile "$auth" -u "$BERTH_READER_USER" --password-stdin "$HOST" > /dev/null
  sk copy --quiet --src-tls-verify=false --authfile "$auth" "$REG/$REPO:v1" "oci:$TMP/reader:v1"
  expect_eq "$(layout_digest "$TMP/reader" v1)" "$V1" "digest the pull-only robot pulled"
  expect_refused "a push by the pull-only robot" \
    sk copy --quiet --dest-tls-verify=false --authfile "$auth" "oci:$SRC:v2" "$REG/$REPO:by-reader"
  expect_eq "$(http_status HEAD "http://$HOST/v2/$REPO/manifests/by-reader")" 404 \
    "HEAD of the tag the pull-only robot tried to push"
}

push_single() {
  copy --preserve-digests --digestfile "$TMP/v1.digest" "oci:$SRC:v1" "$REG/$REPO:v1"
  expect_eq "$(cat "$TMP/v1.digest")" "$V1" "digest skopeo reports for the push of v1"
  expect_eq "$(manifest_digest_http "$REPO" v1)" "$V1" "Docker-Content-Digest of HEAD $REPO:v1"
  copy --preserve-digests "oci:$SRC:v2" "$REG/$REPO:v2"
  expect_eq "$(manifest_digest_http "$REPO" v2)" "$V2" "Docker-Content-Digest of HEAD $REPO:v2"
}

pull_single() {
  local dst=$TMP/pulled
  copy "$REG/$REPO:v1" "oci:$dst:v1"
  expect_eq "$(layout_digest "$dst" v1)" "$V1" "manifest digest after the round trip"
  expect_eq "$(manifest_config "$dst" "$V1")" "$(manifest_config "$SRC" "$V1")" "config digest after the round trip"
  expect_eq "$(manifest_layers "$dst" "$V1")" "$(manifest_layers "$SRC" "$V1")" "layer digests after the round trip"
  cmp -s "$(layout_blob "$dst" "$V1")" "$(layout_blob "$SRC" "$V1")" || die "manifest bytes differ after the round trip"
  verify_layout_blobs "$dst"
  unpack_image "$dst" "$V1" "$TMP/rootfs-v1"
  check_rootfs "$TMP/rootfs-v1" "skopeo v1 $REPO"
}

pull_by_digest() {
  local dst=$TMP/by-digest
  copy "$REG/$REPO@$V2" "oci:$dst:x"
  expect_eq "$(layout_digest "$dst" x)" "$V2" "manifest digest pulled by digest"
  verify_layout_blobs "$dst"
  unpack_image "$dst" "$V2" "$TMP/rootfs-v2"
  check_rootfs "$TMP/rootfs-v2" "skopeo v2 $REPO"
}

push_multi() {
  copy --all --preserve-digests --digestfile "$TMP/multi.digest" "oci:$SRC:multi" "$REG/$REPO:multi"
  expect_eq "$(cat "$TMP/multi.digest")" "$MULTI" "digest skopeo reports for the push of the index"
  expect_eq "$(manifest_digest_http "$REPO" multi)" "$MULTI" "Docker-Content-Digest of HEAD $REPO:multi"
  expect_eq "$(manifest_digest_http "$REPO" "$MULTI_ARM64")" "$MULTI_ARM64" "the arm64 manifest by digest"
}

pull_multi() {
  local dst=$TMP/pulled-multi arch d
  copy --all "$REG/$REPO:multi" "oci:$dst:multi"
  expect_eq "$(layout_digest "$dst" multi)" "$MULTI" "index digest after the round trip"
  cmp -s "$(layout_blob "$dst" "$MULTI")" "$(layout_blob "$SRC" "$MULTI")" || die "index bytes differ after the round trip"
  verify_layout_blobs "$dst"
  for arch in amd64 arm64; do
    d=$(jq -r --arg a "$arch" '.manifests[] | select(.platform.architecture == $a) | .digest' "$(layout_blob "$dst" "$MULTI")")
    expect_eq "$d" "$(layout_digest "$SRC" "multi-$arch")" "$arch manifest in the pulled index"
    [ -f "$(layout_blob "$dst" "$d")" ] || die "the $arch manifest $d was not pulled"
    expect_eq "$(jq -r .architecture "$(layout_blob "$dst" "$(manifest_config "$dst" "$d")")")" "$arch" "architecture in the $arch config"
    unpack_image "$dst" "$d" "$TMP/rootfs-multi-$arch"
    check_rootfs "$TMP/rootfs-multi-$arch" "skopeo multi $REPO $arch"
  done
  # Without --all only this machine's platform comes along.
  copy --override-arch arm64 "$REG/$REPO:multi" "oci:$TMP/arm64-only:a"
  expect_eq "$(layout_digest "$TMP/arm64-only" a)" "$MULTI_ARM64" "the arm64 manifest chosen from the index"
}

inspect_raw() {
  insp --raw "$REG/$REPO:v1" > "$TMP/v1.raw"
  cmp -s "$TMP/v1.raw" "$(layout_blob "$SRC" "$V1")" || die "inspect --raw of v1 differs from the pushed manifest"
  insp --raw "$REG/$REPO:multi" > "$TMP/multi.raw"
  cmp -s "$TMP/multi.raw" "$(layout_blob "$SRC" "$MULTI")" || die "inspect --raw of multi differs from the pushed index"
  expect_eq "$(jq -r .mediaType "$TMP/multi.raw")" "application/vnd.oci.image.index.v1+json" "mediaType of the index"
  insp --raw --config "$REG/$REPO:v1" > "$TMP/v1.config"
  cmp -s "$TMP/v1.config" "$(layout_blob "$SRC" "$(manifest_config "$SRC" "$V1")")" || die "inspect --raw --config differs from the pushed config"
  insp "$REG/$REPO:v1" > "$TMP/v1.inspect"
  expect_eq "$(jq -r .Digest "$TMP/v1.inspect")" "$V1" "inspect .Digest of v1"
  expect_eq "$(jq -r '.Layers | join(",")' "$TMP/v1.inspect")" "$(manifest_layers "$SRC" "$V1" | paste -sd,)" "inspect .Layers of v1"
  sk --override-arch arm64 inspect --tls-verify=false "$REG/$REPO:multi" > "$TMP/multi.inspect"
  expect_eq "$(jq -r .Architecture "$TMP/multi.inspect")" "arm64" "inspect --override-arch arm64 .Architecture"
  # .Digest is the digest of what the reference names (the index); the
  # layers are the arm64 manifest's.
  expect_eq "$(jq -r .Digest "$TMP/multi.inspect")" "$MULTI" "inspect --override-arch arm64 .Digest"
  expect_eq "$(jq -r '.Layers | join(",")' "$TMP/multi.inspect")" "$(manifest_layers "$SRC" "$MULTI_ARM64" | paste -sd,)" "inspect --override-arch arm64 .Layers"
}

copy_in_registry() {
  # Same repository, new tag: every blob is already there.
  copy "$REG/$REPO:v1" "$REG/$REPO:v1-copy"
  expect_eq "$(manifest_digest_http "$REPO" v1-copy)" "$V1" "digest of the tag copied in the same repository"
  # Another repository of the same registry (skopeo may mount the blobs).
  copy --all "$REG/$REPO:multi" "$REG/$REPO2:multi"
  expect_eq "$(manifest_digest_http "$REPO2" multi)" "$MULTI" "digest of the index copied to another repository"
  copy --all "$REG/$REPO2:multi" "oci:$TMP/from-other:m"
  expect_eq "$(layout_digest "$TMP/from-other" m)" "$MULTI" "index pulled back from the other repository"
  verify_layout_blobs "$TMP/from-other"
}

list_tags() {
  sk list-tags --tls-verify=false "$REG/$REPO" > "$TMP/tags.json"
  expect_eq "$(jq -r '.Tags | sort | join(" ")' "$TMP/tags.json")" "multi v1 v1-copy v2" "list-tags $REPO"
  expect_eq "$(jq -r .Repository "$TMP/tags.json")" "$HOST/$REPO" "list-tags .Repository"
  sk list-tags --tls-verify=false "$REG/$REPO2" > "$TMP/tags2.json"
  expect_eq "$(jq -r '.Tags | sort | join(" ")' "$TMP/tags2.json")" "multi" "list-tags $REPO2"
  expect_fail "list-tags of a repository that does not exist" \
    sk list-tags --tls-verify=false "$REG/$(uniq_repo never-pushed)"
}

delete() {
  sk delete --tls-verify=false "$REG/$REPO:v2"
  expect_fail "inspect after delete" insp --raw "$REG/$REPO:v2"
  expect_fail "pull after delete" copy "$REG/$REPO:v2" "oci:$TMP/deleted:v2"
  expect_fail "pull by digest after delete" copy "$REG/$REPO@$V2" "oci:$TMP/deleted2:v2"
  expect_eq "$(http_status HEAD "http://$HOST/v2/$REPO/manifests/$V2")" "404" "HEAD of the deleted manifest"
  sk list-tags --tls-verify=false "$REG/$REPO" > "$TMP/tags-after.json"
  expect_eq "$(jq -r '.Tags | sort | join(" ")' "$TMP/tags-after.json")" "multi v1 v1-copy" "list-tags after delete"
  # The other images are untouched.
  copy "$REG/$REPO:v1" "oci:$TMP/after-delete:v1"
  expect_eq "$(layout_digest "$TMP/after-delete" v1)" "$V1" "v1 after deleting v2"
}

run_step build build
run_step login client_login sk
run_step push-single push_single
run_step pull-single pull_single
run_step pull-by-digest pull_by_digest
run_step pull-only-robot pull_only_robot
run_step push-multi push_multi
run_step pull-multi pull_multi
run_step inspect-raw inspect_raw
run_step copy-in-registry copy_in_registry
run_step list-tags list_tags
run_step delete delete
client_done
