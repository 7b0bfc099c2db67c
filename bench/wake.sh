#!/usr/bin/env bash
# What a wake-up on another vCPU costs a 2-vCPU guest in the box, and guest halt polling
# against it (as built; haltpoll with a 200 us and a 2 ms window), the variants booted in turns
# over two rounds: one byte's round trip between two guest processes (pipe; `cat` on a raw
# PTY) on one vCPU, one on each, or placed by the scheduler; the vsock floor (agent health);
# the agent's terminal echo over vsock; Firecracker's CPU use with the guest idle and with a
# process in it waking every 10 ms. JSON on stdout, also kept in bench/out/wake.json.
# Usage: bench/wake.sh [round trips, default 500]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/box.sh
mkdir -p bench/out
bench_in_box wake wake_bench "${1:-500}" | tee bench/out/wake.json
