#!/usr/bin/env bash
# Fuzzes the decoders of what crosses a trust boundary (frames, control messages, the terminal
# attach stream the server reads from a guest), a bounded time each: scripts/fuzz.sh [seconds
# per target, default 30].
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz builds with sanitizer flags (-Z); RUSTC_BOOTSTRAP lets the stable toolchain take
# them, since no nightly toolchain can be fetched here.
export RUSTC_BOOTSTRAP=1
for target in frame_decode control_messages attach_stream; do
  mkdir -p "corpus/$target"
  cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- -max_total_time="$secs"
done
