#!/usr/bin/env bash
# A three-server NATS JetStream cluster on loopback, for running several
# baa-logd nodes with --store jetstream on one machine:
#
#   bash scripts/nats-cluster.sh start [DIR]    # prints the --nats-url list
#   bash scripts/nats-cluster.sh status [DIR]
#   bash scripts/nats-cluster.sh stop [DIR]     # stops them by their pids
#
# DIR (default target/nats-cluster under the repository) holds each
# server's configuration (n1.conf...), data directory (n1/...), log
# (n1.log...) and pid file (n1.pid...). The data stays there across stop and
# start; `rm -rf DIR` after stop starts the cluster afresh.
#
# The servers are the pinned nats-server of scripts/install-nats-server.sh
# (installed on first use), named n1, n2, n3 in the cluster "baa", with
# `sync_interval: always` (a write is on disk before JetStream acknowledges
# it; the default syncs every two minutes) and 8 MB messages. Ports:
#
#   BAA_NATS_CLIENT_PORTS   client ports, default "4222 4223 4224"
#   BAA_NATS_CLUSTER_PORTS  route ports between them, default "6222 6223 6224"
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(realpath -m "${2:-$root/target/nats-cluster}")
read -r -a client_ports <<<"${BAA_NATS_CLIENT_PORTS:-4222 4223 4224}"
read -r -a cluster_ports <<<"${BAA_NATS_CLUSTER_PORTS:-6222 6223 6224}"
names=(n1 n2 n3)

die() {
    printf 'nats-cluster.sh: %s\n' "$*" >&2
    exit 1
}

((${#client_ports[@]} == 3 && ${#cluster_ports[@]} == 3)) ||
    die "BAA_NATS_CLIENT_PORTS and BAA_NATS_CLUSTER_PORTS need three ports each"

# Whether something accepts connections on 127.0.0.1:$1.
listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The pid of server $1 while it runs; fails otherwise.
running_pid() {
    local pidfile=$dir/$1.pid pid
    [[ -e $pidfile ]] || return 1
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# The client URLs, comma-separated, as --nats-url takes them.
url_list() {
    local urls=() port
    for port in "${client_ports[@]}"; do
        urls+=("nats://127.0.0.1:$port")
    done
    (
        IFS=,
        echo "${urls[*]}"
    )
}

# Writes server $1's configuration file.
configure() {
    local index=$1 name=${names[$1]} routes=() other
    for other in 0 1 2; do
        ((other == index)) || routes+=("\"nats-route://127.0.0.1:${cluster_ports[$other]}\"")
    done
    mkdir -p "$dir/$name"
    cat >"$dir/$name.conf" <<CONF
server_name: $name
listen: "127.0.0.1:${client_ports[$index]}"
max_payload: 8MB
jetstream {
  store_dir: "$dir/$name"
  # Acknowledged = on the disk of a quorum of servers.
  sync_interval: always
}
cluster {
  name: baa
  listen: "127.0.0.1:${cluster_ports[$index]}"
  routes: [$(
        IFS=,
        echo "${routes[*]}"
    )]
}
CONF
}

start() {
    local index name pid bin
    for name in "${names[@]}"; do
        if pid=$(running_pid "$name"); then
            die "$name already runs (pid $pid); stop the cluster first"
        fi
    done
    for port in "${client_ports[@]}" "${cluster_ports[@]}"; do
        if listening "$port"; then
            die "port $port on 127.0.0.1 is taken; set BAA_NATS_CLIENT_PORTS / BAA_NATS_CLUSTER_PORTS"
        fi
    done
    bin=$(bash "$root/scripts/install-nats-server.sh") || die "cannot install the pinned nats-server"
    mkdir -p "$dir"
    local -A log_lines=()
    for index in 0 1 2; do
        name=${names[$index]}
        configure "$index"
        # The log grows across starts: what this start wrote comes after.
        touch "$dir/$name.log"
        log_lines[$name]=$(wc -l <"$dir/$name.log")
        # setsid: the servers outlive this shell and its terminal.
        setsid "$bin" --config "$dir/$name.conf" >>"$dir/$name.log" 2>&1 </dev/null &
        echo "$!" >"$dir/$name.pid"
    done
    # Each server takes connections within 10 s, or the start failed.
    for index in 0 1 2; do
        name=${names[$index]}
        for _ in $(seq 1 100); do
            listening "${client_ports[$index]}" && break
            running_pid "$name" >/dev/null || break
            sleep 0.1
        done
        if ! listening "${client_ports[$index]}"; then
            stop >/dev/null
            die "$name did not take connections on 127.0.0.1:${client_ports[$index]}; see $dir/$name.log"
        fi
        echo "$name listening on 127.0.0.1:${client_ports[$index]} (pid $(cat "$dir/$name.pid"), log $dir/$name.log)"
    done
    # And JetStream works once the servers have elected a metadata leader
    # (they log it), within 20 s.
    for _ in $(seq 1 200); do
        for name in "${names[@]}"; do
            if tail -n "+$((log_lines[$name] + 1))" "$dir/$name.log" | grep -q 'metadata leader'; then
                echo "JetStream cluster formed"
                echo "--nats-url $(url_list)"
                return 0
            fi
        done
        sleep 0.1
    done
    stop >/dev/null
    die "the servers elected no JetStream metadata leader within 20 s; see $dir/n*.log"
}

stop() {
    local name pid
    for name in "${names[@]}"; do
        if pid=$(running_pid "$name"); then
            kill "$pid"
            # JetStream flushes and steps down on SIGTERM; give it 10 s.
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
            echo "stopped $name (pid $pid)"
        fi
        rm -f "$dir/$name.pid"
    done
}

status() {
    local index name pid down=0
    for index in 0 1 2; do
        name=${names[$index]}
        if pid=$(running_pid "$name"); then
            echo "$name runs (pid $pid) on 127.0.0.1:${client_ports[$index]}"
        else
            echo "$name is stopped"
            down=1
        fi
    done
    echo "--nats-url $(url_list)"
    return "$down"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *)
        echo "usage: $0 start|stop|status [DIR]" >&2
        exit 2
        ;;
esac
