#!/usr/bin/env bash
# The project's test command: host packages, the build, the artifacts (built once, then
# reused from the cache by content hash), then every test, including the boot check that
# runs the real Firecracker in the box, then a bounded fuzzing run of the wire decoders.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --workspace --locked
./target/debug/hearth image build
cargo test --workspace --locked
./scripts/fuzz.sh 30
