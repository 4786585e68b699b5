#!/usr/bin/env bash
# The Docker CLI with its own engine: dockerd (Debian's docker.io) started
# here with its own root, vfs storage and no networking of its own. An image
# imported from a tarball (busybox + a file) is pushed after `docker login`,
# removed, pulled back by tag and by digest and run; a pull-only account logs
# in and is refused a push; logout.
#
#   tests/clients/docker.sh HOST:PORT
set -euo pipefail
# shellcheck source=tests/clients/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
client_init docker "$@"
require_tools dockerd docker jq curl tar

REPO=$(uniq_repo img)
IMG=$HOST/$REPO
CONTENT="docker $REPO"

# dockerd's sockets (and its containerd's) need short paths: fall back to /tmp.
SOCKDIR=$TMP
if [ "${#TMP}" -gt 40 ]; then
  SOCKDIR=$(mktemp -d /tmp/berth-dk.XXXXXX)
  on_exit "rm -rf '$SOCKDIR'"
fi
export DOCKER_HOST=unix://$SOCKDIR/docker.sock
export DOCKER_CONFIG=$TMP/docker-config
DOCKERD_PID=""

stop_dockerd() {
  [ -n "$DOCKERD_PID" ] || return 0
  kill -TERM "$DOCKERD_PID" 2>/dev/null || true
  for _ in $(seq 150); do
    case "$(ps -o stat= -p "$DOCKERD_PID" 2>/dev/null)" in
      "" | Z*) break ;;
    esac
    sleep 0.1
  done
  kill -KILL "$DOCKERD_PID" 2>/dev/null || true
  wait "$DOCKERD_PID" 2>/dev/null || true
  DOCKERD_PID=""
  awk -v t="$TMP" -v s="$SOCKDIR" 'index($2, t) == 1 || index($2, s) == 1 {print $2}' /proc/self/mounts |
    sort -r | xargs -r -n1 umount -l
}

start_dockerd() {
  mkdir -p "$TMP/dockerd" "$DOCKER_CONFIG"
  # Loopback registries are plain HTTP to docker without configuration.
  dockerd --data-root "$TMP/dockerd/root" --exec-root "$SOCKDIR/exec" \
    --pidfile "$TMP/dockerd/pid" -H "$DOCKER_HOST" \
    --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
    > "$TMP/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  on_exit stop_dockerd
  for _ in $(seq 300); do
    if docker version > /dev/null 2>&1; then
      return 0
    fi
    kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$TMP/dockerd.log" >&2; die "dockerd exited"; }
    sleep 0.1
  done
  tail -20 "$TMP/dockerd.log" >&2
  die "dockerd did not answer within 30 s"
}

build() {
  local root=$TMP/rootfs
  mkdir -p "$root/bin" "$root/etc"
  cp "$BUSYBOX" "$root/bin/busybox"
  ln -s busybox "$root/bin/sh"
  ln -s busybox "$root/bin/cat"
  printf '%s' "$CONTENT" > "$root/etc/berth-test"
  tar -C "$root" -cf "$TMP/rootfs.tar" .
  docker import "$TMP/rootfs.tar" "$IMG:v1" > /dev/null
}

login() {
  if [ -z "${BERTH_REGISTRY_USER:-}" ]; then
    log "   (no BERTH_REGISTRY_USER: anonymous)"
    return 0
  fi
  printf '%s' "$BERTH_REGISTRY_PASSWORD" |
    docker login -u "$BERTH_REGISTRY_USER" --password-stdin "$HOST" > "$TMP/login.out" 2>&1 ||
    die "docker login failed: $(cat "$TMP/login.out")"
  jq -e --arg h "$HOST" '.auths[$h]' "$DOCKER_CONFIG/config.json" > /dev/null ||
    die "docker login left no credentials for $HOST"
  if printf 'wrong' | DOCKER_CONFIG=$TMP/wrong docker login -u "$BERTH_REGISTRY_USER" --password-stdin "$HOST" > /dev/null 2>&1; then
    die "docker login with a wrong password succeeded"
  fi
}

push() {
  docker push "$IMG:v1" > "$TMP/push.out" 2>&1 || die "docker push failed: $(tail -5 "$TMP/push.out")"
  PUSHED=$(sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p' "$TMP/push.out")
  expect_match "$PUSHED" '^sha256:[0-9a-f]{64}$' "digest docker reports for the push"
  expect_eq "$(manifest_digest_http "$REPO" v1)" "$PUSHED" "Docker-Content-Digest of HEAD $REPO:v1"
}

pull() {
  docker rmi "$IMG:v1" > /dev/null
  docker pull -q "$IMG:v1" > /dev/null
  expect_eq "$(docker image inspect --format '{{index .RepoDigests 0}}' "$IMG:v1")" "$IMG@$PUSHED" "repo digest after the pull"
  docker rmi "$IMG:v1" > /dev/null
  docker pull -q "$IMG@$PUSHED" > /dev/null
}

run() {
  expect_eq "$(docker run --rm --network none "$IMG@$PUSHED" cat /etc/berth-test)" "$CONTENT" "/etc/berth-test in the container"
}

pull_only_robot() {
  if [ -z "${BERTH_READER_USER:-}" ]; then
    log "   (no BERTH_READER_USER)"
    return 0
  fi
  local cfg=$TMP/reader-config
  mkdir -p "$cfg"
  printf '%s' "$BERTH_READER_PASSWORD" |
    DOCKER_CONFIG=$cfg docker login -u "$BERTH_READER_USER" --password-stdin "$HOST" > /dev/null
  DOCKER_CONFIG=$cfg docker pull -q "$IMG@$PUSHED" > /dev/null
  docker tag "$IMG@$PUSHED" "$IMG:by-reader"
  expect_refused "a push by the pull-only robot" env DOCKER_CONFIG="$cfg" docker push "$IMG:by-reader"
  expect_eq "$(http_status HEAD "http://$HOST/v2/$REPO/manifests/by-reader")" 404 \
    "HEAD of the tag the pull-only robot tried to push"
}

logout() {
  docker logout "$HOST" > /dev/null
  if [ -n "${BERTH_REGISTRY_USER:-}" ]; then
    docker rmi "$IMG@$PUSHED" > /dev/null 2>&1 || true
    expect_fail "a pull after logout" docker pull -q "$IMG:v1"
  fi
}

run_step start-dockerd start_dockerd
run_step build build
run_step login login
run_step push push
run_step pull pull
run_step run run
run_step pull-only-robot pull_only_robot
run_step logout logout
run_step stop-dockerd stop_dockerd
client_done
