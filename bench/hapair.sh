#!/usr/bin/env bash
# Failover of an HA pair through highlander, at a fixed rate per replica (issue #28).
#
# Two generators send the same series to one highlander (defaults: tick 1 s, expiry 5 s,
# --durability sync), each at RATE samples/s: source a (weight 10) starts first, source b
# (weight 5) 0.3 s later and is held as a standby. a stops after DURATION s; b goes on for
# EXPIRY + AFTER s more, takes over when a expires, and the relay backfills b's held
# writes newer than a's last sample of each series. Once the sink has everything,
# `highlander-bench pair` checks both acknowledgement logs sample by sample and reports:
#   lost     a's forwarded (204) samples and b's forwarded samples newer than a's end
#            that never reached the sink;
#   hole     b's held (202) samples newer than a's end of their series that never reached
#            the sink, and the largest span from a's end to such a sample (seconds);
#   overlap  b's samples that reached the sink at or behind a's newest delivered sample
#            of that series;
# plus the relay's peak RSS, its CPU seconds per million delivered samples, and the
# handover's took_ms, backfilled_samples and trimmed_samples from its log.
# Every rate runs ROUNDS times. Writes bench/results/NAME.json and bench/results/NAME.md
# (NAME: hapair, or hapair-restart with --restart-after).
#
# Usage: bench/hapair.sh [--rates "200000 1000000"] [--rounds N] [--series N]
#                        [--samples-per-request N] [--concurrency N] [--duration SECONDS]
#                        [--expiry SECONDS] [--after SECONDS] [--restart-after SECONDS]
#                        [--no-build] [--keep]
#   --rates        samples/s per replica, one run per rate and round (default "200000 1000000")
#   --rounds       runs per rate (default 2)
#   --concurrency  connections per generator (default 4)
#   --duration     how long a sends (default 12)
#   --expiry       highlander's --health-expiry in seconds (default 5)
#   --after        how long b goes on after a's expiry (default 8)
#   --restart-after  SIGKILL highlander this many seconds after a's start and start it
#                  again on the same data directory (e.g. 13: after a's last write,
#                  before its expiry); then RSS and CPU are the second process's
# Extra relay flags: HIGHLANDER_ARGS. Binaries: CARGO_TARGET_DIR, or BENCH and HIGHLANDER.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RATES="200000 1000000"
ROUNDS=2
SERIES=100000
SPR=2000
CONCURRENCY=4
DURATION=12
EXPIRY=5
AFTER=8
RESTART_AFTER=
KEEP=0
# b's head start behind a, and the time both generators get to build their pools.
B_DELAY_MS=300
START_MARGIN_MS=2000
# The relay's extra flags are part of what was measured.
COMMAND="${HIGHLANDER_ARGS:+HIGHLANDER_ARGS='$HIGHLANDER_ARGS' }bench/hapair.sh${*:+ $*}"

while (($#)); do
    case $1 in
    --rates) RATES=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --series) SERIES=$2; shift ;;
    --samples-per-request) SPR=$2; shift ;;
    --concurrency) CONCURRENCY=$2; shift ;;
    --duration) DURATION=${2%s}; shift ;;
    --expiry) EXPIRY=${2%s}; shift ;;
    --after) AFTER=${2%s}; shift ;;
    --restart-after) RESTART_AFTER=${2%s}; shift ;;
    --no-build) NO_BUILD=1 ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,33p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done

NAME=hapair${RESTART_AFTER:+-restart}
need_tools
build_release
pick_ports
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"
WORK=$(mktemp -d "${BENCH_WORK_DIR:-${TMPDIR:-/tmp}}/highlander-hapair.XXXXXX")

