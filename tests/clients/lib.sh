# shellcheck shell=bash
# Shared helpers for the real-client tests in tests/clients/*.sh.
#
# Each client script does:
#   source "$(dirname "$0")/lib.sh"
#   client_init <name> "$@"      # parses HOST, makes $TMP, sets the traps
#   run_step <step> <function>   # runs one step, timed, with a clear banner
#   client_done
#
# Environment:
#   BERTH_TEST_TMP      where temp dirs go (default /tmp)
#   BERTH_CLIENTS_SKIP  steps not to run, as "client:step" words separated by
#                       spaces or commas (e.g. "oras:referrers"): a skipped step
#                       is announced, never silent. For registries that lack a
#                       feature (the reference docker-registry has no referrers API).
#   BERTH_TEST_BUSYBOX  a statically linked busybox (default /bin/busybox)
#   BERTH_CLIENTS_KEEP  set to 1 to keep the temp dir (its path is printed)
#   BERTH_REGISTRY_USER, BERTH_REGISTRY_PASSWORD
#                       the identity each client logs in with (a user or a
#                       robot account); unset, everything is anonymous
#   BERTH_READER_USER, BERTH_READER_PASSWORD
#                       a pull-only robot, which must be refused a push

set -euo pipefail

CLIENT=""
HOST=""
TMP=""
STEPS_RUN=0
STEPS_SKIPPED=0
CURRENT_STEP=""
_CLEANUPS=()
_T0=0

log() { printf '%s\n' "$*" >&2; }

die() {
  log "FAIL [${CLIENT}${CURRENT_STEP:+:$CURRENT_STEP}]: $*"
  exit 1
}

# require_tools TOOL...: fails with the hint to install them.
require_tools() {
  local missing=() t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "FAIL [$CLIENT]: missing tools: ${missing[*]}; run scripts/install-test-deps (as root)"
    exit 1
  fi
}

# on_exit CMD: run CMD (a string, eval'd) at exit, last registered first.
on_exit() { _CLEANUPS=("$1" "${_CLEANUPS[@]}"); }

_run_cleanups() {
  local rc=$? c
  set +e
  for c in "${_CLEANUPS[@]}"; do
    eval "$c" >/dev/null 2>&1
  done
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    if [ "${BERTH_CLIENTS_KEEP:-0}" = 1 ]; then
      log "kept temp dir $TMP"
    else
      rm -rf "$TMP"
    fi
  fi
  if [ "$rc" != 0 ]; then
    log "FAIL: $CLIENT.sh exited with $rc${CURRENT_STEP:+ in step $CURRENT_STEP}"
  fi
  return "$rc"
}

client_init() {
  CLIENT=$1
  shift
  if [ "$#" -lt 1 ] || [ -z "$1" ]; then
    log "usage: $CLIENT.sh HOST:PORT"
    exit 2
  fi
  HOST=$1
  local base=${BERTH_TEST_TMP:-/tmp}
  mkdir -p "$base"
  TMP=$(mktemp -d "$base/berth-$CLIENT.XXXXXX")
  trap _run_cleanups EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  _T0=$(date +%s.%N)
  log "== $CLIENT against $HOST (temp dir $TMP)"
}

_skipped() {
  local w
  local skip=${BERTH_CLIENTS_SKIP:-}
  for w in ${skip//,/ }; do
    [ "$w" = "$CLIENT:$1" ] && return 0
  done
  return 1
}

# run_step NAME FUNCTION [ARGS...]
run_step() {
  local name=$1 fn=$2 t0 t1
  shift 2
  if _skipped "$name"; then
    log "-- SKIP $CLIENT:$name (listed in BERTH_CLIENTS_SKIP)"
    STEPS_SKIPPED=$((STEPS_SKIPPED + 1))
    return 0
  fi
  CURRENT_STEP=$name
  log "-- step $CLIENT:$name"
  t0=$(date +%s.%N)
  "$fn" "$@"
  t1=$(date +%s.%N)
  log "   ok $CLIENT:$name ($(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')s)"
  STEPS_RUN=$((STEPS_RUN + 1))
  CURRENT_STEP=""
}

client_done() {
  local t1
  t1=$(date +%s.%N)
  log "== $CLIENT: $STEPS_RUN steps ok, $STEPS_SKIPPED skipped ($(awk -v a="$_T0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s)"
}

