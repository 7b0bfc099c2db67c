#!/usr/bin/env bash
# The guest kernel's timer and idle settings, in the box: one image and kernel booted once per
# kernel command line variant and round (as built; tickless with low-resolution timers;
# periodic tick with low-resolution timers, the peer): Firecracker's CPU use with the guest
# idle, a 1 ms sleep's real length in the guest, exec and keystroke echo round trips through
# the agent, 20 MB output floods with a deadline (failures counted). JSON on stdout, also kept in
# bench/out/guest.json. Usage: bench/guest.sh [echoes, default 300] [idle seconds, default 20] [vCPUs, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/box.sh
mkdir -p bench/out
bench_in_box guest guest_bench "${1:-300}" "${2:-20}" "${3:-2}" | tee bench/out/guest.json
