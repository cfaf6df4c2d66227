#!/usr/bin/env bash
# Installs the pinned dependencies of the clients in other languages
# (tests/polyglot/): a Python virtual environment from requirements.txt and
# the Node.js packages of package-lock.json. Each is installed again only
# when its pin file changed since the last install, so a second run takes a
# moment. scripts/test.sh runs this before cargo test.
set -euo pipefail
cd "$(dirname "$0")/../tests/polyglot"

# Python: a venv under python/.venv. Wheels only, so that a missing wheel
# fails at once instead of compiling grpcio from source for many minutes.
venv=python/.venv
if ! cmp -s python/requirements.txt "$venv/installed-requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --only-binary=:all: --requirement python/requirements.txt
  "$venv/bin/python" -m pip check --disable-pip-version-check
  cp python/requirements.txt "$venv/installed-requirements.txt"
fi

# Node.js: node/node_modules, exactly as the lock file says.
if ! cmp -s node/package-lock.json node/node_modules/.installed-package-lock.json; then
  npm ci --prefix node --no-audit --no-fund --loglevel=error
  cp node/package-lock.json node/node_modules/.installed-package-lock.json
fi
