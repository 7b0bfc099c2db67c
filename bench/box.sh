# Sourced by the benchmarks that run in the box: `bench_in_box NAME EXAMPLE ARGS…` builds
# hearth and its examples (release), the artifacts (shared cache), starts a box on a throwaway
# data dir and runs target/release/examples/EXAMPLE in it. The box is stopped and its data
# removed on exit; its console log is kept as bench/out/NAME-box-console.log for post-mortems.
# BENCH_BOX_CPUS=N: the box's vCPUs (default: the host's cores; 1 is about 4x slower here).
bench_in_box() {
  local name=$1 example=$2
  shift 2
  cargo build -q --release -p hearth -p hearth-agent --examples --bins
  H=target/release/hearth
  # The shared artifact cache, not one under the throwaway data dir (that would rebuild everything).
  local default_cache
  default_cache=$([ "$(id -u)" = 0 ] && echo /var/lib/hearth/cache || echo "$HOME/.local/share/hearth/cache")
  export HEARTH_CACHE_DIR=${HEARTH_CACHE_DIR:-$default_cache}
  bench_data=$(mktemp -d /tmp/hearth-bench.XXXXXX)
  mkdir -p bench/out
  trap 'cp "$bench_data/box/console.log" "bench/out/'"$name"'-box-console.log" 2>/dev/null; "$H" --data-dir "$bench_data" box stop >/dev/null 2>&1 || true; rm -rf "$bench_data"' EXIT
  "$H" image build >/dev/null 2>&1
  "$H" --data-dir "$bench_data" box start --mem-mib 4096 ${BENCH_BOX_CPUS:+--cpus $BENCH_BOX_CPUS} >/dev/null
  # BENCH_HALT_POLL_NS=N: the box's KVM halt polling (kvm.halt_poll_ns; its default polls up to 200 us).
  [ -z "${BENCH_HALT_POLL_NS:-}" ] || "$H" --data-dir "$bench_data" box run -- sh -c "echo $BENCH_HALT_POLL_NS > /sys/module/kvm/parameters/halt_poll_ns"
  # BENCH_NETWORK=false|true: the served workstations' networking (default: the server's);
  # BENCH_VCPUS=N: the benchmarked workstation's vCPUs (default 2); BENCH_SERVER_WORKERS=N:
  # the server's async worker threads (config `workers`; default half the box's vCPUs);
  # BENCH_GUEST_HALT_POLL_US=N: the served workstations' halt polling (config
  # `guest_halt_poll_us`; default 0, off).
  "$H" --data-dir "$bench_data" box run ${BENCH_NETWORK:+--env BENCH_NETWORK=$BENCH_NETWORK} ${BENCH_VCPUS:+--env BENCH_VCPUS=$BENCH_VCPUS} ${BENCH_SERVER_WORKERS:+--env HEARTH_WORKERS=$BENCH_SERVER_WORKERS} ${BENCH_GUEST_HALT_POLL_US:+--env HEARTH_GUEST_HALT_POLL_US=$BENCH_GUEST_HALT_POLL_US} --host-bin -- "target/release/examples/$example" "$@"
}
