#!/usr/bin/env bash
# Workstation networking in the box (issue 6): Network::setup / teardown of one workstation's
# network (netns, veth, addresses, routes, persistent tap, nat set element), and throughput of
# a Firecracker guest through NAT to an HTTP server in a fake "internet" namespace, against the
# same transfer (same Python script) from the box's root namespace to that namespace over one
# veth (the peer: two plain namespaces, no VM). Nothing leaves the box (QEMU restrict=on).
# JSON on stdout, also kept in bench/out/net.json.
# Usage: bench/net.sh [cycles, default 50] [bytes, default 50000000]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/box.sh
mkdir -p bench/out
bench_in_box net net_bench "${1:-50}" "${2:-50000000}" | tee bench/out/net.json
