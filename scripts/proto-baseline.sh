#!/usr/bin/env bash
# Re-makes proto/baseline/baa.logging.v1.binpb, the image of the released
# API that `buf breaking` in scripts/test.sh compares proto/ against, and
# records why at the end of proto/baseline/README.md. Run it at a release,
# or to make a breaking change on purpose, then commit proto/ with it:
#
#   bash scripts/proto-baseline.sh "0.2.0: RunMetadata.command removed, no client sets it"
set -euo pipefail
cd "$(dirname "$0")/.."

reason=${1:?usage: bash scripts/proto-baseline.sh "why the baseline moves"}
if [[ ! -x tools/node_modules/.bin/buf ]]; then
  npm ci --prefix tools --no-audit --no-fund --loglevel=error
fi
buf=$PWD/tools/node_modules/.bin/buf

cd proto
"$buf" lint
echo "Changes the new baseline accepts (none is fine):"
"$buf" breaking --against baseline/baa.logging.v1.binpb || true
# No source info: comments and line numbers do not matter to buf breaking,
# and without them the image changes only when the API does.
"$buf" build --exclude-source-info -o baseline/baa.logging.v1.binpb
printf -- '- %s: %s\n' "$(date -u +%Y-%m-%d)" "$reason" >> baseline/README.md
echo "proto/baseline/ re-made; commit it with the change to proto/."
