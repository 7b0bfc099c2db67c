#!/usr/bin/env bash
# Runs hearth on its embedded defaults: installs host packages, builds hearth, then
# `hearth serve`, which builds the artifacts it needs (progress shown; cached after the first
# run), checks whether this host's KVM runs guests (a real probe boot) and serves directly or
# from inside the box. Extra arguments go to `hearth serve` (e.g. --listen 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release --workspace --locked
exec ./target/release/hearth serve "$@"
