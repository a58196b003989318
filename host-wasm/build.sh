#!/usr/bin/env bash
# Builds the npm package `synap-wasm` into host-wasm/pkg:
#   pkg/node/  wasm-bindgen --target nodejs (CommonJS, loads the .wasm synchronously) plus an
#              ESM wrapper, so `require` and `import` both work in Node without an init call;
#   pkg/web/   wasm-bindgen --target web plus index.js, which initialises with top-level await,
#              so browsers and bundlers import it without an init call either;
#   pkg/client/ the TypeScript client `SynapClient` (client/src, compiled by tsc under
#              `strict`): client/esm (ES modules) and client/cjs (CommonJS), each with .d.ts;
#              every entry point exports it beside Engine and Simulation;
#   pkg/package.json with `exports` conditions (node: import/require; default: browser ESM),
#   TypeScript types, and `ws` as a dependency (the client's WebSocket where Node has no global
#   one).
# The compiler and `ws` come from host-wasm/package.json's lockfile: `npm ci` runs when they are
# missing. The client's examples (client/examples) are compiled last, into client/build.
# wasm-bindgen-cli must match the wasm-bindgen crate version in Cargo.lock exactly (the glue
# and the wasm's custom section must agree), so the script installs that version if needed.
# Also links host-wasm/node_modules/synap-wasm -> pkg so the Node tests and bench import the
# package by name, through its `exports`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$want" ]; then
  echo "build.sh: wasm-bindgen not found in Cargo.lock" >&2
  exit 1
fi
have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$have" != "$want" ]; then
  echo "build.sh: installing wasm-bindgen-cli $want (found: ${have:-none})"
  # Not --locked: the Cargo.lock published with wasm-bindgen-cli pins a dependency version
  # that has since been yanked, so a --locked install fails every time and only ever added a
  # failed attempt (and its build time) before the unlocked one. One path, always the same:
  # the CLI pinned to exactly the locked version ("=": never a newer patch release), its own
  # dependencies resolved by cargo as for any unlocked install. --force: cargo may record the
  # CLI as installed while the binary on PATH is missing or another version.
  cargo install wasm-bindgen-cli --version "=$want" --force
fi

cargo build -p synap-wasm --target wasm32-unknown-unknown --profile wasm-release
wasm="$root/target/wasm32-unknown-unknown/wasm-release/synap_wasm.wasm"

pkg="$here/pkg"
rm -rf "$pkg"
wasm-bindgen --target nodejs --out-dir "$pkg/node" "$wasm"
wasm-bindgen --target web --out-dir "$pkg/web" "$wasm"

