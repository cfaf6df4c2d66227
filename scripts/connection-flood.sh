#!/usr/bin/env bash
# Floods a baa-logd with silent TCP connections (sockets that never send
# the HTTP/2 preface) past its descriptor limit, and prints what the
# server does meanwhile: its CPU, its open descriptors, its health, and
# what it logged. A figure for docs/operations.md, not a test.
#
#   bash scripts/connection-flood.sh [CONNECTIONS]   # default 600
#
# The server runs with `ulimit -n 256`, `--handshake-timeout 3s` and
# `--max-connections 10000`, so the descriptors run out before the cap.
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-600}
cargo build --release --locked -p baa-logd -p baa-log >&2
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
(
    ulimit -n 256
    exec target/release/baa-logd --listen 127.0.0.1:0 --data-dir "$work/data" \
        --handshake-timeout 3s >"$work/out" 2>"$work/log"
) &
server=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$work/out" 2>/dev/null && break
    sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$work/out")
url="http://$addr"
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
echo "before: health $(target/release/baa-log --server "$url" health 2>&1 | tail -1), fds $(ls /proc/$server/fd | wc -l)"
python3 - "$addr" "$connections" "$server" "$url" <<'PY'
import os, resource, socket, subprocess, sys, time
addr, count, pid, url = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
host, port = addr.rsplit(":", 1)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def ticks():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
socks = []
for _ in range(count):
    s = socket.socket()
    s.connect((host, int(port)))
    socks.append(s)
start, t0 = ticks(), time.time()
time.sleep(2)
health = subprocess.run(["target/release/baa-log", "--server", url, "health"], capture_output=True, text=True)
fds = len(os.listdir(f"/proc/{pid}/fd"))
time.sleep(3)
cpu = (ticks() - start) / 100 / (time.time() - t0) * 100
print(f"{count} silent connections: server CPU {cpu:.1f}% over {time.time() - t0:.1f} s, "
      f"fds {fds} (limit 256), health during: {(health.stdout + health.stderr).strip().splitlines()[-1:]}")
time.sleep(2)
print(f"after the 3 s handshake deadline: fds {len(os.listdir(f'/proc/{pid}/fd'))}")
for s in socks:
    s.close()
PY
echo "after: health $(target/release/baa-log --server "$url" health 2>&1 | tail -1)"
echo "server log lines: $(wc -l <"$work/log")"
grep -i "descriptor\|accept\|connection" "$work/log" | head -5 || true
