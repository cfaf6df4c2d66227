#!/usr/bin/env bash
# Runs every check and every test of the repository, on a fresh machine:
# installs the pinned tools it needs into tools/node_modules and the
# clients in other languages' dependencies under tests/polyglot/ and the
# browser tests' chromium and venv (tests/browser/) and the pinned
# nats-server of the cluster tests, checks the
# Protobuf files with buf (lint, format, and breaking changes against
# proto/baseline/), the Rust code with rustfmt and clippy, the deployment
# files in deploy/ with the validators scripts/check-deploy.sh installs,
# and runs the whole test suite against real servers.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# A one-off build gains nothing from incremental compilation's caches,
# which would double the target directory's size.
export CARGO_INCREMENTAL=0
step "free disk space"
df -h . | tail -n 1

step "installing pinned tools (tools/package-lock.json)"
npm ci --prefix tools --no-audit --no-fund --loglevel=error
buf=$PWD/tools/node_modules/.bin/buf

step "buf lint and buf format (proto/)"
(cd proto && "$buf" lint && "$buf" format --diff --exit-code)

step "buf breaking (proto/ against proto/baseline/)"
if ! (cd proto && "$buf" breaking --against baseline/baa.logging.v1.binpb); then
  echo "A breaking change to the API: undo it, or make it on purpose as" \
    "proto/baseline/README.md says." >&2
  exit 1
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "deploy/ files (scripts/check-deploy.sh)"
bash scripts/check-deploy.sh

step "polyglot client dependencies (tests/polyglot/)"
bash scripts/polyglot-setup.sh

step "browser tests: chromium and the Python venv (tests/browser/)"
bash scripts/browser-setup.sh

step "the pinned nats-server for the cluster tests (scripts/install-nats-server.sh)"
BAA_NATS_SERVER=$(bash scripts/install-nats-server.sh)
export BAA_NATS_SERVER

step "cargo test"
cargo test --workspace --locked

step "benchmark harness smoke run (tiny sizes, a few seconds; no figure is checked)"
# Keeps crates/bench working; peers that scripts/peers.sh did not start
# show as "not available". The real run is in docs/benchmarks.md.
cargo run --locked -p baa-bench -- --smoke --json target/baa-bench-smoke.json
# The JetStream rows start NATS clusters of their own (the pinned
# nats-server from scripts/install-nats-server.sh), so they need no peers.
cargo run --locked -p baa-bench -- --smoke --workloads w1,w2,w10 --no-peers \
    --systems baa-logd-js1,baa-logd-js3-sync,nats-js3-sync \
    --json target/baa-bench-smoke-jetstream.json
