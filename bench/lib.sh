# Shared helpers of bench/compare.sh and bench/scenarios.sh (sourced, not run).
# Every process started here is recorded and killed on exit; all traffic stays on 127.0.0.1.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# cargo puts the binaries under CARGO_TARGET_DIR when it is set (a relative one is taken
# from $ROOT, where build_release runs cargo); BENCH and HIGHLANDER name other binaries.
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BENCH=${BENCH:-$TARGET_DIR/release/highlander-bench}
HIGHLANDER=${HIGHLANDER:-$TARGET_DIR/release/highlander}
# vmagent: Debian sid's (current, fetched into tools/sid by scripts/sid-servers) unless
# VMAGENT names another; mode vmagent-bookworm runs the system's (Debian bookworm's 1.79).
VMAGENT=${VMAGENT:-$ROOT/tools/sid/usr/bin/vmagent}
VMAGENT_BOOKWORM=${VMAGENT_BOOKWORM:-/usr/bin/vmagent}
STARTED_PIDS=()

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_tools() {
    for t in curl timeout awk; do
        command -v "$t" >/dev/null || die "$t is required"
    done
}

# need_vmagent: fetches Debian sid's vmagent when VMAGENT is the default and missing.
need_vmagent() {
    if [[ ! -x $VMAGENT && $VMAGENT == "$ROOT/tools/sid/usr/bin/vmagent" ]]; then
        "$ROOT/scripts/sid-servers" >/dev/null || die "could not fetch Debian sid's vmagent (scripts/sid-servers)"
    fi
    [[ -x $VMAGENT ]] || die "$VMAGENT not found (scripts/sid-servers fetches it)"
}

# vmagent_version BINARY: e.g. 1.145.0, from -version or, for Debian's builds (which
# print none), from the package changelog beside the binary; "unknown" when neither says.
vmagent_version() {
    local v changelog
    v=$("$1" -version 2>/dev/null | grep -o 'v1\.[0-9]*\.[0-9]*' | head -n 1)
    changelog="$(dirname "$1")/../share/doc/victoria-metrics/changelog.Debian.gz"
    if [[ -z $v && -r $changelog ]]; then
        v=$(zcat "$changelog" | head -n 1 | grep -o '([^)]*)' | tr -d '()')
    fi
    echo "${v:-unknown}"
}

build_release() {
    if [[ ${NO_BUILD:-0} != 1 ]]; then
        log "cargo build --release --workspace --bins"
        (cd "$ROOT" && cargo build --release --workspace --bins) >&2
    fi
    [[ -x $BENCH && -x $HIGHLANDER ]] || die "release binaries missing (unset NO_BUILD)"
}

# A free-looking port range; the kernel tells us soon enough if it is not.
pick_ports() {
    local base=${BENCH_PORT_BASE:-$((20000 + RANDOM % 20000))}
    SINK_PORT=$base
    RELAY_PORT=$((base + 1))
    ADMIN_PORT=$((base + 2))
}

# start NAME LOGFILE CMD...: runs CMD in the background, sets $LAST_PID.
start() {
    local name=$1 logfile=$2
    shift 2
    "$@" >"$logfile" 2>&1 &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
    log "started $name (pid $LAST_PID)"
}

