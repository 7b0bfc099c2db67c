#!/usr/bin/env bash
# A Python venv with a pinned Hypha server and hypha-rpc client, for the tests that sign in
# through a real Hypha server. Made once per set of pins (the directory is named by their
# hash) under the artifact cache; prints the venv's python.
set -euo pipefail
pins=(
  "hypha[server-apps]==0.21.137"
  # Newer sqlmodel breaks Hypha 0.21.137's start-up; sqlalchemy 2.1 likewise.
  "sqlmodel==0.0.24"
  "sqlalchemy<2.1"
)
cache=${HEARTH_CACHE_DIR:-${HEARTH_DATA_DIR:-/var/lib/hearth}/cache}
key=$(printf '%s\n' "${pins[@]}" "$(python3 -c 'import sys; print(sys.version)')" | sha256sum | cut -c1-16)
venv="$cache/hypha-venv-$key"
if [[ ! -x "$venv/bin/python" || ! -e "$venv/.complete" ]]; then
  echo "hypha-env: making $venv (pip install ${pins[*]})" >&2
  # A venv hard-codes its path, so it is made in place; `.complete` marks one that finished.
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
