#!/usr/bin/env bash
# A three-node RabbitMQ cluster on one machine (MQTT 3.1.1, quorum session queues), for the
# tests and for HQ to try the national broker's failure modes before touching the real one.
#
#   local-cluster.sh start  DIR [BASE_PORT]  boot (or restart) the three nodes; returns once all
#                                            three accept MQTT and prints their host:port, one a line
#   local-cluster.sh status DIR              one line per node: "nN running|stopped NODE host:port"
#   local-cluster.sh stop   DIR              stop every process this DIR started (nodes and epmd)
#   local-cluster.sh node-kill  DIR N        SIGKILL node N (1-3): a crash, for failover drills
#   local-cluster.sh node-stop  DIR N        stop node N gracefully (maintenance)
#   local-cluster.sh node-start DIR N [N..]  start nodes again (together); returns once they
#                                            accept MQTT and prints their host:port (a restarted
#                                            node's MQTT client-id tracker is started early:
#                                            tracker_kick below, DIR/tracker-kick.log;
#                                            TRACKER_KICK=0 leaves it to RabbitMQ)
#   local-cluster.sh ctl DIR N ARGS...       rabbitmqctl ARGS against node N (e.g. list_queues)
#
# Everything lives in DIR: data, logs, pid files, the Erlang cookie. Node names carry a hash of
# DIR and BASE_PORT, and the cluster runs its own epmd on a port of its range, so two clusters on
# one machine (parallel test runs, CI) never see each other, and the machine's own RabbitMQ
# (5672, epmd 4369) is never touched. Ports, from BASE_PORT (default: a free range of 50, below
# the kernel's ephemeral port range): MQTT BASE+0..2, AMQP BASE+10..12, Erlang distribution
# BASE+20..22, epmd BASE+30, CLI tools BASE+40..49. Listeners bind 127.0.0.1 only; MQTT accepts
# anonymous clients (the loopback-only guest user), like a test mosquitto. The reference
# configuration with TLS, identities and permissions is rabbitmq.conf + setup-permissions.sh
# beside this script.
#
# Exit status: 0 done; 1 a node did not come up (its log's tail is printed); 2 usage.
set -euo pipefail

SERVER=${RABBITMQ_SERVER:-/usr/lib/rabbitmq/bin/rabbitmq-server}
CTL=${RABBITMQCTL_BIN:-/usr/lib/rabbitmq/bin/rabbitmqctl}
EPMD=${EPMD:-$(command -v epmd || echo /usr/lib/erlang/bin/epmd)}
BOOT_TIMEOUT_S=${BOOT_TIMEOUT_S:-120}
NODES=(1 2 3)

die() { echo "local-cluster: $*" >&2; exit "${2:-1}"; }
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_base() {
    # A range of 50 ports with nothing listening; random so parallel runs rarely race. Below the
    # kernel's ephemeral range: every outgoing connection (a readiness probe, a CLI call, the
    # nodes' own links) takes its local port from that range, and a node restarted while one of
    # them held its listener's port died with eaddrinuse ("node n3 exited while booting").
    local lo hi from span base p busy
    read -r lo hi 2>/dev/null < /proc/sys/net/ipv4/ip_local_port_range || { lo=32768; hi=60999; }
    from=10000; span=$(( lo - 50 - from ))
    if [ "$span" -lt 1000 ]; then from=$(( hi + 1 )); span=$(( 65485 - from )); fi
    [ "$span" -ge 1 ] || die "no port range outside the ephemeral range $lo-$hi"
    for _ in $(seq 1 50); do
        base=$(( from + (RANDOM * 32768 + RANDOM) % span ))
        busy=0
        for p in $(seq "$base" $((base + 49))); do
            if port_busy "$p"; then busy=1; break; fi
        done
        [ "$busy" = 0 ] && { echo "$base"; return; }
    done
    die "no free range of 50 ports found"
}

load() {
    DIR=$(cd "$1" && pwd) || die "no such directory: $1" 2
    [ -f "$DIR/cluster.env" ] || die "$DIR holds no cluster (run start first)" 2
    # shellcheck disable=SC1091
    . "$DIR/cluster.env"
}

node_name() { echo "${PREFIX}-n$1@localhost"; }
mqtt_port() { echo $((BASE + $1 - 1)); }
amqp_port() { echo $((BASE + 9 + $1)); }
dist_port() { echo $((BASE + 19 + $1)); }
epmd_port() { echo $((BASE + 30)); }