# stop PID [SIGNAL]: signal (default TERM), wait up to 10 s, then SIGKILL.
stop() {
    local pid=$1 sig=${2:-TERM}
    [[ -n $pid ]] || return 0
    # Not one of our unreaped jobs any more: nothing of ours to stop.
    [[ " $(jobs -p | tr '\n' ' ') " == *" $pid "* ]] || return 0
    kill -s "$sig" "$pid" 2>/dev/null || return 0
    local i
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Only our own background jobs that have not been reaped yet: a reaped PID may belong to
# someone else by now.
kill_all_started() {
    set +e
    local pid live
    live=" $(jobs -p | tr '\n' ' ') "
    for pid in "${STARTED_PIDS[@]}"; do
        [[ $live == *" $pid "* ]] && kill -9 "$pid" 2>/dev/null
    done
    for pid in "${STARTED_PIDS[@]}"; do
        [[ $live == *" $pid "* ]] && wait "$pid" 2>/dev/null
    done
    return 0
}

# wait_http URL SECONDS: until URL answers 2xx.
wait_http() {
    local url=$1 deadline=$((SECONDS + $2))
    until curl -sf -o /dev/null --max-time 2 "$url"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# json_num FILE KEY: the first number under "KEY" in a JSON file (flat lookup).
json_num() {
    { grep -o "\"$2\": *-\{0,1\}[0-9][0-9.eE+-]*" "$1" 2>/dev/null || true; } | head -1 | sed 's/.*: *//'
}

# cpu_seconds PID: user+system CPU time of a live process.
cpu_seconds() {
    local tck
    tck=$(getconf CLK_TCK)
    # Field 2 (comm) may hold spaces: count fields after the closing parenthesis.
    { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null || echo; } | awk -v t="$tck" '{printf "%.2f", ($12 + $13) / t}'
}

# hwm_kb PID: peak resident set size.
hwm_kb() {
    awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

sink_stats() { curl -sf --max-time 5 "http://127.0.0.1:$SINK_PORT/stats"; }

# sink_num KEY: one counter of the live sink (empty if it does not answer).
sink_num() {
    { sink_stats || true; } | { grep -o "\"$1\":[0-9]*" || true; } | sed 's/.*://'
}

# start_sink DIR [ARGS...]: a fresh sink with ARGS (and $SINK_ARGS); sets SINK_PID.
start_sink() {
    local dir=$1
    shift
    start sink "$dir/sink.log" "$BENCH" sink --listen "127.0.0.1:$SINK_PORT" "$@" ${SINK_ARGS:-}
    SINK_PID=$LAST_PID
    wait_http "http://127.0.0.1:$SINK_PORT/stats" 15 || die "sink did not start (see $dir/sink.log)"
}

# start_relay MODE DIR DATADIR: sets RELAY_PID (empty for direct) and WRITE_URL.
start_relay() {
    local mode=$1 dir=$2 data=$3
    local sink_url="http://127.0.0.1:$SINK_PORT/api/v1/write"
    case $mode in
    direct)
        RELAY_PID=
        WRITE_URL=$sink_url
        ;;
    highlander | highlander-inflight | highlander-serial | highlander-v2 | highlander-v2-pass)
        # highlander-inflight: several requests out to the sink at once (series may then
        # arrive out of order, as with vmagent); highlander: the default (ordered lanes:
        # several at once that share no series, when the sink is slow to answer);
        # highlander-serial: one at a time (--ordered-in-flight 1, the default before lanes);
        # highlander-v2: the default, with the generator sending Remote-Write 2.0 (the
        # sink reads 1.0, so the endpoint falls back and converts); highlander-v2-pass:
        # the same, with a sink that reads 2.0 (passed through).
        local inflight=
        [[ $mode == highlander-inflight ]] && inflight="--max-in-flight ${HIGHLANDER_IN_FLIGHT:-2}"
        [[ $mode == highlander-serial ]] && inflight="--ordered-in-flight 1"
        start highlander "$dir/relay.log" "$HIGHLANDER" serve \
            --listen "127.0.0.1:$RELAY_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
            --data-dir "$data" --remote-write "$sink_url" --durability sync \
            --log-level "${RELAY_LOG_LEVEL:-warn}" $inflight ${HIGHLANDER_ARGS:-}
        RELAY_PID=$LAST_PID
        wait_http "http://127.0.0.1:$ADMIN_PORT/readyz" 60 || die "highlander not ready (see $dir/relay.log)"
        WRITE_URL="http://127.0.0.1:$RELAY_PORT/api/v1/write"
        ;;
    vmagent | vmagent-bookworm)
        local vmagent=$VMAGENT
        [[ $mode == vmagent-bookworm ]] && vmagent=$VMAGENT_BOOKWORM
        [[ -x $vmagent ]] || die "$vmagent not found"
        start vmagent "$dir/relay.log" "$vmagent" \
            -httpListenAddr="127.0.0.1:$RELAY_PORT" -remoteWrite.url="$sink_url" \
            -remoteWrite.tmpDataPath="$data" -loggerLevel=WARN ${VMAGENT_ARGS:-}
        RELAY_PID=$LAST_PID
        wait_http "http://127.0.0.1:$RELAY_PORT/health" 60 || die "vmagent not ready (see $dir/relay.log)"
        WRITE_URL="http://127.0.0.1:$RELAY_PORT/api/v1/write"
        ;;
    *) die "unknown mode $mode" ;;
    esac
}

# wait_delivered TARGET MAX_SECONDS: until the sink holds TARGET unique samples, or its
# count stops moving for STALL_S (default 5) seconds, or MAX_SECONDS pass.
wait_delivered() {
    local target=$1 deadline=$((SECONDS + $2)) last=-1 still=0 got
    while :; do
        got=$(sink_num unique_samples)
        got=${got:-0}
        ((got >= target)) && return 0
        ((SECONDS < deadline)) || return 1
        if ((got == last)); then
            still=$((still + 1))
            ((still >= ${STALL_S:-5} * 5)) && return 1
        else
            still=0
            last=$got
        fi
        sleep 0.2
    done
}