# ---------------------------------------------------------------- assertions

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() {
  if [ "$1" != "$2" ]; then
    die "$3: expected '$2', got '$1'"
  fi
}

# expect_ne A B WHAT
expect_ne() {
  if [ "$1" = "$2" ]; then
    die "$3: both are '$1'"
  fi
}

# expect_match STRING REGEX WHAT
expect_match() {
  if ! [[ $1 =~ $2 ]]; then
    die "$3: '$1' does not match /$2/"
  fi
}

# expect_ok WHAT CMD...: CMD must succeed; its output is shown if it does not.
expect_ok() {
  local what=$1 out
  shift
  if ! out=$("$@" 2>&1); then
    log "$out"
    die "$what: command failed: $*"
  fi
}

# expect_fail WHAT CMD...: CMD must fail (exit non-zero).
expect_fail() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    log "$out"
    die "$what: command succeeded but must fail: $*"
  fi
  log "   (failed as expected: ...$(printf '%s' "$out" | tail -n 1 | rev | cut -c1-160 | rev))"
}

# expect_file_content FILE CONTENT WHAT
expect_file_content() {
  [ -f "$1" ] || die "$3: no file $1"
  expect_eq "$(cat "$1")" "$2" "$3"
}

# ---------------------------------------------------------------- names

# uniq_repo SUFFIX: a repository name of this run, unique across parallel runs.
uniq_repo() {
  printf 'berth-test/%s-%s-%s-%s' "$CLIENT" "$1" "$$" "$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1 | sed 's/^/sha256:/'; }

# ---------------------------------------------------------------- OCI layouts

BUSYBOX=${BERTH_TEST_BUSYBOX:-/bin/busybox}

_check_busybox() {
  [ -x "$BUSYBOX" ] || die "no busybox at $BUSYBOX; run scripts/install-test-deps (busybox-static)"
  if LC_ALL=C ldd "$BUSYBOX" 2>&1 | grep -q '=>'; then
    die "$BUSYBOX is dynamically linked; install busybox-static"
  fi
}

# make_rootfs DIR CONTENT: a tiny root filesystem: /bin/busybox with a few
# applet symlinks, and /etc/berth-test holding CONTENT (so each image differs).
make_rootfs() {
  local dir=$1 content=$2 l
  _check_busybox
  mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp"
  cp "$BUSYBOX" "$dir/bin/busybox"
  for l in sh cat ls echo sha256sum; do
    ln -sf busybox "$dir/bin/$l"
  done
  printf '%s\n' "$content" > "$dir/etc/berth-test"
}

# layout_digest LAYOUT REF: the manifest/index digest that REF names in index.json.
layout_digest() {
  jq -r --arg r "$2" \
    '[.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $r) | .digest] | if length == 1 then .[0] else error("ref \($r): \(length) entries") end' \
    "$1/index.json"
}

# layout_blob LAYOUT DIGEST: path of a blob in an OCI layout.
layout_blob() { printf '%s/blobs/%s' "$1" "${2/://}"; }

# build_image LAYOUT REF CONTENT [ARCH]: builds a one-layer image with umoci.
# Prints nothing; its manifest digest is `layout_digest LAYOUT REF`.
build_image() {
  local layout=$1 ref=$2 content=$3 arch=${4:-amd64} work rootless=()
  [ "$(id -u)" = 0 ] || rootless=(--rootless)
  work=$(mktemp -d "$TMP/umoci.XXXXXX")
  [ -f "$layout/index.json" ] || umoci init --layout "$layout"
  umoci new --image "$layout:$ref.base"
  umoci unpack "${rootless[@]}" --image "$layout:$ref.base" "$work/bundle" >/dev/null
  make_rootfs "$work/bundle/rootfs" "$content"
  umoci repack --image "$layout:$ref.base" "$work/bundle"
  umoci config --image "$layout:$ref.base" --tag "$ref" \
    --os linux --architecture "$arch" \
    --config.cmd /bin/cat --config.cmd /etc/berth-test \
    --config.label "org.opencontainers.image.title=berth-test" \
    --history.created_by "berth tests/clients/lib.sh build_image"
  umoci rm --image "$layout:$ref.base"
  umoci gc --layout "$layout"
  rm -rf "$work"
}

# build_index LAYOUT REF MANIFEST_REF:ARCH...: builds an image index (by hand
# with jq: umoci has no command for it) over manifests already in LAYOUT, each
# with its platform, stores it as a blob and names it REF in index.json.
build_index() {
  local layout=$1 ref=$2 spec mref arch digest size entries="[]" blob idx
  shift 2
  for spec in "$@"; do
    mref=${spec%%:*}
    arch=${spec#*:}
    digest=$(layout_digest "$layout" "$mref")
    size=$(stat -c %s "$(layout_blob "$layout" "$digest")")
    entries=$(jq -c --arg d "$digest" --argjson s "$size" --arg a "$arch" \
      '. + [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s,
             platform: {architecture: $a, os: "linux"}}]' <<<"$entries")
  done
  blob=$(mktemp "$TMP/index.XXXXXX")
  jq -cj --argjson m "$entries" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: $m}' \
    <<<'{}' > "$blob"
  digest=$(sha256_of "$blob")
  size=$(stat -c %s "$blob")
  mv "$blob" "$(layout_blob "$layout" "$digest")"
  idx=$(mktemp "$TMP/index-json.XXXXXX")
  jq --arg d "$digest" --argjson s "$size" --arg r "$ref" \
    '.manifests += [{mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $s,
                     annotations: {"org.opencontainers.image.ref.name": $r}}]' \
    "$layout/index.json" > "$idx"
  mv "$idx" "$layout/index.json"
}