common_env() {
    export HOME="$DIR/home" ERL_EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1
    ERL_EPMD_PORT=$(epmd_port)
    export RABBITMQ_CONF_ENV_FILE="$DIR/empty-env.conf"     # not /etc/rabbitmq's node name
    export RABBITMQ_CTL_DIST_PORT_MIN=$((BASE + 40)) RABBITMQ_CTL_DIST_PORT_MAX=$((BASE + 49))
    export ERL_CRASH_DUMP="$DIR/erl_crash.dump"     # not in the caller's working directory
}

node_env() {
    local n=$1 d="$DIR/n$1"
    export RABBITMQ_NODENAME RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT \
        RABBITMQ_DIST_PORT RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" \
        RABBITMQ_PID_FILE="$d/beam.pid" ERL_CRASH_DUMP="$d/erl_crash.dump"
    RABBITMQ_NODENAME=$(node_name "$n")
    RABBITMQ_NODE_PORT=$(amqp_port "$n")
    RABBITMQ_DIST_PORT=$(dist_port "$n")
}

write_files() {
    mkdir -p "$DIR/home"
    [ -f "$DIR/home/.erlang.cookie" ] || {
        (umask 077; head -c 30 /dev/urandom | od -An -tx1 | tr -dc 0-9a-f > "$DIR/home/.erlang.cookie")
    }
    chmod 400 "$DIR/home/.erlang.cookie"
    : > "$DIR/empty-env.conf"
    echo "[rabbitmq_mqtt]." > "$DIR/enabled_plugins"
    local n
    for n in "${NODES[@]}"; do
        mkdir -p "$DIR/n$n"
        {
            echo "listeners.tcp.default = 127.0.0.1:$(amqp_port "$n")"
            echo "mqtt.listeners.tcp.default = 127.0.0.1:$(mqtt_port "$n")"
            echo "mqtt.allow_anonymous = true"
            echo "mqtt.vhost = /"
            echo "mqtt.durable_queue_type = quorum"
            echo "mqtt.subscription_ttl = 604800000"
            echo "log.console = false"
            echo "log.file.level = info"    # mqtt_node (client-id tracker) lines are info
            if [ "$n" != 1 ]; then
                # A virgin node 2 or 3 joins node 1 by itself (node 1 is up before they start).
                echo "cluster_formation.peer_discovery_backend = classic_config"
                echo "cluster_formation.classic_config.nodes.1 = $(node_name 1)"
            fi
        } > "$DIR/n$n/rabbitmq.conf"
        echo "[]." > "$DIR/n$n/advanced.config"
    done
}

epmd_start() {
    local pidf="$DIR/epmd.pid"
    if [ -f "$pidf" ] && grep -q "$(epmd_port)" "/proc/$(cat "$pidf")/cmdline" 2>/dev/null; then
        return
    fi
    port_busy "$(epmd_port)" && die "port $(epmd_port) (epmd) is taken by another process"
    setsid "$EPMD" -port "$(epmd_port)" -address 127.0.0.1 </dev/null >"$DIR/epmd.log" 2>&1 &
    echo $! > "$pidf"
}

node_pgid() { cat "$DIR/n$1/group.pid" 2>/dev/null || true; }

group_is_node() {  # PGID: its leader (or the group) is still a node of ours, or its launch
    # (a recorded pid reused by another process is never taken for a node, nor signalled)
    tr '\0' ' ' 2>/dev/null < "/proc/$1/cmdline" | grep -q -e rabbitmq-server -e local-cluster \
        || ps -o args= -g "$1" 2>/dev/null | grep -q -e "$PREFIX" -e rabbitmq-server
}

node_running() {
    local g; g=$(node_pgid "$1")
    [ -n "$g" ] && group_is_node "$g"
}

node_launch() {
    local n=$1
    node_running "$n" && return 0
    local p
    for p in "$(mqtt_port "$n")" "$(amqp_port "$n")" "$(dist_port "$n")"; do
        port_busy "$p" && die "port $p (node n$n) is taken by another process"
    done
    rm -f "$DIR/n$n/beam.pid"
    (
        common_env; node_env "$n"
        exec setsid "$SERVER" </dev/null >>"$DIR/n$n/server.out" 2>&1
    ) &
    echo $! > "$DIR/n$n/group.pid"
}