cleanup() {
    local rc=$?
    set +e
    kill_all_started
    if ((KEEP)); then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { date +%s%3N; }

# status_requests FILE STATUS: requests the generator got STATUS for.
status_requests() {
    local n
    n=$(tr -d ' \n' <"$1" | { grep -o "\"$2\":[0-9]*" || true; } | head -1 | sed 's/.*://')
    echo "${n:-0}"
}

# handover_field LINE KEY: a field of the relay's handover log line (text or JSON format).
handover_field() {
    local v
    v=$(echo "$1" | { grep -o "$2\"\{0,1\}[=:] *[0-9.]*" || true; } | head -1 | sed 's/.*[=:] *//')
    echo "${v:--1}"
}

# start_source NAME DIR REQ_PER_S SECONDS START_MS PARITY QUERY: one generator; sets
# LAST_PID. a sends even timestamps, b odd ones: at 1M samples/s a round takes 100 ms and
# b starts 300 ms after a, so their rounds would often start in the same millisecond, and
# a sample both sent cannot be told apart at the sink.
start_source() {
    start "load-$1" "$2/load-$1.log" "$BENCH" load --url "$WRITE_URL" --series "$SERIES" \
        --samples-per-request "$SPR" --concurrency "$CONCURRENCY" --rate "$3" \
        --duration "${4}s" --start-at-unix-ms "$5" --timestamp-parity "$6" --timeout 10s \
        --query "$7" --progress --ack-log "$2/acks-$1.log" --out "$2/load-$1.json"
}

RESULT_LINES=()

run_pair() {
    local rate=$1 round=$2 dir="$WORK/hapair-$1-$2"
    local req_rate b_duration
    req_rate=$(awk -v s="$rate" -v n="$SPR" 'BEGIN {printf "%.3f", s / n}')
    b_duration=$((DURATION + EXPIRY + AFTER))
    mkdir -p "$dir"
    log "== hapair (round $round): $rate samples/s per replica ($req_rate req/s), a for ${DURATION}s, b for ${b_duration}s"
    start_sink "$dir"
    HIGHLANDER_ARGS="--health-expiry ${EXPIRY}s ${HIGHLANDER_ARGS:-}" RELAY_LOG_LEVEL=info \
        start_relay highlander "$dir" "$dir/data"
    local cpu0 t0
    cpu0=$(cpu_seconds "$RELAY_PID")
    t0=$(($(now_ms) + START_MARGIN_MS))
    start_source a "$dir" "$req_rate" "$DURATION" "$t0" even 'highlander_source=a&highlander_weight=10'
    local a_pid=$LAST_PID
    start_source b "$dir" "$req_rate" "$b_duration" $((t0 + B_DELAY_MS)) odd 'highlander_source=b&highlander_weight=5'
    local b_pid=$LAST_PID
    if [[ -n $RESTART_AFTER ]]; then
        sleep "$(awk -v t="$t0" -v now="$(now_ms)" -v r="$RESTART_AFTER" 'BEGIN {d = (t + r * 1000 - now) / 1000; print (d > 0 ? d : 0)}')"
        log "kill -9 highlander (pid $RELAY_PID) and start it again"
        kill -9 "$RELAY_PID"
        wait "$RELAY_PID" 2>/dev/null || true
        mv "$dir/relay.log" "$dir/relay-before-restart.log"
        HIGHLANDER_ARGS="--health-expiry ${EXPIRY}s ${HIGHLANDER_ARGS:-}" RELAY_LOG_LEVEL=info \
            start_relay highlander "$dir" "$dir/data"
        cpu0=$(cpu_seconds "$RELAY_PID")
    fi
    wait "$a_pid" || log "load a exited with $?"
    wait "$b_pid" || log "load b exited with $?"

    # Everything forwarded, plus the backfill; a live write of b trimmed at the switch
    # makes this too high, and then the wait ends when deliveries stop.
    local handover backfilled target
    handover=$({ grep 'handover :' "$dir/relay.log" || true; } | tail -1)
    backfilled=$(handover_field "$handover" backfilled_samples)
    target=$(((
        $(status_requests "$dir/load-a.json" 204) + $(status_requests "$dir/load-b.json" 204)) * SPR +
        (backfilled > 0 ? backfilled : 0)))
    STALL_S=5 wait_delivered "$target" 120 || log "sink stopped short of $target samples"
    local cpu1 hwm
    cpu1=$(cpu_seconds "$RELAY_PID")
    hwm=$(hwm_kb "$RELAY_PID")
    sink_stats >"$dir/sink_final.json"
    "$BENCH" pair --a-log "$dir/acks-a.log" --b-log "$dir/acks-b.log" \
        --sink "http://127.0.0.1:$SINK_PORT" >"$dir/pair.json" || die "pair failed (see $dir/pair.json)"
    stop "$RELAY_PID"
    stop "$SINK_PID"

    local pair a_start b_start
    pair=$(tr -d '\n' <"$dir/pair.json")
    a_start=$(json_num "$dir/load-a.json" started_unix_ms)
    b_start=$(json_num "$dir/load-b.json" started_unix_ms)
    local line
    line=$(awk -v r="$rate" -v rd="$round" -v c0="$cpu0" -v c1="$cpu1" -v hwm="$hwm" \
        -v dl="$(json_num "$dir/sink_final.json" unique_samples)" \
        -v dup="$(json_num "$dir/sink_final.json" duplicate_samples)" \
        -v sat="$({ grep -o '"ledger_saturated":[a-z]*' "$dir/sink_final.json" || true; } | sed 's/.*://')" \
        -v off="$((b_start - a_start))" -v hn="$(grep -c 'handover :' "$dir/relay.log" || true)" \
        -v took="$(handover_field "$handover" took_ms)" -v bf="$backfilled" \
        -v tr="$(handover_field "$handover" trimmed_samples)" \
        -v afail="$(json_num "$dir/load-a.json" failed_requests)" \
        -v bfail="$(json_num "$dir/load-b.json" failed_requests)" \
        -v blat="$(json_num "$dir/load-b.json" max)" \
        -v pair="$pair" 'BEGIN {
        cpu = (dl > 0) ? (c1 - c0) / (dl / 1e6) : -1
        # The pair report is flat JSON: append its fields.
        sub(/^ *\{/, "", pair)
        printf "{\"rate_samples_per_s\":%d,\"round\":%d,\"b_start_offset_ms\":%d,\"a_failed_requests\":%d,\"b_failed_requests\":%d,\"b_latency_max_ms\":%.1f,\"handovers\":%d,\"handover_took_ms\":%.1f,\"handover_backfilled_samples\":%s,\"handover_trimmed_samples\":%s,\"delivered_samples\":%d,\"duplicate_samples\":%d,\"ledger_saturated\":%s,\"relay_cpu_s_per_million\":%.3f,\"relay_peak_rss_mb\":%.1f,%s",
            r, rd, off, afail, bfail, blat, hn, took, bf, tr, dl, dup, (sat == "" ? "false" : sat), cpu, hwm / 1024, pair }')
    log "$line"
    RESULT_LINES+=("$line")
}

for round in $(seq "$ROUNDS"); do
    for rate in $RATES; do
        run_pair "$rate" "$round"
    done
done

# field LINE KEY: one value of a result line.
field() { echo "$1" | grep -o "\"$2\":[^,}]*" | sed 's/.*://; s/"//g'; }
# values RATE KEY: that value of every run at RATE, one a line.
values() {
    local l
    for l in "${RESULT_LINES[@]}"; do
        [[ $(field "$l" rate_samples_per_s) == "$1" ]] && field "$l" "$2"
    done
    return 0
}
median() { values "$@" | sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
maximum() { values "$@" | sort -g | tail -1; }
total() { values "$@" | awk '{t += $1} END {printf "%d", t}'; }
runs() { values "$1" round | wc -l; }

SUMMARY_KEYS="hole_s hole_samples hole_past_half_step_s hole_past_half_step_samples handover_took_ms handover_backfilled_samples handover_trimmed_samples relay_peak_rss_mb relay_cpu_s_per_million"
{
    printf '{"command":"%s","series":%d,"samples_per_request":%d,"concurrency":%d,"duration_s":%d,"expiry_s":%d,"after_s":%d,"rounds":%d,"medians":[\n' \
        "$COMMAND" "$SERIES" "$SPR" "$CONCURRENCY" "$DURATION" "$EXPIRY" "$AFTER" "$ROUNDS"
    sep=
    for rate in $RATES; do
        printf '%s  {"rate_samples_per_s":%d,"runs":%d,"lost_samples_total":%s,"overlap_samples_total":%s,"hole_s_max":%s' \
            "$sep" "$rate" "$(runs "$rate")" "$(total "$rate" lost_samples)" \
            "$(total "$rate" overlap_samples)" "$(maximum "$rate" hole_s)"
        for k in $SUMMARY_KEYS; do printf ',"%s":%s' "$k" "$(median "$rate" "$k")"; done
        printf '}'
        sep=$',\n'
    done
    printf '\n],"results":[\n'
    sep=
    for l in "${RESULT_LINES[@]}"; do printf '%s  %s' "$sep" "$l"; sep=$',\n'; done
    printf '\n]}\n'
} >"$RESULTS/$NAME.json"

{
    echo "# highlander: failover of an HA pair"
    echo
    echo "Command: \`$COMMAND\` ($SERIES series, $SPR samples/request, $CONCURRENCY connections per replica, a for ${DURATION} s, expiry ${EXPIRY} s, b for $((DURATION + EXPIRY + AFTER)) s, $ROUNDS rounds)"
    echo
    echo "Per rate: the sum of lost and overlapping samples over all runs, the largest hole, and the median of the rest. The hole counts b's held samples newer than a's last sample of their series that never arrived; of those, the relay drops the ones within half a step of a's last sample on purpose (they would crowd it), so the hole past half a step is the gap."
    echo
    echo "| samples/s per replica | runs | lost (all runs) | overlap (all runs) | hole (s, max) | hole (s) | hole samples | hole past half a step (s) | samples past half a step | handover (ms) | backfilled | trimmed | relay peak RSS (MB) | relay CPU s/M samples |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for rate in $RATES; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$rate" "$(runs "$rate")" \
            "$(total "$rate" lost_samples)" "$(total "$rate" overlap_samples)" "$(maximum "$rate" hole_s)" \
            "$(median "$rate" hole_s)" "$(median "$rate" hole_samples)" \
            "$(median "$rate" hole_past_half_step_s)" "$(median "$rate" hole_past_half_step_samples)" \
            "$(median "$rate" handover_took_ms)" "$(median "$rate" handover_backfilled_samples)" \
            "$(median "$rate" handover_trimmed_samples)" "$(median "$rate" relay_peak_rss_mb)" \
            "$(median "$rate" relay_cpu_s_per_million)"
    done
    echo
    echo "## Every run"
    echo
    echo "b's start offset is measured (the generators' first requests); b held = b's samples answered 202, of which backfilled = delivered; ambiguous = samples both sources sent with the same timestamp (left out of b's figures); failed requests = not acknowledged (not in the figures; a real Prometheus would retry them); b's slowest answer shows writes blocked behind the handover."
    echo
    echo "| samples/s per replica | round | b start offset (ms) | a lost | b lost | hole samples | hole (s) | within half a step | overlap | b held | backfilled (delivered) | ambiguous | handovers | handover (ms) | backfilled (log) | trimmed (log) | failed requests a/b | b's slowest answer (ms) | peak RSS (MB) | CPU s/M |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    for l in "${RESULT_LINES[@]}"; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s/%s | %s | %s | %s |\n' \
            "$(field "$l" rate_samples_per_s)" "$(field "$l" round)" "$(field "$l" b_start_offset_ms)" \
            "$(field "$l" a_lost_samples)" "$(field "$l" b_lost_samples)" "$(field "$l" hole_samples)" \
            "$(field "$l" hole_s)" "$(field "$l" hole_within_half_step_samples)" "$(field "$l" overlap_samples)" \
            "$(field "$l" b_held_samples)" "$(field "$l" b_held_delivered_samples)" "$(field "$l" ambiguous_samples)" \
            "$(field "$l" handovers)" "$(field "$l" handover_took_ms)" "$(field "$l" handover_backfilled_samples)" \
            "$(field "$l" handover_trimmed_samples)" "$(field "$l" a_failed_requests)" "$(field "$l" b_failed_requests)" "$(field "$l" b_latency_max_ms)" \
            "$(field "$l" relay_peak_rss_mb)" "$(field "$l" relay_cpu_s_per_million)"
    done
} >"$RESULTS/$NAME.md"
cat "$RESULTS/$NAME.md"
