#!/usr/bin/env bash
# ORAS (the Python client, through tests/clients/oras_client.py) against a
# registry: an artifact with an artifactType, pulled back; a blob uploaded in
# several PATCH chunks; referrers (artifacts whose `subject` is the first),
# listed through the referrers API with curl + jq, with the artifactType
# filter; and delete.
#
# The steps `referrers` and `referrers-after-delete` need the OCI 1.1
# referrers API, which the reference registry (docker-registry 2.8) lacks: run
# it with BERTH_CLIENTS_SKIP="oras:referrers oras:referrers-after-delete".
#
#   tests/clients/oras.sh HOST:PORT
set -euo pipefail
# shellcheck source=tests/clients/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
client_init oras "$@"
require_tools jq curl sha256sum
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The Python that has the `oras` package.
ORAS_PY=${BERTH_ORAS_PYTHON:-}
if [ -z "$ORAS_PY" ]; then
  for py in "${BERTH_ORAS_VENV:-/opt/berth-test-deps/oras-venv}/bin/python" python3; do
    if command -v "$py" > /dev/null 2>&1 && "$py" -c 'import oras.client' > /dev/null 2>&1; then
      ORAS_PY=$py
      break
    fi
  done
fi
[ -n "$ORAS_PY" ] || die "the ORAS Python client is missing; run scripts/install-test-deps (as root)"
oras_() { "$ORAS_PY" "$HERE/oras_client.py" "$@"; }

REPO=$(uniq_repo art)
REF=$HOST/$REPO
ART_TYPE=application/vnd.berth.test.artifact.v1
SIG_TYPE=application/vnd.berth.test.signature.v1
SBOM_TYPE=application/vnd.berth.test.sbom.v1
ACCEPT_INDEX='Accept: application/vnd.oci.image.index.v1+json'

# get_manifest REF OUT: GET it with the OCI manifest Accept, check its digest.
get_manifest() {
  reg_curl -f -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$HOST/v2/$REPO/manifests/$1" -o "$2" || die "GET manifest $1 failed"
}

push_artifact() {
  printf 'berth artifact %s\n' "$REPO" > "$TMP/artifact.txt"
  oras_ push "$REF:v1" --artifact-type "$ART_TYPE" --annotation "org.example.kind=test" \
    "$TMP/artifact.txt:text/plain" > "$TMP/push1.json"
  SUBJECT=$(jq -r .digest "$TMP/push1.json")
  SUBJECT_SIZE=$(jq -r .size "$TMP/push1.json")
  expect_match "$SUBJECT" '^sha256:[0-9a-f]{64}$' "digest of the pushed artifact"
  expect_eq "$(manifest_digest_http "$REPO" v1)" "$SUBJECT" "Docker-Content-Digest of HEAD $REPO:v1"
  get_manifest v1 "$TMP/m1.json"
  expect_eq "$(sha256_of "$TMP/m1.json")" "$SUBJECT" "sha256 of the manifest served"
  expect_eq "$(jq -r .artifactType "$TMP/m1.json")" "$ART_TYPE" "artifactType of the served manifest"
  expect_eq "$(jq -r .config.mediaType "$TMP/m1.json")" "application/vnd.oci.empty.v1+json" "config mediaType"
  expect_eq "$(jq -r '.layers[0].mediaType' "$TMP/m1.json")" "text/plain" "layer mediaType"
  expect_eq "$(jq -r '.layers[0].annotations["org.opencontainers.image.title"]' "$TMP/m1.json")" "artifact.txt" "layer title"
  expect_eq "$(jq -r '.layers[0].digest' "$TMP/m1.json")" "$(sha256_of "$TMP/artifact.txt")" "layer digest"
  # The empty config blob `{}` is there.
  reg_curl -f "http://$HOST/v2/$REPO/blobs/$(jq -r .config.digest "$TMP/m1.json")" -o "$TMP/config"
  expect_eq "$(cat "$TMP/config")" "{}" "the config blob"
}

pull_artifact() {
  oras_ pull "$REF:v1" "$TMP/pulled" > "$TMP/pull.json"
  expect_eq "$(jq -r 'length' "$TMP/pull.json")" 1 "files pulled"
  cmp -s "$TMP/pulled/artifact.txt" "$TMP/artifact.txt" || die "the pulled file differs"
  oras_ pull "$REF@$SUBJECT" "$TMP/pulled-by-digest" > /dev/null
  cmp -s "$TMP/pulled-by-digest/artifact.txt" "$TMP/artifact.txt" || die "the file pulled by digest differs"
}