tracker_kick() {  # tracker_kick N: start node N's member of the client-id tracker early
    # RabbitMQ 3.10's MQTT plugin tracks client ids in a Raft cluster of its own (Ra cluster
    # "mqtt_node", Ra system "coordination"). At start, a node that has a member asks its peers
    # for the members (ra:members, 100 s timeout) BEFORE it restarts its own member. After a
    # lost majority whose tracker leader was on a lost node, the survivor's member has no
    # leader and holds that question for the full 100 s; every restarted node waits the same
    # way, so none restarts its member and no majority forms: MQTT opened ~100 s late. Started
    # here as soon as the VM can, the member gives the survivor its majority, a leader is
    # elected in about a second and the question is answered. Idempotent: the plugin's own
    # restart afterwards finds it running ("already_started"). Ends with the node's boot.
    local n=$1 deadline=$((SECONDS + BOOT_TIMEOUT_S)) out
    while [ "$SECONDS" -lt "$deadline" ] && kill -0 "$(node_pgid "$n")" 2>/dev/null; do
        out=$( (common_env; node_env "$n"
                exec "$CTL" -n "$(node_name "$n")" -q -t 5 eval "$TRACKER_RESTART") 2>&1 ) \
            || out="not yet: $(echo "$out" | tr -s '\n ' ' ' | cut -c1-200)"
        echo "$(date -u +%FT%T.%3NZ) n$n $out" >> "$DIR/tracker-kick.log"
        case $out in (ok|no_tracker|*already_started*) return 0 ;; esac
        sleep 0.5
    done
}

# ok, {error,{already_started,_}}, no_tracker (a virgin node), or not yet (plugin code not on
# the code path yet; raises while the Ra system is not started).
TRACKER_RESTART='case code:ensure_loaded(mqtt_machine) of
    {module, _} ->
        case ra_directory:uid_of(coordination, mqtt_node) of
            undefined -> no_tracker;
            _ -> ra:restart_server(coordination, {mqtt_node, node()})
        end;
    Other -> {not_yet, Other}
end.'

launch_and_wait() {  # launch_and_wait N...: launch the nodes (with their tracker kick), wait
    local n kicks=()
    for n in "$@"; do node_launch "$n"; done
    if [ "${TRACKER_KICK:-1}" != 0 ]; then   # TRACKER_KICK=0: RabbitMQ 3.10's own behaviour
        for n in "$@"; do
            tracker_kick "$n" </dev/null >/dev/null 2>&1 &
            kicks+=($!)
        done
    fi
    wait_ready "$@"
    [ "${#kicks[@]}" = 0 ] || wait "${kicks[@]}" 2>/dev/null || true
}

mqtt_ready() {
    # A real MQTT 3.1.1 CONNECT + QoS 1 PUBLISH answered (a node without a majority of its
    # cluster accepts TCP but refuses MQTT): mosquitto_pub when installed, else the port.
    local port=$1
    if command -v mosquitto_pub >/dev/null 2>&1; then
        timeout 5 mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv311 -q 1 \
            -i "probe-$PREFIX-$port" -t "local-cluster/probe" -m ready >/dev/null 2>&1
    else
        port_busy "$port"
    fi
}

wait_ready() {
    local deadline=$((SECONDS + BOOT_TIMEOUT_S)) n pending
    while :; do
        pending=()
        for n in "$@"; do
            # Its pid, just launched by us (its command line changes while it execs).
            kill -0 "$(node_pgid "$n")" 2>/dev/null || {
                tail_log "$n"; die "node n$n exited while booting"; }
            mqtt_ready "$(mqtt_port "$n")" || pending+=("$n")
        done
        [ "${#pending[@]}" = 0 ] && return 0
        [ "$SECONDS" -ge "$deadline" ] && {
            for n in "${pending[@]}"; do tail_log "$n"; done
            die "node(s) ${pending[*]} did not accept MQTT within ${BOOT_TIMEOUT_S} s"
        }
        sleep 0.5
    done
}

tail_log() {
    echo "--- n$1 ($(node_name "$1")) output:" >&2
    tail -n 30 "$DIR/n$1/server.out" 2>/dev/null >&2 || true
    tail -n 30 "$DIR/n$1/log/"*.log 2>/dev/null >&2 || true
}

print_addresses() {
    local n
    for n in "${NODES[@]}"; do echo "127.0.0.1:$(mqtt_port "$n")"; done
}

