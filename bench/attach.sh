#!/usr/bin/env bash
# `hearth ws attach` at a terminal, natively (no box, no workstation): keystroke round trips
# through the attach (pty → attach → WebSocket → a stand-in echo → back), against a WebSocket
# client's own echo to the same stand-in (the floor), and the attach's wake-ups while idle.
# JSON on stdout, also kept in bench/out/attach.json.
# Usage: bench/attach.sh [round trips, default 2000] [hearth binary, default the release build]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p hearth --bin hearth --example attach_bench
mkdir -p bench/out
target/release/examples/attach_bench "${2:-target/release/hearth}" "${1:-2000}" | tee bench/out/attach.json
