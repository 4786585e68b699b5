#!/usr/bin/env bash
# Manifest GETs under load, then SIGKILL: how many of the answered pulls the
# audit log accounts for after a restart (the foundations issue's check).
#
#   bench/audit-under-load.sh BERTH_BINARY [SECONDS] [CONNECTIONS] [WAIT_BEFORE_KILL]
#
# Starts BERTH_BINARY on a fresh data directory (auth off), pushes one image,
# runs wrk (Debian's `wrk`) against its manifest by tag, waits
# WAIT_BEFORE_KILL seconds (default 3), kills the server with SIGKILL,
# starts it again on the same data, waits for the audit log to settle and
# prints the requests/s wrk measured, the pulls it got answered, and the
# pulls the audit log counts (entries, and the sum of their counts).
set -euo pipefail
bin=$(realpath "$1")
secs=${2:-5}
conns=${3:-64}
wait_before_kill=${4:-3}
dir=$(mktemp -d)
trap 'kill -9 "${pid:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"

start() {
  BERTH_AUTH_MODE=off "$bin" serve --listen "127.0.0.1:$port" --data "$dir/data" >>"$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    curl -sf "$url/readyz" >/dev/null && return
    sleep 0.1
  done
  echo "server did not start" >&2
  cat "$dir/log" >&2
  exit 1
}

push_blob() { # bytes-file -> digest
  local d
  d="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
  curl -sf -X POST --data-binary "@$1" -H 'Content-Type: application/octet-stream' \
    "$url/v2/bench/app/blobs/uploads/?digest=$d" >/dev/null
  echo "$d"
}

start
printf '{"architecture":"amd64","os":"linux"}' >"$dir/config"
head -c 4096 /dev/urandom >"$dir/layer"
config=$(push_blob "$dir/config")
layer=$(push_blob "$dir/layer")
media=application/vnd.oci.image.manifest.v1+json
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":4096}]}' \
  "$media" "$config" "$(stat -c %s "$dir/config")" "$layer" >"$dir/manifest"
curl -sf -X PUT -H "Content-Type: $media" --data-binary "@$dir/manifest" \
  "$url/v2/bench/app/manifests/v1" >/dev/null

wrk -t2 -c"$conns" -d"${secs}s" -H "Accept: $media" "$url/v2/bench/app/manifests/v1" >"$dir/wrk.txt"
answered=$(awk '/requests in/ { print $1 }' "$dir/wrk.txt")
failed=$(awk '/Non-2xx/ { print $5 }' "$dir/wrk.txt")
rate=$(awk '/Requests\/sec/ { print $2 }' "$dir/wrk.txt")
sleep "$wait_before_kill"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
start
python3 - "$url" "$answered" "${failed:-0}" "$rate" <<'EOF'
import json, sys, time, urllib.request
url, answered, failed, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def audited():
    entries, total, cursor = 0, 0, ""
    while True:
        with urllib.request.urlopen(f"{url}/api/v1/audit-logs?action=pull&limit=500&cursor={cursor}") as r:
            page = json.load(r)
        for e in page["items"]:
            entries += 1
            total += e.get("count", 1)
        cursor = page.get("next_cursor")
        if not cursor:
            return entries, total
last, deadline = None, time.time() + 30
while time.time() < deadline:
    now = audited()
    if now == last:
        break
    last = now
    time.sleep(2)
entries, total = last
print(f"manifest GETs/s {rate}; answered {answered - failed}; audited {total} in {entries} entries")
EOF