if command -v wasm-opt >/dev/null 2>&1; then
  # Old binaryen releases can mistranslate wasm-bindgen's externref table, so the optimised
  # modules must pass a smoke test through both glues; otherwise the originals are kept.
  for f in "$pkg/node/synap_wasm_bg.wasm" "$pkg/web/synap_wasm_bg.wasm"; do
    cp "$f" "$f.orig"
    wasm-opt -Oz "$f" -o "$f" 2>/dev/null || cp "$f.orig" "$f"
  done
  if node "$here/smoke.mjs" "$pkg" >/dev/null 2>&1; then
    echo "build.sh: wasm-opt -Oz applied"
  else
    echo "build.sh: the wasm-opt output failed the smoke test; keeping the unoptimised modules"
    for f in "$pkg/node/synap_wasm_bg.wasm" "$pkg/web/synap_wasm_bg.wasm"; do mv "$f.orig" "$f"; done
  fi
  rm -f "$pkg"/*/synap_wasm_bg.wasm.orig
else
  echo "build.sh: wasm-opt not found (Debian package binaryen); skipping size optimisation"
fi
node "$here/smoke.mjs" "$pkg"

if [ ! -x "$here/node_modules/.bin/tsc" ] || [ ! -d "$here/node_modules/ws" ]; then
  echo "build.sh: installing the client's build dependencies (npm ci)"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
tsc="$here/node_modules/.bin/tsc"
"$tsc" -p "$here/client/tsconfig.json"
"$tsc" -p "$here/client/tsconfig.cjs.json"
echo '{ "type": "module" }' > "$pkg/client/esm/package.json"
echo '{ "type": "commonjs" }' > "$pkg/client/cjs/package.json"

version="$(awk -F'"' '/^\[workspace.package\]/ { p = 1 } p && /^version/ { print $2; exit }' Cargo.toml)"

# The nodejs glue is CommonJS; mark its folder so a `"type": "module"` root does not change that.
echo '{ "type": "commonjs" }' > "$pkg/node/package.json"
cat > "$pkg/node/index.mjs" <<'JS'
// ESM entry for Node: the CommonJS build loads the wasm synchronously, so no init is needed.
import synap from './synap_wasm.js';

export const { Engine, Simulation } = synap;
export * from '../client/esm/index.js';
export default synap;
JS
cat > "$pkg/node/index.d.mts" <<'TS'
export * from './synap_wasm.js';
export * from '../client/esm/index.js';
TS
cat > "$pkg/node/index.cjs" <<'JS'
// CommonJS entry for Node: the engine and simulator with the TypeScript client beside them.
module.exports = { ...require('./synap_wasm.js'), ...require('../client/cjs/index.js') };
JS
cat > "$pkg/node/index.d.ts" <<'TS'
export * from './synap_wasm.js';
export * from '../client/cjs/index.js';
TS
cat > "$pkg/web/index.js" <<'JS'
// Browser and bundler entry: fetches and instantiates the wasm next to this file with
// top-level await, so importers can use Engine and Simulation at once.
import init from './synap_wasm.js';

await init({ module_or_path: new URL('./synap_wasm_bg.wasm', import.meta.url) });

export * from './synap_wasm.js';
export * from '../client/esm/index.js';
export { init };
JS
cat > "$pkg/web/index.d.ts" <<'TS'
export * from './synap_wasm.js';
export * from '../client/esm/index.js';
export { default as init } from './synap_wasm.js';
TS
cat > "$pkg/package.json" <<JSON
{
  "name": "synap-wasm",
  "version": "$version",
  "description": "Synap's task-queue engine and workload simulator, compiled to WebAssembly",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "./node/index.cjs",
  "module": "./web/index.js",
  "types": "./web/index.d.ts",
  "exports": {
    ".": {
      "node": {
        "import": {
          "types": "./node/index.d.mts",
          "default": "./node/index.mjs"
        },
        "require": {
          "types": "./node/index.d.ts",
          "default": "./node/index.cjs"
        }
      },
      "default": {
        "types": "./web/index.d.ts",
        "default": "./web/index.js"
      }
    },
    "./client": {
      "types": "./client/esm/index.d.ts",
      "default": "./client/esm/index.js"
    },
    "./web/raw": {
      "types": "./web/synap_wasm.d.ts",
      "default": "./web/synap_wasm.js"
    },
    "./package.json": "./package.json"
  },
  "dependencies": {
    "ws": "^8.18.0"
  },
  "files": ["node", "web", "client"],
  "sideEffects": ["./web/index.js"]
}
JSON

mkdir -p "$here/node_modules"
ln -sfn ../pkg "$here/node_modules/synap-wasm"
# The examples import the package by name, as users do, so they compile once it is linked.
"$tsc" -p "$here/client/tsconfig.examples.json"

for f in "$pkg/node/synap_wasm_bg.wasm" "$pkg/web/synap_wasm_bg.wasm"; do
  raw=$(wc -c < "$f")
  gz=$(gzip -9 -c "$f" | wc -c)
  echo "build.sh: ${f#"$root"/}: $raw bytes raw, $gz bytes gzipped"
done
echo "build.sh: package ready in ${pkg#"$root"/}"
