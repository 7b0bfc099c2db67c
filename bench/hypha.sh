#!/usr/bin/env bash
# Keystroke echo through hearth's Hypha service (issue 26) against hearth's REST polling and a
# seed-style Hypha terminal service, in one run (bench/hypha.py says what each path is): a
# local Hypha server (scripts/hypha-env.sh) and `hearth serve` (from the box on hosts whose
# KVM runs no guests) with the bridge. JSON on stdout, also kept in bench/out/hypha.json.
# Usage: bench/hypha.sh [rounds, default 100]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p hearth -p hearth-agent --bins
H=$PWD/target/release/hearth
py=$(bash scripts/hypha-env.sh)
default_cache=$([ "$(id -u)" = 0 ] && echo /var/lib/hearth/cache || echo "$HOME/.local/share/hearth/cache")
export HEARTH_CACHE_DIR=${HEARTH_CACHE_DIR:-$default_cache}
"$H" image build >/dev/null 2>&1
data=$(mktemp -d /tmp/hearth-bench.XXXXXX)
mkdir -p bench/out
hypha_pid="" serve_pid=""
cleanup() {
  [ -z "$serve_pid" ] || { kill -TERM "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; }
  [ -z "$hypha_pid" ] || { kill "$hypha_pid" 2>/dev/null || true; wait "$hypha_pid" 2>/dev/null || true; }
  "$H" --data-dir "$data" box stop >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret=bench-secret-$$
(cd "$data" && HYPHA_JWT_SECRET=$secret exec "$py" -m hypha.server --host 127.0.0.1 --port "$port") >"$data/hypha.log" 2>&1 &
hypha_pid=$!
hypha=http://127.0.0.1:$port
until curl -fsS "$hypha/health/readiness" 2>/dev/null | grep -q OK; do sleep 0.5; done
token() {
  "$py" -c 'import sys, time; from jose import jwt; now = int(time.time()); sub, secret = sys.argv[1:3]
print(jwt.encode({"iss": "https://amun.ai/", "aud": "https://amun-ai.eu.auth0.com/api/v2/", "sub": sub, "iat": now, "exp": now + 3600,
  "scope": f"ws:ws-user-{sub}#a wid:ws-user-{sub}", "https://amun.ai/roles": ["user"], "https://amun.ai/email": f"{sub}@lab.org"}, secret, algorithm="HS256"))' "$1" "$secret"
}
bridge_token=$(token hearth-bridge)
user_token=$(token ann)
HEARTH_DATA_DIR=$data HEARTH_LOG=warn HEARTH_NETWORK__EGRESS=none HEARTH_HYPHA__SERVER_URL=$hypha \
  HEARTH_HYPHA__SERVICE_TOKEN=$bridge_token HEARTH_HYPHA__BRIDGE_PYTHON=$py \
  "$H" serve --listen 127.0.0.1:0 --mem-mib 4096 >"$data/serve.out" 2>"$data/serve.err" &
serve_pid=$!
until grep -q "serving on" "$data/serve.out" 2>/dev/null; do
  kill -0 "$serve_pid" 2>/dev/null || { cat "$data/serve.err" >&2; exit 1; }
  sleep 0.5
done
base=$(sed -n 's/^hearth: serving on \([^ ]*\).*/\1/p' "$data/serve.out" | head -1)
"$py" bench/hypha.py "$hypha" "$bridge_token" "$user_token" "$base" "$(cat "$data/admin.token")" "${1:-100}" | tee bench/out/hypha.json
