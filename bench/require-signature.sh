#!/usr/bin/env bash
# What a require-signature rule costs a manifest pull (the trust issue's check).
#
#   bench/require-signature.sh BIN_DIR [MODE] [ORDER]
#
# BIN_DIR holds release builds of `berth` and `berth-bench`. Starts two fresh
# instances, auth off: A with a trust configuration and a require-signature
# rule in MODE (audit, the default, or enforce), B with no rules, and runs
# `berth-bench --only mget,mhead` with one as the subject and the other as
# the reference. ORDER=swapped measures B first; run order moves the ratio by
# more than the rule does, so report both orders.
#
# berth-bench pushes unsigned images, so audit mode is the upper bound: every
# GET is a violation that is checked, journaled and counted. Under enforce
# every GET is refused, which measures the refusal, not a passing pull.
set -euo pipefail
bin=$(realpath "$1")
mode=${2:-audit}
order=${3:-}
dir=$(mktemp -d)
trap 'kill "${pa:-0}" "${pb:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
a=$(free_port)
b=$(free_port)
BERTH_KEY_PASSWORD=x "$bin/berth" key generate --output-key-prefix "$dir/k" >/dev/null
BERTH_AUTH_MODE=off BERTH_LOG=warn "$bin/berth" serve --listen "127.0.0.1:$a" --data "$dir/a" >"$dir/a.log" 2>&1 &
pa=$!
BERTH_AUTH_MODE=off BERTH_LOG=warn "$bin/berth" serve --listen "127.0.0.1:$b" --data "$dir/b" >"$dir/b.log" 2>&1 &
pb=$!
for p in "$a" "$b"; do
  until curl -sf -o /dev/null "http://127.0.0.1:$p/healthz"; do sleep 0.1; done
  curl -sf -o /dev/null -X POST -H 'content-type: application/json' -d '{"name":"bench"}' "http://127.0.0.1:$p/api/v1/projects"
done
python3 - "http://127.0.0.1:$a" "$dir/k.pub" "$mode" <<'PY'
import json, sys, urllib.request
url, key, mode = sys.argv[1:]
def post(path, body):
    urllib.request.urlopen(urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                                  headers={"content-type": "application/json"}, method="POST"))
post("/api/v1/projects/bench/trust", {"name": "release", "policy": {"cosign": {"keys": [open(key).read()]}}})
post("/api/v1/projects/bench/rules", {"kind": "require-signature", "name": "signed", "trust": "release", "mode": mode})
PY
subject=(--url "http://127.0.0.1:$a" --pid "$pa" --name "rule-$mode")
reference=(--compare-url "http://127.0.0.1:$b" --compare-pid "$pb" --compare-name no-rule)
if [ "$order" = swapped ]; then
  subject=(--url "http://127.0.0.1:$b" --pid "$pb" --name no-rule)
  reference=(--compare-url "http://127.0.0.1:$a" --compare-pid "$pa" --compare-name "rule-$mode")
fi
"$bin/berth-bench" "${subject[@]}" "${reference[@]}" --only mget,mhead
