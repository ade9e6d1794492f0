#!/usr/bin/env bash
# Failure scenarios for highlander and vmagent, on this machine, under a fixed load.
#
# outage: the sink answers 503 for OUTAGE seconds in the middle of the load, then recovers.
#   Reports the backlog (acknowledged but undelivered samples) when the sink comes back,
#   bytes on disk per buffered sample, catch-up time and rate, and whether every
#   acknowledged sample arrived in the end (checked sample by sample).
# kill9: with the sink down (so the relay holds a backlog), the relay gets SIGKILL, is
#   restarted on the same data directory, the sink comes back; reports how many samples the
#   generator had seen acknowledged (2xx) that never reached the sink.
#
# The rate defaults to 50% of vmagent's max from bench/results/latest.json (run
# bench/compare.sh first), else 2 000 000 samples/s.
# Writes bench/results/scenarios.json and bench/results/scenarios.md.
#
# Usage: bench/scenarios.sh [--scenarios "outage kill9"] [--modes "highlander highlander-inflight vmagent"]
#                           [--rate REQ_PER_S] [--series N] [--samples-per-request N]
#                           [--concurrency N] [--outage SECONDS] [--no-build] [--keep]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCENARIOS="outage kill9"
MODES="highlander highlander-inflight vmagent"
SERIES=100000
SPR=2000
CONCURRENCY=8
RATE=
OUTAGE=30
PRE=${PRE:-10}
POST=${POST:-20}
KEEP=0
# The relays' extra flags are part of what was measured.
COMMAND="${HIGHLANDER_ARGS:+HIGHLANDER_ARGS='$HIGHLANDER_ARGS' }${VMAGENT_ARGS:+VMAGENT_ARGS='$VMAGENT_ARGS' }bench/scenarios.sh${*:+ $*}"

while (($#)); do
    case $1 in
    --scenarios) SCENARIOS=$2; shift ;;
    --modes) MODES=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --series) SERIES=$2; shift ;;
    --samples-per-request) SPR=$2; shift ;;
    --concurrency) CONCURRENCY=$2; shift ;;
    --outage) OUTAGE=${2%s}; shift ;;
    --no-build) NO_BUILD=1 ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done

need_tools
build_release
pick_ports
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"
WORK=$(mktemp -d "${BENCH_WORK_DIR:-${TMPDIR:-/tmp}}/highlander-scenarios.XXXXXX")

cleanup() {
    local rc=$?
    set +e
    kill_all_started
    if ((KEEP)); then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z $RATE ]]; then
    max=$(json_num "$RESULTS/latest.json" vmagent_max_delivered_samples_per_s)
    max=${max:-2000000}
    RATE=$(awk -v s="$max" -v n="$SPR" 'BEGIN {printf "%.1f", s * 0.5 / n}')
    log "rate $RATE req/s = 50% of $max samples/s"
fi

# du complains (and fails) when a file vanishes while it counts; its total is still good.
disk_bytes() {
    local out
    out=$(du -sB1 "$1" 2>/dev/null) || true
    out=${out%%[[:space:]]*}
    echo "${out:-0}"
}
acked_now() {
    local n
    n=$({ grep -o '"acked_samples":[0-9]*' "$1" || true; } | tail -1 | sed 's/.*://')
    echo "${n:-0}"
}
delivered_now() {
    local n
    n=$(sink_num unique_samples)
    echo "${n:-0}"
}
outage() {
    curl -sf --max-time 5 -X POST "http://127.0.0.1:$SINK_PORT/outage/$1" >/dev/null ||
        die "cannot switch the sink's outage $1"
}
now_ms() { date +%s%3N; }

# start_load DIR SECONDS: the fixed-rate load in the background; sets LOAD_PID.
start_load() {
    start load "$1/load.log" "$BENCH" load --url "$WRITE_URL" --series "$SERIES" \
        --samples-per-request "$SPR" --concurrency "$CONCURRENCY" --rate "$RATE" \
        --duration "${2}s" --timeout 10s --query highlander_source=bench --progress \
        --ack-log "$1/acks.log" --out "$1/load.json"
    LOAD_PID=$LAST_PID
}

verify() {
    "$BENCH" verify --ack-log "$1/acks.log" --sink "http://127.0.0.1:$SINK_PORT" >"$1/verify.json" ||
        log "verify failed (see $1/verify.json)"
}

RESULT_LINES=()

