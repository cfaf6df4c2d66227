#!/usr/bin/env bash
# Installs and starts the benchmark's peers on loopback, or stops them:
#
#   bash scripts/peers.sh start   # NATS JetStream and Redis, fresh data
#   bash scripts/peers.sh stop    # stops them by their process ids
#
# Both come from Debian's packages (apt-get; run as root), and each runs
# twice: as configured for speed, and durable (acknowledged = on the
# disk). The durable NATS is the pinned release of
# scripts/install-nats-server.sh (Debian's 2.9.10 has no
# `sync_interval`). Each gets a
# fresh data directory under the state directory ($BAA_BENCH_PEERS_DIR,
# default /tmp/baa-bench-peers), which also holds <name>.url and
# <name>.pid for baa-bench. A peer that cannot be installed or started is
# left out with a warning; baa-bench then says "not available" in its rows.
#
# NATS: JetStream with file storage, synced every two minutes (its
# default); nats-sync: `sync_interval: always`. Redis: AOF with
# `appendfsync everysec`, RDB snapshots off (the AOF is the persistence),
# enough clients for the many-runs workload; redis-always: `appendfsync
# always`.
set -euo pipefail

dir=${BAA_BENCH_PEERS_DIR:-/tmp/baa-bench-peers}
nats_port=${BAA_BENCH_NATS_PORT:-14222}
nats_sync_port=${BAA_BENCH_NATS_SYNC_PORT:-14223}
redis_port=${BAA_BENCH_REDIS_PORT:-16379}
redis_always_port=${BAA_BENCH_REDIS_ALWAYS_PORT:-16380}
peers=(nats nats-sync redis redis-always)

warn() { printf 'peers.sh: %s\n' "$*" >&2; }

# Waits until something accepts connections on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

install() {
    local missing=()
    command -v nats-server >/dev/null || missing+=(nats-server)
    command -v redis-server >/dev/null || missing+=(redis-server)
    if ((${#missing[@]})); then
        echo "installing ${missing[*]}"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
            warn "cannot install ${missing[*]}"
        fi
    fi
}

# Starts a peer in the background and records its pid and url.
# usage: launch NAME PORT URL COMMAND...
launch() {
    local name=$1 port=$2 url=$3
    shift 3
    if ! command -v "$1" >/dev/null; then
        warn "$name: $1 is not installed; left out"
        return 0
    fi
    mkdir -p "$dir/$name"
    "$@" >"$dir/$name.log" 2>&1 &
    local pid=$!
    if wait_port "$port"; then
        echo "$pid" >"$dir/$name.pid"
        echo "$url" >"$dir/$name.url"
        echo "$name listening on 127.0.0.1:$port (pid $pid)"
    else
        warn "$name did not start; see $dir/$name.log"
        kill "$pid" 2>/dev/null || true
    fi
}

start() {
    stop >/dev/null
    install
    local nats_pinned=""
    if ! nats_pinned=$(bash "$(dirname "$0")/install-nats-server.sh"); then
        warn "cannot install the pinned nats-server; nats-sync left out"
        nats_pinned=""
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    # Tens of thousands of connections in the many-runs workload.
    ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    launch nats "$nats_port" "nats://127.0.0.1:$nats_port" \
        nats-server --jetstream --addr 127.0.0.1 --port "$nats_port" \
        --store_dir "$dir/nats"
    launch redis "$redis_port" "redis://127.0.0.1:$redis_port" \
        redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir/redis" \
        --appendonly yes --appendfsync everysec --save "" \
        --maxclients 100000 --daemonize no --protected-mode no
    launch redis-always "$redis_always_port" "redis://127.0.0.1:$redis_always_port" \
        redis-server --bind 127.0.0.1 --port "$redis_always_port" \
        --dir "$dir/redis-always" --appendonly yes --appendfsync always --save "" \
        --maxclients 100000 --daemonize no --protected-mode no
    if [[ -n "$nats_pinned" ]]; then
        mkdir -p "$dir/nats-sync"
        cat >"$dir/nats-sync.conf" <<CONF
listen: 127.0.0.1:$nats_sync_port
jetstream {
  store_dir: "$dir/nats-sync"
  sync_interval: always
}
CONF
        launch nats-sync "$nats_sync_port" "nats://127.0.0.1:$nats_sync_port" \
            "$nats_pinned" --config "$dir/nats-sync.conf"
    fi
}

stop() {
    for name in "${peers[@]}"; do
        local pidfile="$dir/$name.pid"
        [[ -e "$pidfile" ]] || continue
        local pid
        pid=$(cat "$pidfile")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            echo "stopped $name (pid $pid)"
        fi
        rm -f "$pidfile" "$dir/$name.url"
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|stop" >&2
        exit 2
        ;;
esac
