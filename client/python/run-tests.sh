#!/usr/bin/env bash
# The Python client's checks: `mypy --strict` over the package (it ships py.typed), then its
# tests (unit, end-to-end against target/debug/synap-server or $SYNAP_SERVER_BIN, and the
# sample programs). Creates client/python/.venv when missing and
# installs the package with its test extra into it. Build the server first:
# cargo build -p synap-server
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$here[test]"
cd "$here"
"$venv/bin/python" -m mypy --strict src/synap
status=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" || status=$?
if [[ $status -eq 5 ]]; then
  echo "run-tests.sh: pytest collected no tests" >&2
fi
exit "$status"
