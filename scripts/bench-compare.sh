#!/usr/bin/env bash
# Compares two baa-logd binaries on W1 and W2, for a before/after figure
# of a change on a noisy machine: the two servers are measured in turn,
# ROUNDS times each, by the same harness, and the medians are printed
# side by side with their ratio.
#
#   bash scripts/bench-compare.sh BEFORE_BIN AFTER_BIN [ROUNDS]   # default 3
#
# Build the "before" binary from a worktree of the old commit
# (`git worktree add /tmp/before OLD && cargo build --release -p baa-logd`
# there). Server CPU per million entries (W1) and server CPU seconds (W2)
# are the steadier figures here; entries/s and latencies move with
# whatever else the machine does. Results: target/bench-compare/.
set -euo pipefail
cd "$(dirname "$0")/.."

before=${1:?usage: bench-compare.sh BEFORE_BIN AFTER_BIN [ROUNDS]}
after=${2:?usage: bench-compare.sh BEFORE_BIN AFTER_BIN [ROUNDS]}
rounds=${3:-3}
out=target/bench-compare
mkdir -p "$out"

cargo build --release --locked -p baa-bench
bench=target/release/baa-bench
for round in $(seq 1 "$rounds"); do
    for side in before after; do
        bin=$before
        [[ $side == after ]] && bin=$after
        echo "round $round: $side ($bin)" >&2
        "$bench" --workloads w1,w2 --systems baa-logd --server-bin "$bin" \
            --json "$out/$side-$round.json" >/dev/null
    done
done

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys

out, rounds = sys.argv[1], int(sys.argv[2])
figures = {}
for side in ("before", "after"):
    for round in range(1, rounds + 1):
        report = json.load(open(f"{out}/{side}-{round}.json"))
        for row in report["w1"]:
            for name, key in (("entries/s", "entries_per_sec"), ("CPU s / M entries", "cpu_secs_per_million")):
                figures.setdefault((f"W1 {row['variant']}", name), {}).setdefault(side, []).append(row[key])
        for row in report["w2"]:
            for name, value in (("p99 ms", row["latency"]["p99_ms"]), ("server CPU s", row["cpu_secs"])):
                figures.setdefault((f"W2 {row['followers']} followers", name), {}).setdefault(side, []).append(value)
print(f"| workload | figure | before (median of {rounds}) | after | after ÷ before |")
print("| --- | --- | ---: | ---: | ---: |")
for (workload, name), sides in figures.items():
    before, after = (statistics.median(sides[side]) for side in ("before", "after"))
    print(f"| {workload} | {name} | {before:,.2f} | {after:,.2f} | {after / before:.3f} |")
PY
