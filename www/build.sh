#!/usr/bin/env bash
# Builds Synap's web app into www/dist: index.html and assets/ (app.js, app.css, worker.js,
# the engine's synap_wasm_bg.wasm, icon.svg). The server binary embeds www/dist and serves it
# at /; any static file server can serve it too.
#
#   www/build.sh            build (the npm package host-wasm/pkg first, when it is missing)
#   www/build.sh --check    build, then fail if www/dist differs from the committed copy
#
# Installs, only when missing: the npm packages of www/package-lock.json (esbuild, uPlot,
# TypeScript, and the browser tests' playwright-core and axe-core), by `npm ci`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
pkg="$root/host-wasm/pkg"
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: www/build.sh [--check]" >&2; exit 2 ;;
esac

if [ ! -f "$pkg/web/synap_wasm_bg.wasm" ] || [ ! -f "$pkg/client/esm/index.js" ]; then
  echo "www/build.sh: building the npm package first (host-wasm/build.sh)"
  bash "$root/host-wasm/build.sh"
fi
if [ ! -x "$here/node_modules/.bin/esbuild" ] || [ ! -d "$here/node_modules/uplot" ] || [ ! -x "$here/node_modules/.bin/tsc" ]; then
  echo "www/build.sh: installing the build dependencies (npm ci)"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
# The app imports the package by name, as any user of it would.
ln -sfn ../../host-wasm/pkg "$here/node_modules/synap-wasm"

cd "$here"
node_modules/.bin/tsc -p tsconfig.json
out="$here/dist"
rm -rf "$out"
mkdir -p "$out/assets"
# `ws` is the client's WebSocket for Node only; browsers use their own, so it stays out.
node_modules/.bin/esbuild src/main.ts src/worker.ts --bundle --format=esm --target=es2022 \
  --minify --legal-comments=none --external:ws --outdir="$out/assets" \
  --entry-names='[name]' --log-level=warning
mv "$out/assets/main.js" "$out/assets/app.js"
mv "$out/assets/main.css" "$out/assets/app.css"
cp index.html "$out/index.html"
cp icon.svg "$out/assets/icon.svg"
cp "$pkg/web/synap_wasm_bg.wasm" "$out/assets/synap_wasm_bg.wasm"

for f in "$out"/index.html "$out"/assets/*; do
  printf 'www/build.sh: %-32s %8d bytes, %7d gzipped\n' "${f#"$root"/}" "$(wc -c < "$f")" "$(gzip -9 -c "$f" | wc -c)"
done

if ((check)); then
  cd "$root"
  if [ -n "$(git status --porcelain -- www/dist)" ]; then
    git status --short -- www/dist
    echo "www/build.sh: www/dist differs from the committed copy: commit the rebuilt www/dist" >&2
    exit 1
  fi
  echo "www/build.sh: www/dist matches the committed copy"
fi
