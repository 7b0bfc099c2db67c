#!/usr/bin/env bash
# Installs the Debian packages hearth needs on the host (kernel source and build tools,
# mmdebstrap, e2fsprogs, QEMU for the box, Node.js and npm for the web UI's bundle). Skips apt
# entirely when all are present. `--test` adds what only the tests use (Chromium, for the
# web UI's browser tests).
set -euo pipefail
packages=(
  linux-source-6.1 bc bison flex libelf-dev make gcc xz-utils   # kernels
  mmdebstrap e2fsprogs python3 python3-pip                       # root filesystems, Firecracker wheel
  qemu-system-x86                                                # the box
  iproute2 nftables                                              # workstation networking
  python3-venv                                                   # the tests' Hypha server (scripts/hypha-env.sh)
)
[ "${1:-}" = "--test" ] && packages+=(chromium)                  # the web UI's browser tests
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The web UI is bundled with Node.js (18 or later) and npm: any install of them will do
# (Debian's packages when there is none).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} host packages present, and Node.js $(node --version)"
  exit 0
fi
echo "deps: installing ${missing[*]}"
sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_="sudo"
$sudo_ apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q --no-install-recommends "${missing[@]}"
