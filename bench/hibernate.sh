#!/usr/bin/env bash
# Hibernation against a cold boot through hearth serve's API, in the box (issue 25): hibernate
# time, the snapshot's size on disk, the Firecracker RSS it hands back, a terminal attach that
# wakes the workstation until its first byte and a key's echo; the same for a cold boot
# (stop, start, open a terminal, attach) in the same run. JSON on stdout, also kept in
# bench/out/hibernate.json. Usage: bench/hibernate.sh [rounds, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/box.sh
mkdir -p bench/out
bench_in_box hibernate lifecycle_bench "${1:-20}" | tee bench/out/hibernate.json