chunked_upload() {
  # 2.5 MiB in 1 MiB PATCHes with Content-Range (oras-py's chunked upload).
  head -c 2621440 /dev/urandom > "$TMP/big.bin"
  oras_ push "$REF:big" --artifact-type "$ART_TYPE" --chunked 1048576 \
    "$TMP/big.bin:application/octet-stream" > "$TMP/push-big.json"
  get_manifest big "$TMP/big-manifest.json"
  local d
  d=$(jq -r '.layers[0].digest' "$TMP/big-manifest.json")
  expect_eq "$d" "$(sha256_of "$TMP/big.bin")" "digest of the chunked blob in the manifest"
  reg_curl -f "http://$HOST/v2/$REPO/blobs/$d" -o "$TMP/big.back"
  cmp -s "$TMP/big.back" "$TMP/big.bin" || die "the blob uploaded in chunks differs"
  oras_ pull "$REF:big" "$TMP/pulled-big" > /dev/null
  cmp -s "$TMP/pulled-big/big.bin" "$TMP/big.bin" || die "the chunked blob pulled with oras differs"
}

push_referrers() {
  printf 'signature of %s\n' "$SUBJECT" > "$TMP/sig.txt"
  printf '{"sbom":"%s"}\n' "$SUBJECT" > "$TMP/sbom.json"
  # oras-py sets `subject` itself (Subject descriptor fetched from the registry).
  oras_ push "$REF:sig" --artifact-type "$SIG_TYPE" --subject "$SUBJECT" \
    --annotation "org.example.signer=berth-tests" "$TMP/sig.txt:text/plain" > "$TMP/push-sig.json"
  oras_ push "$REF:sbom" --artifact-type "$SBOM_TYPE" --subject "$SUBJECT" \
    "$TMP/sbom.json:application/json" > "$TMP/push-sbom.json"
  SIG=$(jq -r .digest "$TMP/push-sig.json")
  SBOM=$(jq -r .digest "$TMP/push-sbom.json")
  get_manifest "$SIG" "$TMP/sig-manifest.json"
  expect_eq "$(sha256_of "$TMP/sig-manifest.json")" "$SIG" "sha256 of the referrer manifest"
  expect_eq "$(jq -r .subject.digest "$TMP/sig-manifest.json")" "$SUBJECT" "subject.digest of the referrer"
  expect_eq "$(jq -r .subject.size "$TMP/sig-manifest.json")" "$SUBJECT_SIZE" "subject.size of the referrer"
  expect_eq "$(jq -r .subject.mediaType "$TMP/sig-manifest.json")" "application/vnd.oci.image.manifest.v1+json" "subject.mediaType"
  expect_eq "$(jq -r .artifactType "$TMP/sig-manifest.json")" "$SIG_TYPE" "artifactType of the referrer"
  # A referrer whose subject is not in the registry is accepted too (OCI 1.1).
  printf 'dangling\n' > "$TMP/dangling.txt"
  MISSING_SUBJECT=sha256:$(printf 'no such manifest %s' "$REPO" | sha256sum | cut -d' ' -f1)
  jq -n --arg d "$MISSING_SUBJECT" '{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: 123}' \
    > "$TMP/missing-subject.json"
  # oras-py can only take a subject it fetched, so this one is built by hand
  # from a pushed manifest and PUT with curl.
  jq -c --slurpfile s "$TMP/missing-subject.json" '. + {subject: $s[0]}' "$TMP/m1.json" > "$TMP/dangling.json"
  DANGLING=$(sha256_of "$TMP/dangling.json")
  expect_eq "$(http_status PUT "http://$HOST/v2/$REPO/manifests/$DANGLING" \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$TMP/dangling.json")" \
    201 "PUT of a referrer whose subject is missing"
}

