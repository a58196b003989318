#!/usr/bin/env bash
# Synap's Python SDK compatibility tests: synap_sdk 1.4.0 against target/debug/synap-server
# (or $SYNAP_SERVER_BIN). Build the server first: cargo build -p synap-server
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
cd "$here"
status=0
"$venv/bin/python" -m pytest -q "$@" || status=$?
exit "$status"
