#!/usr/bin/env bash
# Runs the cluster fault tests (tests/cluster.rs: a NATS stream leader or
# a baa-logd node killed with SIGKILL mid-append, a lease holder killed)
# over and over, for longer than the test command can, and stops at the
# first failure, keeping its output.
#
#   bash scripts/cluster-faults.sh          # 20 rounds
#   bash scripts/cluster-faults.sh 200      # 200 rounds
#
# Each round starts its own NATS clusters and baa-logd nodes on loopback
# and stops them by pid. The pinned nats-server is installed first
# (scripts/install-nats-server.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-20}
BAA_NATS_SERVER=$(bash scripts/install-nats-server.sh)
export BAA_NATS_SERVER
cargo test --locked --test e2e --no-run
log=$(mktemp -t cluster-faults.XXXXXX)
for round in $(seq 1 "$rounds"); do
    start=$(date +%s)
    if ! cargo test --locked --test e2e -- cluster:: >"$log" 2>&1; then
        echo "round $round of $rounds FAILED; output in $log"
        grep -E "^test |panicked|assert" "$log" | head -40
        exit 1
    fi
    echo "round $round of $rounds passed ($(( $(date +%s) - start ))s)"
done
rm -f "$log"
echo "all $rounds rounds passed"