referrers() {
  local url=http://$HOST/v2/$REPO/referrers/$SUBJECT
  # The registry says it processed `subject` when the referrers were pushed.
  expect_eq "$(jq -r .oci_subject "$TMP/push-sig.json")" "$SUBJECT" "OCI-Subject header on the PUT of the referrer"
  reg_curl -D "$TMP/ref.headers" -H "$ACCEPT_INDEX" "$url" -o "$TMP/referrers.json"
  expect_match "$(head -n1 "$TMP/ref.headers")" ' 200' "status of GET $url"
  expect_match "$(tr -d '\r' < "$TMP/ref.headers" | awk -F': ' 'tolower($1)=="content-type"{print $2}')" \
    '^application/vnd\.oci\.image\.index\.v1\+json' "Content-Type of the referrers response"
  expect_eq "$(jq -r .schemaVersion "$TMP/referrers.json")" 2 "schemaVersion of the referrers index"
  expect_eq "$(jq -r .mediaType "$TMP/referrers.json")" "application/vnd.oci.image.index.v1+json" "mediaType of the referrers index"
  expect_eq "$(jq -r '[.manifests[].digest] | sort | join(" ")' "$TMP/referrers.json")" \
    "$(printf '%s\n' "$SIG" "$SBOM" | sort | paste -sd' ')" "referrers of the artifact"
  local sig
  sig=$(jq -c --arg d "$SIG" '.manifests[] | select(.digest == $d)' "$TMP/referrers.json")
  expect_eq "$(jq -r .artifactType <<<"$sig")" "$SIG_TYPE" "artifactType of the signature descriptor"
  expect_eq "$(jq -r .mediaType <<<"$sig")" "application/vnd.oci.image.manifest.v1+json" "mediaType of the signature descriptor"
  expect_eq "$(jq -r .size <<<"$sig")" "$(stat -c %s "$TMP/sig-manifest.json")" "size of the signature descriptor"
  expect_eq "$(jq -r '.annotations["org.example.signer"]' <<<"$sig")" "berth-tests" "annotations of the signature descriptor"

  # The artifactType filter.
  reg_curl -D "$TMP/filter.headers" -H "$ACCEPT_INDEX" "$url?artifactType=$SIG_TYPE" -o "$TMP/filtered.json"
  expect_match "$(head -n1 "$TMP/filter.headers")" ' 200' "status of the filtered GET"
  expect_eq "$(jq -r '[.manifests[].digest] | join(" ")' "$TMP/filtered.json")" "$SIG" "referrers filtered by artifactType"
  expect_eq "$(tr -d '\r' < "$TMP/filter.headers" | awk -F': ' 'tolower($1)=="oci-filters-applied"{print $2}')" \
    "artifactType" "OCI-Filters-Applied header"
  reg_curl -H "$ACCEPT_INDEX" "$url?artifactType=application/vnd.berth.nothing" -o "$TMP/none.json"
  expect_eq "$(jq -r '.manifests | length' "$TMP/none.json")" 0 "referrers of an artifactType nobody used"

  # A digest without referrers (and not in the registry): 200 and an empty list.
  expect_eq "$(http_status GET "http://$HOST/v2/$REPO/referrers/$SIG")" 200 "referrers of a manifest without referrers"
  reg_curl "http://$HOST/v2/$REPO/referrers/$MISSING_SUBJECT" -o "$TMP/dangling-ref.json"
  expect_eq "$(jq -r '[.manifests[].digest] | join(" ")' "$TMP/dangling-ref.json")" "$DANGLING" "referrers of a subject that is not in the registry"
}

tags() {
  oras_ tags "$REF" > "$TMP/tags.json"
  expect_eq "$(jq -r 'sort | join(" ")' "$TMP/tags.json")" "big sbom sig v1" "tags of $REPO"
}

delete() {
  expect_eq "$(http_status DELETE "http://$HOST/v2/$REPO/manifests/$SIG")" 202 "DELETE of the signature manifest"
  expect_eq "$(http_status HEAD "http://$HOST/v2/$REPO/manifests/$SIG")" 404 "HEAD of the deleted signature"
  expect_fail "pull of the deleted signature" oras_ pull "$REF@$SIG" "$TMP/deleted"
  oras_ tags "$REF" > "$TMP/tags-after.json"
  expect_eq "$(jq -r 'sort | join(" ")' "$TMP/tags-after.json")" "big sbom v1" "tags after deleting the signature"
}

referrers_after_delete() {
  reg_curl -H "$ACCEPT_INDEX" "http://$HOST/v2/$REPO/referrers/$SUBJECT" -o "$TMP/referrers-after.json"
  expect_eq "$(jq -r '[.manifests[].digest] | join(" ")' "$TMP/referrers-after.json")" "$SBOM" "referrers after deleting the signature"
}

run_step push-artifact push_artifact
run_step pull-artifact pull_artifact
run_step chunked-upload chunked_upload
run_step push-referrers push_referrers
run_step referrers referrers
run_step tags tags
run_step delete delete
run_step referrers-after-delete referrers_after_delete
client_done
