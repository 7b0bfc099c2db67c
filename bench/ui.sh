#!/usr/bin/env bash
# The web UI's latency in Chromium against `hearth serve` on this host (serving from the box
# where KVM cannot run guests), one workstation with a shell: opening a terminal's page to its
# prompt rendered, a key pressed to its echo rendered, and a bare WebSocket's echo to the same
# terminal from the same page (ui/test/latency.mjs). JSON on stdout, also kept in
# bench/out/ui.json. Usage: bench/ui.sh [page opens, default 10] [keystrokes, default 200]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --test >/dev/null
cargo build -q --release --workspace --locked
data=$(mktemp -d)
default_cache=$([ "$(id -u)" -eq 0 ] && echo /var/lib/hearth/cache || echo "$HOME/.local/share/hearth/cache")
export HEARTH_DATA_DIR=$data HEARTH_CACHE_DIR=${HEARTH_CACHE_DIR:-$default_cache} HEARTH_LOG=warn HEARTH_NETWORK__EGRESS=none
target/release/hearth serve --listen 127.0.0.1:0 --mem-mib 4096 >"$data/serve.out" 2>"$data/serve.err" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
until grep -q "serving on" "$data/serve.out"; do
  kill -0 $server 2>/dev/null || { cat "$data/serve.err" >&2; exit 1; }
  sleep 0.5
done
base=$(sed -n 's/^hearth: serving on \([^ ]*\).*/\1/p' "$data/serve.out")
api() { curl -sf -H "Authorization: Bearer $(cat "$data/admin.token")" -H 'Content-Type: application/json' -X "$1" "$base$2" ${3:+-d "$3"}; }
password="bench-$(head -c8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
api PATCH /api/v1/users/admin "{\"password\": \"$password\"}" >/dev/null
ws=$(api POST /api/v1/workstations '{"name": "bench", "mem_size_mib": 1024}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
tid=$(api POST "/api/v1/workstations/$ws/terminals" '{"rows": 24, "cols": 80}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
mkdir -p bench/out
HEARTH_URL=$base HEARTH_USER=admin HEARTH_PASSWORD=$password WORKSTATION=$ws TERMINAL=$tid OPENS=${1:-10} KEYS=${2:-200} \
  node ui/test/latency.mjs | tee bench/out/ui.json
