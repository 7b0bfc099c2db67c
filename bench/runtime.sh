#!/usr/bin/env bash
# Workstation VM timings in the box (issue 4): launch -> agent ready, exec round trip through
# the agent vs a local fork+exec in the same box, Firecracker RSS of an idle 512 MiB guest,
# clean stop. Usage: bench/runtime.sh [boots, default 5] [guest MiB, default 512] [disk|tmpfs]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/box.sh
bench_in_box runtime vm_bench "${1:-5}" "${2:-512}" "${3:-disk}"
