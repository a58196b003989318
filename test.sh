#!/usr/bin/env bash
# Synap's one test command: installs what the tests need when it is missing, then runs every
# test — Rust (unit, simulation swarm, end-to-end against the real server, official Rust SDK
# compatibility, the sample's Rust programs, the docs' links and snippets), the API docs
# (cargo doc), Python (the official Python SDK against the server; the Python client `synap`
# and its sample programs), Node (the npm package of the wasm build with the TypeScript client
# and its sample programs) and browser (headless Chromium).
#
#   ./test.sh            everything
#   SIM_RUNS=5000 ./test.sh    a wider swarm (SIM_SEED=n pins one seed)
#
# Installs, only when missing: the wasm32-unknown-unknown target, wasm-bindgen-cli pinned to
# the wasm-bindgen crate's exact version (by host-wasm/build.sh), a Python venv with synap-sdk
# and pytest (tests/python/run.sh), a venv with the Python client and pytest
# (client/python/run-tests.sh), the TypeScript compiler and `ws` (npm ci in host-wasm, by
# build.sh), the npm packages of host-wasm/browser and Debian's chromium for the browser test,
# and the web app's npm packages (npm ci in www, by www/build.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }
failures=()
run() {
  local name="$1"; shift
  if "$@"; then echo "ok: $name"; else echo "FAILED: $name"; failures+=("$name"); fi
}

step "toolchain"
cargo --version
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
if ! command -v node >/dev/null; then
  echo "node is required for the Node and browser tests" >&2
  exit 1
fi
node --version

step "synap-core purity: builds for wasm32 and depends on no runtime, clock or OS randomness"
core_purity() {
  cargo build -q -p synap-core --target wasm32-unknown-unknown || return 1
  local bad
  bad=$(cargo tree -q -p synap-core -e normal --prefix none | awk '{print $1}' | grep -xE 'tokio|mio|getrandom' || true)
  if [[ -n $bad ]]; then echo "synap-core depends on: $bad"; return 1; fi
  if grep -rnE 'Instant::now|SystemTime::now|thread_rng|from_entropy|std::collections::Hash(Map|Set)' core/src; then
    echo "core/src reads a clock, OS randomness or a RandomState map"; return 1
  fi
}
run "core purity" core_purity

step "synap-cluster purity: no runtime, sockets, clock or OS randomness of its own"
cluster_purity() {
  # raft-rs itself links rand (its unseeded election jitter is overwritten from the node's
  # seeded PRNG on every term or role change), so getrandom is allowed here, tokio and mio not.
  local bad
  bad=$(cargo tree -q -p synap-cluster -e normal --prefix none | awk '{print $1}' | grep -xE 'tokio|mio' || true)
  if [[ -n $bad ]]; then echo "synap-cluster depends on: $bad"; return 1; fi
  if grep -rnE 'Instant::now|SystemTime::now|thread_rng|from_entropy|std::collections::Hash(Map|Set)|std::net' cluster/src; then
    echo "cluster/src reads a clock, OS randomness, sockets or a RandomState map"; return 1
  fi
}
run "cluster purity" cluster_purity

step "format and lints"
run "cargo fmt" cargo fmt --all -- --check
run "cargo clippy" cargo clippy -q --workspace --all-targets -- -D warnings

step "API docs: cargo doc builds without warnings"
run "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc -q --workspace --no-deps

step "Rust tests (unit, swarm, end-to-end, SDK compatibility, docs)"
# The end-to-end tests start the real binaries; build them first so no test times out
# waiting for a build.
cargo build -q --workspace --bins --examples
run "cargo test" cargo test --workspace

step "official Python SDK (synap-sdk from PyPI) against the server"
run "python SDK tests" bash tests/python/run.sh

step "Python client (synap-client: import synap) and the sample's Python programs"
run "python client tests" bash client/python/run-tests.sh

step "wasm package with the TypeScript client, and Node tests (engine, simulator, client, sample)"
# build.sh runs npm ci in host-wasm when the compiler or ws is missing.
run "build npm package" bash host-wasm/build.sh
if [[ -d host-wasm/pkg/client ]]; then
  run "node tests" node --test host-wasm/tests/
fi

step "browser test (headless Chromium)"
if ! command -v chromium >/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
if [[ ! -d host-wasm/browser/node_modules/playwright-core ]]; then
  (cd host-wasm/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
run "browser tests" node --test host-wasm/browser/

step "web app (www): bundle, committed copy current, browser tests against the server"
# build.sh runs npm ci in www when esbuild, uPlot, TypeScript, playwright-core or axe-core is
# missing, rebuilds www/dist from www/src and host-wasm/pkg, and fails when the result differs
# from the committed www/dist (the copy the server binary embeds for a fresh clone).
run "web app bundle" bash www/build.sh --check
# The server embeds www/dist at compile time: rebuild it so the tests see this bundle.
cargo build -q -p synap-server
run "web app browser tests" node --test --test-concurrency=1 www/tests/

echo
if ((${#failures[@]})); then
  echo "test.sh: ${#failures[@]} step(s) failed: ${failures[*]}"
  exit 1
fi
echo "test.sh: every step passed"
