#!/usr/bin/env bash
# Runs hearth on its embedded defaults: installs host packages, builds hearth, builds the
# artifacts (progress shown; cached after the first run), checks the host, and where KVM
# cannot run guests, starts the box. The HTTP service (`hearth serve`) lands with issue 8.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release --workspace --locked
hearth=./target/release/hearth
"$hearth" image build
"$hearth" doctor || true
if [ "$("$hearth" doctor --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["mode"])')" = box ]; then
  "$hearth" box status >/dev/null 2>&1 || "$hearth" box start
  "$hearth" box status
fi
