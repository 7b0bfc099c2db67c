#!/usr/bin/env bash
# What a wake-up on another vCPU costs a 2-vCPU guest in the box, and what can be done about
# it, the variants booted in turns over two rounds. Variant sets: `polling` (as built; haltpoll
# with a 200 us and a 2 ms window) and `placement` (the terminal path's tasks on vCPU 0: the
# PTY's unbound workqueue, the agent's threads with vsock's interrupt, both, and those with
# the terminal's program). Per boot: one byte's round trip between two guest processes (pipe;
# `cat` on a raw PTY) on one vCPU, one on each, or placed by the scheduler; the vsock floor
# (agent health); the agent's terminal echo over vsock, and the guest's interrupts per echo;
# with `polling`, Firecracker's CPU use with the guest idle and with a process in it waking
# every 10 ms and every 1 ms.
# JSON on stdout, also kept in bench/out/wake-<set>.json.
# Usage: bench/wake.sh [round trips, default 500] [polling|placement, default polling]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/box.sh
mkdir -p bench/out
set_name="${2:-polling}"
bench_in_box wake wake_bench "${1:-500}" "$set_name" | tee "bench/out/wake-$set_name.json"