scenario_outage() {
    local mode=$1 dir="$WORK/outage-$mode" data="$WORK/outage-$mode/data"
    mkdir -p "$dir"
    log "== outage: $mode, ${OUTAGE}s storage outage at $RATE req/s"
    start_sink "$dir"
    start_relay "$mode" "$dir" "$data"
    start_load "$dir" $((PRE + OUTAGE + POST))
    sleep "$PRE"
    local base_disk
    base_disk=$(disk_bytes "$data")
    outage on
    local end=$((SECONDS + OUTAGE)) peak_disk=$base_disk d
    while ((SECONDS < end)); do
        sleep 1
        d=$(disk_bytes "$data")
        ((d > peak_disk)) && peak_disk=$d
    done
    local acked_off delivered_off disk_off t_off
    acked_off=$(acked_now "$dir/load.log")
    delivered_off=$(delivered_now)
    disk_off=$(disk_bytes "$data")
    outage off
    t_off=$(now_ms)
    local backlog=$((acked_off - delivered_off)) catch_up_ms=-1 got delivered_up=0
    local deadline=$((SECONDS + 300))
    while ((SECONDS < deadline)); do
        got=$(delivered_now)
        if ((${got:-0} >= acked_off)); then
            catch_up_ms=$(($(now_ms) - t_off))
            delivered_up=$((got - delivered_off))
            break
        fi
        sleep 0.2
    done
    wait "$LOAD_PID" || log "load exited with $?"
    local acked
    acked=$(json_num "$dir/load.json" acked_samples)
    wait_delivered "${acked:-0}" 120 || log "$mode: not everything arrived"
    verify "$dir"
    local missing dups delivered
    missing=$(json_num "$dir/verify.json" missing_samples)
    sink_stats >"$dir/sink_final.json"
    dups=$(json_num "$dir/sink_final.json" duplicate_samples)
    delivered=$(json_num "$dir/sink_final.json" unique_samples)
    stop "$RELAY_PID"
    stop "$SINK_PID"
    local line
    line=$(awk -v m="$mode" -v r="$RATE" -v o="$OUTAGE" -v b="$backlog" -v bd="$base_disk" \
        -v pd="$peak_disk" -v od="$disk_off" -v c="$catch_up_ms" -v up="$delivered_up" -v a="${acked:-0}" \
        -v dl="${delivered:-0}" -v mi="${missing:-0}" -v du="${dups:-0}" 'BEGIN {
        bps = b > 0 ? (od - bd) / b : 0
        # Backlog plus the load that kept arriving, over the catch-up time.
        rate = (c > 0) ? up / (c / 1000) : 0
        printf "{\"scenario\":\"outage\",\"mode\":\"%s\",\"rate_req_per_s\":%s,\"outage_s\":%d,\"backlog_samples\":%d,\"disk_bytes_before\":%d,\"disk_bytes_at_recovery\":%d,\"disk_bytes_peak\":%d,\"bytes_per_buffered_sample\":%.2f,\"catch_up_s\":%.2f,\"catch_up_samples_per_s\":%.0f,\"acked_samples\":%d,\"delivered_samples\":%d,\"missing_acked_samples\":%d,\"duplicate_samples\":%d}",
            m, r, o, b, bd, od, pd, bps, c / 1000, rate, a, dl, mi, du }')
    log "$line"
    RESULT_LINES+=("$line")
}

scenario_kill9() {
    local mode=$1 dir="$WORK/kill9-$mode" data="$WORK/kill9-$mode/data"
    mkdir -p "$dir"
    log "== kill9: $mode, SIGKILL with a backlog at $RATE req/s"
    start_sink "$dir"
    outage on
    start_relay "$mode" "$dir" "$data"
    start_load "$dir" 20
    sleep 10
    log "kill -9 $mode (pid $RELAY_PID)"
    kill -9 "$RELAY_PID"
    wait "$RELAY_PID" 2>/dev/null || true
    sleep 2
    mkdir -p "$dir/restart"
    start_relay "$mode" "$dir/restart" "$data"
    wait "$LOAD_PID" || log "load exited with $?"
    outage off
    local acked
    acked=$(json_num "$dir/load.json" acked_samples)
    STALL_S=15 wait_delivered "${acked:-0}" 300 || log "$mode: sink stopped short of $acked samples"
    verify "$dir"
    sink_stats >"$dir/sink_final.json"
    local missing dups delivered
    missing=$(json_num "$dir/verify.json" missing_samples)
    dups=$(json_num "$dir/sink_final.json" duplicate_samples)
    delivered=$(json_num "$dir/sink_final.json" unique_samples)
    stop "$RELAY_PID"
    stop "$SINK_PID"
    local line
    line=$(awk -v m="$mode" -v r="$RATE" -v a="${acked:-0}" -v dl="${delivered:-0}" \
        -v mi="${missing:-0}" -v du="${dups:-0}" 'BEGIN {
        printf "{\"scenario\":\"kill9\",\"mode\":\"%s\",\"rate_req_per_s\":%s,\"acked_samples\":%d,\"delivered_samples\":%d,\"missing_acked_samples\":%d,\"lost_fraction\":%.6f,\"duplicate_samples\":%d}",
            m, r, a, dl, mi, (a > 0 ? mi / a : 0), du }')
    log "$line"
    RESULT_LINES+=("$line")
}

for scenario in $SCENARIOS; do
    for mode in $MODES; do
        case $scenario in
        outage) scenario_outage "$mode" ;;
        kill9) scenario_kill9 "$mode" ;;
        *) die "unknown scenario $scenario" ;;
        esac
    done
done

{
    printf '{"command":"%s","series":%d,"samples_per_request":%d,"concurrency":%d,"results":[\n' \
        "$COMMAND" "$SERIES" "$SPR" "$CONCURRENCY"
    sep=
    for l in "${RESULT_LINES[@]}"; do printf '%s  %s' "$sep" "$l"; sep=$',\n'; done
    printf '\n]}\n'
} >"$RESULTS/scenarios.json"

{
    echo "# highlander vs vmagent: failure scenarios"
    echo
    echo "Command: \`$COMMAND\` ($SERIES series, $SPR samples/request, $CONCURRENCY connections, $RATE req/s)"
    echo
    echo "| scenario | relay | acked samples | missing acked | backlog at recovery | bytes/buffered sample | catch-up (s) | catch-up samples/s | duplicates |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for l in "${RESULT_LINES[@]}"; do
        f() { echo "$l" | grep -o "\"$1\":[^,}]*" | sed 's/.*://; s/"//g'; }
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(f scenario)" "$(f mode)" \
            "$(f acked_samples)" "$(f missing_acked_samples)" "$(f backlog_samples)" \
            "$(f bytes_per_buffered_sample)" "$(f catch_up_s)" "$(f catch_up_samples_per_s)" \
            "$(f duplicate_samples)"
    done
} >"$RESULTS/scenarios.md"
cat "$RESULTS/scenarios.md"
