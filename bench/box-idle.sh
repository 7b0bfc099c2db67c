#!/usr/bin/env bash
# What an idle box costs its host: QEMU's CPU time (user + system, /proc/PID/stat) over an idle
# spell after a settle, as % of one host CPU. Usage: bench/box-idle.sh [settle s, default 20] [idle s, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p hearth --bin hearth
H=target/release/hearth
default_cache=$([ "$(id -u)" = 0 ] && echo /var/lib/hearth/cache || echo "$HOME/.local/share/hearth/cache")
export HEARTH_CACHE_DIR=${HEARTH_CACHE_DIR:-$default_cache}
"$H" image build >/dev/null 2>&1
data=$(mktemp -d /tmp/hearth-box-idle.XXXXXX)
trap '"$H" --data-dir "$data" box stop >/dev/null 2>&1 || true; rm -rf "$data"' EXIT
"$H" --data-dir "$data" box start --mem-mib 4096 >/dev/null
pid=$(cat "$data/box/qemu.pid" 2>/dev/null || pgrep -f "qemu-system.*$data" | head -1)
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
sleep "${1:-20}"
t0=$(cpu)
sleep "${2:-30}"
t1=$(cpu)
hz=$(getconf CLK_TCK)
awk -v d=$((t1 - t0)) -v hz="$hz" -v s="${2:-30}" 'BEGIN { printf "{\"idle_box_qemu_cpu_percent\": %.2f}\n", d * 100 / hz / s }'
