#!/usr/bin/env bash
# Kills baa-logd with SIGKILL again and again while three writers append,
# and checks that every line each writer sent is stored once, in order,
# with no gap: the suite's kill loop (tests/client.rs,
# writers_lose_and_duplicate_nothing_across_a_kill_loop), for as many kills
# as asked.
#
#   bash scripts/kill-loop.sh [KILLS]   # default 1000, about a minute and a half
set -euo pipefail
cd "$(dirname "$0")/.."
BAA_KILL_LOOP_KILLS=${1:-1000} cargo test --locked -p baa-logging --test e2e -- \
    --exact client::writers_lose_and_duplicate_nothing_across_a_kill_loop --nocapture