# build_multiarch LAYOUT REF CONTENT: images REF-amd64 and REF-arm64 (same
# busybox, the config's architecture differs, and so does /etc/berth-test) and
# the index REF over both.
build_multiarch() {
  build_image "$1" "$2-amd64" "$3 amd64" amd64
  build_image "$1" "$2-arm64" "$3 arm64" arm64
  build_index "$1" "$2" "$2-amd64:amd64" "$2-arm64:arm64"
}

# manifest_layers LAYOUT DIGEST: the layer digests of an image manifest, one a line.
manifest_layers() { jq -r '.layers[].digest' "$(layout_blob "$1" "$2")"; }

# manifest_config LAYOUT DIGEST: the config digest of an image manifest.
manifest_config() { jq -r '.config.digest' "$(layout_blob "$1" "$2")"; }

# verify_layout_blobs LAYOUT: every blob's name is the sha256 of its content.
verify_layout_blobs() {
  local f d
  for f in "$1"/blobs/sha256/*; do
    d=$(sha256sum "$f" | cut -d' ' -f1)
    expect_eq "$d" "$(basename "$f")" "blob $f content digest"
  done
}

# unpack_image LAYOUT MANIFEST_DIGEST DIR: extracts the image's layers in
# order into DIR (plain tar, gzip or zstd; whiteouts are not processed).
unpack_image() {
  local layout=$1 digest=$2 dir=$3 l
  mkdir -p "$dir"
  for l in $(manifest_layers "$layout" "$digest"); do
    tar -xf "$(layout_blob "$layout" "$l")" -C "$dir" \
      || die "cannot extract layer $l of $digest"
  done
}

# check_rootfs DIR CONTENT: DIR holds our busybox and /etc/berth-test == CONTENT.
check_rootfs() {
  expect_file_content "$1/etc/berth-test" "$2" "/etc/berth-test in the image"
  cmp -s "$1/bin/busybox" "$BUSYBOX" || die "/bin/busybox in the image differs from $BUSYBOX"
  expect_eq "$(readlink "$1/bin/sh")" "busybox" "/bin/sh symlink in the image"
}

# ---------------------------------------------------------------- registry HTTP

# reg_curl ARGS...: curl against the registry with failures shown.
# Follows redirects (blob GETs may redirect to a presigned object-store URL;
# curl sends the credentials to the registry's host only).
reg_curl() {
  if [ -n "${BERTH_REGISTRY_USER:-}" ]; then
    curl -sS -L --max-time 60 -u "$BERTH_REGISTRY_USER:$BERTH_REGISTRY_PASSWORD" "$@"
  else
    curl -sS -L --max-time 60 "$@"
  fi
}

# client_login CMD...: logs in with the client's own login command (e.g.
# `podman login`), reading the password from stdin, and checks that the
# credentials landed in $REGISTRY_AUTH_FILE.
client_login() {
  if [ -z "${BERTH_REGISTRY_USER:-}" ]; then
    log "   (no BERTH_REGISTRY_USER: anonymous)"
    return 0
  fi
  printf '%s' "$BERTH_REGISTRY_PASSWORD" |
    "$@" login --tls-verify=false -u "$BERTH_REGISTRY_USER" --password-stdin "$HOST" > "$TMP/login.out" 2>&1 ||
    die "$* login as $BERTH_REGISTRY_USER failed: $(cat "$TMP/login.out")"
  jq -e --arg h "$HOST" '.auths[$h].auth' "$REGISTRY_AUTH_FILE" > /dev/null ||
    die "$* login left no credentials for $HOST in $REGISTRY_AUTH_FILE"
  # A wrong password is refused at login already.
  if printf 'wrong' | "$@" login --tls-verify=false -u "$BERTH_REGISTRY_USER" --password-stdin \
      --authfile "$TMP/wrong-auth.json" "$HOST" > /dev/null 2>&1; then
    die "$* login with a wrong password succeeded"
  fi
}

# expect_refused WHAT CMD...: CMD fails and says it was denied or unauthorized.
expect_refused() {
  local what=$1
  shift
  if "$@" > "$TMP/refused.out" 2>&1; then
    die "$what succeeded but must be refused"
  fi
  grep -qiE 'denied|unauthori[sz]ed|forbidden|insufficient' "$TMP/refused.out" ||
    die "$what failed, but not as refused: $(tail -5 "$TMP/refused.out")"
}

# manifest_digest_http REPO REF: the Docker-Content-Digest of a HEAD on the manifest.
manifest_digest_http() {
  reg_curl -I \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json' \
    "http://$HOST/v2/$1/manifests/$2" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}'
}

# http_status METHOD URL [CURL_ARGS...]: only the status code.
http_status() {
  local m=$1 u=$2
  shift 2
  if [ "$m" = HEAD ]; then
    reg_curl -o /dev/null -w '%{http_code}' -I "$@" "$u"
  else
    reg_curl -o /dev/null -w '%{http_code}' -X "$m" "$@" "$u"
  fi
}

# isolate_containers_config: points the containers/image tools (skopeo,
# podman, buildah) at files in $TMP instead of the machine's: an empty auth
# file, a registries.conf with no search registries that marks $HOST
# insecure (plain HTTP), and $TMP/policy.json accepting everything.
isolate_containers_config() {
  export TMPDIR=$TMP
  export REGISTRY_AUTH_FILE=$TMP/auth.json
  printf '{"auths":{}}\n' > "$REGISTRY_AUTH_FILE"
  export CONTAINERS_REGISTRIES_CONF=$TMP/registries.conf
  printf 'unqualified-search-registries = []\n\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$HOST" \
    > "$CONTAINERS_REGISTRIES_CONF"
  POLICY=$TMP/policy.json
  printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' > "$POLICY"
}
