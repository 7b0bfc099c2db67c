#!/usr/bin/env bash
# The project's test command: host packages, the build, the artifacts (built once, then
# reused from the cache by content hash), a bounded fuzzing run of the wire decoders, then
# every test, including the boot check that runs the real Firecracker in the box. Formatting
# and lints come first: a change that fails them fails in seconds, not after the VM tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --test
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked
# The web UI's types (the build above bundled it, installing its packages).
npm --prefix ui run --silent check
./target/debug/hearth image build
./target/debug/hearth image gc   # artifacts no ref names any more (an older agent's image, say)
./scripts/fuzz.sh 30
# The pinned Hypha server the sign-in tests start (a venv made once, cached by its pins).
./scripts/hypha-env.sh >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Every test binary runs even when one fails (a failure early must not hide the rest); the
# command still fails then.
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole workspace (cargo prints one per test binary), and which
# binaries failed.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
# Box tests run again after a named fault of the box or a guest (crates/hearth/tests/common.rs):
# how many, and which.
echo "retries: $(grep -c '^RETRY: ' "$log" || true)"
grep '^RETRY: ' "$log" || true
grep -E -A100 '^error: [0-9]+ targets? failed' "$log" | grep -E '^error|^ +`' || true
exit "$status"
