#!/usr/bin/env bash
# Foundation benchmarks (issue 3): artifact build times and sizes, box start -> ready,
# Firecracker InstanceStart -> agent ready inside the box (10 sequential boots).
# Usage: bench/foundation.sh [hearth binary]   (default: target/release/hearth)
# Writes bench/out/foundation-*.json and prints the markdown tables for RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
H=${1:-target/release/hearth}
out=bench/out; mkdir -p "$out"
# The shared artifact cache, not one under the throwaway data dir (that would rebuild everything).
default_cache=$([ "$(id -u)" = 0 ] && echo /var/lib/hearth/cache || echo "$HOME/.local/share/hearth/cache")
export HEARTH_CACHE_DIR=${HEARTH_CACHE_DIR:-$default_cache}
data=$(mktemp -d /tmp/hearth-bench.XXXXXX)
trap '"$H" --data-dir "$data" box stop >/dev/null 2>&1 || true; rm -rf "$data"' EXIT

"$H" image ls --json > "$out/foundation-images.json"

# Box start -> control server answers; three cold starts (the data disk exists after the first).
: > "$out/foundation-box.jsonl"
for i in 1 2 3; do
  "$H" --data-dir "$data" box start --mem-mib 4096 >/dev/null
  "$H" --data-dir "$data" box status --json >> "$out/foundation-box.jsonl"
  [ "$i" = 3 ] || "$H" --data-dir "$data" box stop >/dev/null
done

# InstanceStart -> agent readiness line, 10 sequential boots (each after the previous VM was killed).
"$H" --data-dir "$data" box run -- hearth probe --count 10 --json > "$out/foundation-probe.json"
"$H" --data-dir "$data" box stop >/dev/null

python3 - "$out" <<'PY'
import json, sys, statistics
out = sys.argv[1]
imgs = json.load(open(f"{out}/foundation-images.json"))
def mib(b): return f"{b/2**20:.0f} MiB"
print("| artifact | refs | build time | size (apparent) | size (on disk) |")
print("|---|---|---|---|---|")
for a in sorted(imgs, key=lambda a: a["kind"]):
    print(f"| {a['kind']}/{a['hash']} | {', '.join(a['refs']) or '-'} | {a['build_secs']:.0f} s | {mib(a['apparent_bytes'])} | {mib(a['disk_bytes'])} |")
box = [json.loads(l) for l in open(f"{out}/foundation-box.jsonl")]
r = [b["box"]["ready_ms"] for b in box]
print(f"\nbox start -> ready (ms, n={len(r)}): " + ", ".join(map(str, r)) + f"; median {statistics.median(r):.0f}")
p = json.load(open(f"{out}/foundation-probe.json"))
s = p["summary"]["instance_start_to_ready_ms"]
g = sorted(x["guest_boot_ms"] for x in p["reports"] if x["ready"])
print(f"\nInstanceStart -> agent ready (ms, n={p['summary']['boots']}, ready {p['summary']['ready']}): "
      f"min {s['min']:.0f}, median {s['median']:.0f}, p95 {s['p95']:.0f}, max {s['max']:.0f}")
print("each: " + ", ".join(f"{x['instance_start_to_ready_ms']:.0f}" for x in p["reports"] if x["ready"]))
print(f"guest uptime at readiness (ms): median {statistics.median(g):.0f}, max {max(g)}")
print("Firecracker spawn -> API socket (ms): median " + f"{statistics.median(x['spawn_to_api_ms'] for x in p['reports']):.1f}")
PY
