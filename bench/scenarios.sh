#!/usr/bin/env bash
# Failure scenarios for highlander and vmagent, on this machine, under a fixed load.
#
# outage: the sink answers 503 for OUTAGE seconds in the middle of the load, then recovers.
#   Reports the backlog (acknowledged but undelivered samples) when the sink comes back,
#   bytes on disk per buffered sample, catch-up time and rate, and whether every
#   acknowledged sample arrived in the end (checked sample by sample). The catch-up is split
#   into the wait for the first delivery after recovery (the retry timing) and the drain.
# kill9: with the sink down (so the relay holds a backlog), the relay gets SIGKILL, is
#   restarted on the same data directory, the sink comes back; reports how many samples the
#   generator had seen acknowledged (2xx) that never reached the sink.
#
# The rate defaults to 50% of vmagent's max from bench/results/latest.json (run
# bench/compare.sh first), else 2 000 000 samples/s.
# Every scenario runs ROUNDS times (default 3), the relays alternating within each round;
# the tables give the median of each figure and every run. A relay's wait after recovery
# depends on where its backoff happened to be, so one run says little about catch-up.
# Writes bench/results/scenarios.json and bench/results/scenarios.md.
#
# Usage: bench/scenarios.sh [--scenarios "outage kill9"] [--modes "highlander highlander-inflight vmagent"]
#                           [--rounds N] [--rate REQ_PER_S] [--series N] [--samples-per-request N]
#                           [--concurrency N] [--outage SECONDS] [--no-build] [--keep]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCENARIOS="outage kill9"
MODES="highlander highlander-inflight vmagent"
ROUNDS=3
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
    --rounds) ROUNDS=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --series) SERIES=$2; shift ;;
    --samples-per-request) SPR=$2; shift ;;
    --concurrency) CONCURRENCY=$2; shift ;;
    --outage) OUTAGE=${2%s}; shift ;;
    --no-build) NO_BUILD=1 ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done

need_tools
[[ " $MODES " == *" vmagent "* ]] && need_vmagent
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
    local mode=$1 round=$2 dir="$WORK/outage-$mode-$2" data="$WORK/outage-$mode-$2/data"
    mkdir -p "$dir"
    log "== outage (round $round): $mode, ${OUTAGE}s storage outage at $RATE req/s"
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
    local backlog=$((acked_off - delivered_off)) catch_up_ms=-1 first_ms=-1 got delivered_up=0
    local deadline=$((SECONDS + 300))
    while ((SECONDS < deadline)); do
        got=$(delivered_now)
        # The delivery curve after recovery (ms since recovery, samples at the sink).
        echo "$(($(now_ms) - t_off)) ${got:-0}" >>"$dir/delivered.log"
        if ((first_ms < 0 && ${got:-0} > delivered_off)); then
            first_ms=$(($(now_ms) - t_off))
        fi
        if ((${got:-0} >= acked_off)); then
            catch_up_ms=$(($(now_ms) - t_off))
            delivered_up=$((got - delivered_off))
            break
        fi
        sleep 0.1
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
    line=$(awk -v m="$mode" -v rd="$round" -v r="$RATE" -v o="$OUTAGE" -v b="$backlog" -v bd="$base_disk" \
        -v pd="$peak_disk" -v od="$disk_off" -v c="$catch_up_ms" -v f="$first_ms" -v up="$delivered_up" \
        -v a="${acked:-0}" -v dl="${delivered:-0}" -v mi="${missing:-0}" -v du="${dups:-0}" 'BEGIN {
        bps = b > 0 ? (od - bd) / b : 0
        # Backlog plus the load that kept arriving, over the catch-up time.
        rate = (c > 0) ? up / (c / 1000) : 0
        # The drain: from the first delivery after recovery to the last of the backlog.
        drain = (c > 0 && f >= 0) ? (c - f) / 1000 : -1
        printf "{\"scenario\":\"outage\",\"mode\":\"%s\",\"round\":%d,\"rate_req_per_s\":%s,\"outage_s\":%d,\"backlog_samples\":%d,\"disk_bytes_before\":%d,\"disk_bytes_at_recovery\":%d,\"disk_bytes_peak\":%d,\"bytes_per_buffered_sample\":%.2f,\"catch_up_s\":%.2f,\"first_delivery_s\":%.2f,\"drain_s\":%.2f,\"catch_up_samples_per_s\":%.0f,\"acked_samples\":%d,\"delivered_samples\":%d,\"missing_acked_samples\":%d,\"duplicate_samples\":%d}",
            m, rd, r, o, b, bd, od, pd, bps, c / 1000, f / 1000, drain, rate, a, dl, mi, du }')
    log "$line"
    RESULT_LINES+=("$line")
}

scenario_kill9() {
    local mode=$1 round=$2 dir="$WORK/kill9-$mode-$2" data="$WORK/kill9-$mode-$2/data"
    mkdir -p "$dir"
    log "== kill9 (round $round): $mode, SIGKILL with a backlog at $RATE req/s"
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
    line=$(awk -v m="$mode" -v rd="$round" -v r="$RATE" -v a="${acked:-0}" -v dl="${delivered:-0}" \
        -v mi="${missing:-0}" -v du="${dups:-0}" 'BEGIN {
        printf "{\"scenario\":\"kill9\",\"mode\":\"%s\",\"round\":%d,\"rate_req_per_s\":%s,\"acked_samples\":%d,\"delivered_samples\":%d,\"missing_acked_samples\":%d,\"lost_fraction\":%.6f,\"duplicate_samples\":%d}",
            m, rd, r, a, dl, mi, (a > 0 ? mi / a : 0), du }')
    log "$line"
    RESULT_LINES+=("$line")
}

