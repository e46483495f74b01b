#!/usr/bin/env bash
# Builds every generated part, in dependency order: native code, the Node addon, the TypeScript bundles, then the
# guest image (which packs the agent bundle, the addon and the container init helper).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s -C native all
# Node's headers come with Debian's/NodeSource's nodejs package; pointing node-gyp at them keeps it offline.
nodedir=()
[ -f /usr/include/node/node_api.h ] && nodedir=(--nodedir=/usr)
(cd native/addon && npx --no-install node-gyp rebuild "${nodedir[@]}" --loglevel=error >/dev/null)
node scripts/bundle.mjs
bash guest-image/build.sh