cmd_start() {
    local dir=$1 base=${2:-}
    mkdir -p "$dir"
    DIR=$(cd "$dir" && pwd)
    if [ -f "$DIR/cluster.env" ]; then
        . "$DIR/cluster.env"
        [ -n "$base" ] && [ "$base" != "$BASE" ] && die "$DIR already holds a cluster on $BASE" 2
    else
        [ -n "$base" ] || base=$(pick_base)
        case $base in (*[!0-9]*|'') die "BASE_PORT must be a number" 2;; esac
        [ "$base" -ge 1024 ] && [ "$base" -le 65485 ] || die "BASE_PORT out of range" 2
        BASE=$base
        PREFIX="polres-$(printf '%s:%s' "$DIR" "$BASE" | sha1sum | cut -c1-10)"
        printf 'BASE=%s\nPREFIX=%s\n' "$BASE" "$PREFIX" > "$DIR/cluster.env"
    fi
    write_files
    epmd_start
    if [ ! -d "$DIR/n1/mnesia" ]; then
        # First boot: node 1 forms the cluster, then 2 and 3 join it (in parallel).
        node_launch 1; wait_ready 1
        node_launch 2; node_launch 3; wait_ready 2 3
    else
        # A restart: each node finds its cluster from its own data.
        launch_and_wait 1 2 3
    fi
    print_addresses
}

cmd_status() {
    load "$1"
    local n state
    for n in "${NODES[@]}"; do
        state=stopped; node_running "$n" && state=running
        echo "n$n $state $(node_name "$n") 127.0.0.1:$(mqtt_port "$n")"
    done
}

kill_group() {  # kill_group PGID SIGNAL
    kill "-$2" -- "-$1" 2>/dev/null || true
}

wait_gone() {  # wait_gone PGID SECONDS
    local deadline=$((SECONDS + $2))
    while kill -0 -- "-$1" 2>/dev/null; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

node_stop() {
    local n=$1 g; g=$(node_pgid "$n")
    [ -n "$g" ] || return 0
    if node_running "$n"; then
        kill_group "$g" TERM            # the wrapper runs `rabbitmqctl stop`-like shutdown
        wait_gone "$g" 15 || { kill_group "$g" KILL; wait_gone "$g" 5 || true; }
    fi
    rm -f "$DIR/n$n/group.pid"
}

cmd_stop() {
    load "$1"
    local n
    for n in "${NODES[@]}"; do node_stop "$n" & done
    wait
    if [ -f "$DIR/epmd.pid" ]; then
        local e; e=$(cat "$DIR/epmd.pid")
        if grep -q "$(epmd_port)" "/proc/$e/cmdline" 2>/dev/null; then   # still our epmd
            kill_group "$e" TERM; wait_gone "$e" 5 || kill_group "$e" KILL
        fi
        rm -f "$DIR/epmd.pid"
    fi
}

check_n() { case ${1:-} in (1|2|3) ;; (*) die "node must be 1, 2 or 3" 2;; esac; }

cmd_node_kill() {
    load "$1"; check_n "${2:-}"
    node_running "$2" || { rm -f "$DIR/n$2/group.pid"; return 0; }
    local b; b=$(cat "$DIR/n$2/beam.pid" 2>/dev/null || true)
    [ -n "$b" ] && grep -q "$PREFIX" "/proc/$b/cmdline" 2>/dev/null && kill -KILL "$b"
    local g; g=$(node_pgid "$2")
    kill_group "$g" KILL; wait_gone "$g" 5 || true
    rm -f "$DIR/n$2/group.pid"
}

cmd_node_stop() { load "$1"; check_n "${2:-}"; node_stop "$2"; }

cmd_node_start() {
    load "$1"; shift
    [ $# -ge 1 ] || usage
    local n
    for n in "$@"; do check_n "$n"; done
    write_files; epmd_start
    launch_and_wait "$@"
    for n in "$@"; do echo "127.0.0.1:$(mqtt_port "$n")"; done
}

cmd_ctl() {
    load "$1"; check_n "${2:-}"
    local n=$2; shift 2
    common_env; node_env "$n"
    exec "$CTL" -n "$(node_name "$n")" "$@"
}

[ $# -ge 2 ] || usage
case $1 in
    start) [ $# -le 3 ] || usage; cmd_start "$2" "${3:-}" ;;
    status) cmd_status "$2" ;;
    stop) cmd_stop "$2" ;;
    node-kill) cmd_node_kill "$2" "${3:-}" ;;
    node-stop) cmd_node_stop "$2" "${3:-}" ;;
    node-start) shift; cmd_node_start "$@" ;;
    ctl) shift; cmd_ctl "$@" ;;
    *) usage ;;
esac