for round in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for mode in $MODES; do
            case $scenario in
            outage) scenario_outage "$mode" "$round" ;;
            kill9) scenario_kill9 "$mode" "$round" ;;
            *) die "unknown scenario $scenario" ;;
            esac
        done
    done
done

# field LINE KEY: one value of a result line.
field() { echo "$1" | grep -o "\"$2\":[^,}]*" | sed 's/.*://; s/"//g'; }
# values SCENARIO MODE KEY: that value of every run, one a line.
values() {
    local l
    for l in "${RESULT_LINES[@]}"; do
        [[ $(field "$l" scenario) == "$1" && $(field "$l" mode) == "$2" ]] && field "$l" "$3"
    done
    return 0
}
# median SCENARIO MODE KEY (empty when no run has it; a failed measurement is -1 and
# sorts first, so it shows when it is most of the runs).
median() { values "$@" | sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
total() { values "$@" | awk '{t += $1} END {printf "%d", t}'; }
runs() { values "$1" "$2" mode | wc -l; }

{
    printf '{"command":"%s","series":%d,"samples_per_request":%d,"concurrency":%d,"rounds":%d,"medians":[\n' \
        "$COMMAND" "$SERIES" "$SPR" "$CONCURRENCY" "$ROUNDS"
    sep=
    for scenario in $SCENARIOS; do
        for mode in $MODES; do
            case $scenario in
            outage) keys="backlog_samples bytes_per_buffered_sample catch_up_s first_delivery_s drain_s catch_up_samples_per_s" ;;
            *) keys="acked_samples lost_fraction" ;;
            esac
            printf '%s  {"scenario":"%s","mode":"%s","runs":%d,"missing_acked_samples_total":%s,"duplicate_samples_total":%s' \
                "$sep" "$scenario" "$mode" "$(runs "$scenario" "$mode")" \
                "$(total "$scenario" "$mode" missing_acked_samples)" "$(total "$scenario" "$mode" duplicate_samples)"
            for k in $keys; do printf ',"%s":%s' "$k" "$(median "$scenario" "$mode" "$k")"; done
            printf '}'
            sep=$',\n'
        done
    done
    printf '\n],"results":[\n'
    sep=
    for l in "${RESULT_LINES[@]}"; do printf '%s  %s' "$sep" "$l"; sep=$',\n'; done
    printf '\n]}\n'
} >"$RESULTS/scenarios.json"

{
    echo "# highlander vs vmagent: failure scenarios"
    echo
    echo "Command: \`$COMMAND\` ($SERIES series, $SPR samples/request, $CONCURRENCY connections, $RATE req/s, ${OUTAGE} s outage, $ROUNDS rounds)"
    echo
    if [[ " $SCENARIOS " == *" outage "* ]]; then
        echo "## Storage outage: medians over the rounds"
        echo
        echo "Catch-up runs from the storage's recovery to the delivery of the last sample acknowledged before it: the wait for the first delivery (the relay's retry timing) plus the drain."
        echo
        echo "| relay | runs | missing acked (all runs) | backlog at recovery | bytes/buffered sample | catch-up (s) | first delivery (s) | drain (s) | catch-up samples/s | duplicates (all runs) |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for mode in $MODES; do
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$mode" "$(runs outage "$mode")" \
                "$(total outage "$mode" missing_acked_samples)" "$(median outage "$mode" backlog_samples)" \
                "$(median outage "$mode" bytes_per_buffered_sample)" "$(median outage "$mode" catch_up_s)" \
                "$(median outage "$mode" first_delivery_s)" "$(median outage "$mode" drain_s)" \
                "$(median outage "$mode" catch_up_samples_per_s)" "$(total outage "$mode" duplicate_samples)"
        done
        echo
    fi
    if [[ " $SCENARIOS " == *" kill9 "* ]]; then
        echo "## kill -9 with a backlog"
        echo
        echo "| relay | runs | acked samples (median) | missing acked (all runs) | lost fraction (median) | duplicates (all runs) |"
        echo "|---|---:|---:|---:|---:|---:|"
        for mode in $MODES; do
            printf '| %s | %s | %s | %s | %s | %s |\n' "$mode" "$(runs kill9 "$mode")" \
                "$(median kill9 "$mode" acked_samples)" "$(total kill9 "$mode" missing_acked_samples)" \
                "$(median kill9 "$mode" lost_fraction)" "$(total kill9 "$mode" duplicate_samples)"
        done
        echo
    fi
    echo "## Every run"
    echo
    echo "| scenario | round | relay | acked samples | missing acked | backlog at recovery | bytes/buffered sample | catch-up (s) | first delivery (s) | drain (s) | duplicates |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for l in "${RESULT_LINES[@]}"; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(field "$l" scenario)" \
            "$(field "$l" round)" "$(field "$l" mode)" "$(field "$l" acked_samples)" \
            "$(field "$l" missing_acked_samples)" "$(field "$l" backlog_samples)" \
            "$(field "$l" bytes_per_buffered_sample)" "$(field "$l" catch_up_s)" \
            "$(field "$l" first_delivery_s)" "$(field "$l" drain_s)" "$(field "$l" duplicate_samples)"
    done
} >"$RESULTS/scenarios.md"
cat "$RESULTS/scenarios.md"
