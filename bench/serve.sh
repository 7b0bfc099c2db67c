#!/usr/bin/env bash
# hearth serve's WebSocket terminals vs terminado, in the box (issue 8): keystroke echo round
# trips (and the bare vsock round trip to the same guest, the floor under any echo there),
# output throughput, list latency with 100 workstation records. JSON on stdout, also kept in
# bench/out/serve.json. Usage: bench/serve.sh [keystrokes, default 500] [MB of output, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/box.sh
mkdir -p bench/out
bench_in_box serve serve_bench "${1:-500}" "${2:-20}" | tee bench/out/serve.json
