#!/usr/bin/env bash
# Installs what the browser tests (tests/browser/) need: Debian's chromium
# from apt, and a Python virtual environment at tests/browser/.venv with the
# pinned, hashed packages of tests/browser/requirements.txt (pytest and
# Playwright's Python API). The venv is installed again only when
# requirements.txt changed since the last install, so a second run takes a
# moment. scripts/test.sh runs this before cargo test.
#
# Playwright's own browser download (`playwright install`) is never used:
# the tests launch the system chromium through `executable_path`, so the
# browser comes from the distribution, with its security updates.
#
# Whatever cannot be installed makes this script fail with a message: the
# browser tests are never skipped quietly.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "browser-setup: $*" >&2
  exit 1
}

# Installs Debian packages without questions; needs root and apt-get.
apt_install() {
  command -v apt-get >/dev/null ||
    fail "cannot install $* (no apt-get): install it by hand"
  if [ "$(id -u)" -ne 0 ]; then
    fail "cannot install $* (apt-get needs root): run as root, or install it by hand"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || fail "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "$@" ||
    fail "apt-get install $* failed"
}

# chromium: Debian's package. The tests look it up as `chromium` (or
# $BAA_CHROMIUM).
if ! command -v "${BAA_CHROMIUM:-chromium}" >/dev/null; then
  apt_install chromium
  command -v chromium >/dev/null ||
    fail "chromium is still not on PATH after apt-get install chromium"
fi
"${BAA_CHROMIUM:-chromium}" --version >/dev/null 2>&1 ||
  fail "chromium does not run: $("${BAA_CHROMIUM:-chromium}" --version 2>&1 | head -3)"

# Python: venv and ensurepip come in Debian's python3-venv.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_install python3 python3-venv
fi

# The venv. Wheels only and every hash checked, so that a missing wheel
# fails at once and nothing unpinned slips in.
venv=tests/browser/.venv
requirements=tests/browser/requirements.txt
if ! cmp -s "$requirements" "$venv/installed-requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv" || fail "python3 -m venv $venv failed"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-hashes --only-binary=:all: --requirement "$requirements" ||
    fail "pip install -r $requirements failed"
  "$venv/bin/python" -m pip check --disable-pip-version-check
  cp "$requirements" "$venv/installed-requirements.txt"
fi

# The last check: Playwright drives this chromium.
"$venv/bin/python" - <<'PY' || fail "Playwright cannot launch chromium (see above)"
import os, shutil
from playwright.sync_api import sync_playwright

path = shutil.which(os.environ.get("BAA_CHROMIUM", "chromium"))
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
    print(f"browser-setup: chromium {browser.version} at {path}, driven by Playwright")
    browser.close()
PY
