#!/usr/bin/env bash
# Builds every generated part, in dependency order: native code, the Node addon, the TypeScript bundles, then the
# guest image (which packs the agent bundle, the addon and the container init helper).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s -C native all
(cd native/addon && npx --no-install node-gyp rebuild --loglevel=error >/dev/null)
node scripts/bundle.mjs
bash guest-image/build.sh
