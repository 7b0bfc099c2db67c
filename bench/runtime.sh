#!/usr/bin/env bash
# Workstation VM timings in the box (issue 4): launch -> agent ready, exec round trip through
# the agent vs a local fork+exec in the same box, Firecracker RSS of an idle 512 MiB guest,
# clean stop. Usage: bench/runtime.sh [boots, default 5] [guest MiB, default 512] [disk|tmpfs]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p hearth -p hearth-agent --examples --bins
H=target/release/hearth
# The shared artifact cache, not one under the throwaway data dir (that would rebuild everything).
default_cache=$([ "$(id -u)" = 0 ] && echo /var/lib/hearth/cache || echo "$HOME/.local/share/hearth/cache")
export HEARTH_CACHE_DIR=${HEARTH_CACHE_DIR:-$default_cache}
data=$(mktemp -d /tmp/hearth-bench.XXXXXX)
mkdir -p bench/out
# The box's console log is kept (bench/out/runtime-box-console.log) for post-mortems.
trap 'cp "$data/box/console.log" bench/out/runtime-box-console.log 2>/dev/null; "$H" --data-dir "$data" box stop >/dev/null 2>&1 || true; rm -rf "$data"' EXIT
"$H" image build >/dev/null 2>&1
"$H" --data-dir "$data" box start --mem-mib 4096 >/dev/null
"$H" --data-dir "$data" box run --host-bin -- target/release/examples/vm_bench "${1:-5}" "${2:-512}" "${3:-disk}"
