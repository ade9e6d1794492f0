#!/usr/bin/env bash
# Side-by-side steady-state benchmark on this machine: direct (generator -> sink),
# highlander (generator -> highlander serve --durability sync -> sink) and vmagent
# (generator -> vmagent with its persistent queue -> sink), alternating the order each round.
#
# Phase "max": unlimited rate (as fast as each path answers). Phase "latency": a fixed rate
# of 50% of vmagent's median "max" throughput (else direct's; or --latency-rate requests/s),
# for the latency comparison and the CPU per sample at a rate every mode sustains.
# Writes bench/results/NAME.json and NAME.md (NAME: --name, default latest). See bench/README.md.
#
# Usage: bench/compare.sh [--rounds N] [--duration SECONDS] [--series N]
#                         [--samples-per-request N] [--concurrency N]
#                         [--modes "direct highlander highlander-inflight vmagent"]
#                         (vmagent: Debian sid's, fetched by scripts/sid-servers, or
#                         $VMAGENT; vmagent-bookworm: /usr/bin/vmagent, added by default
#                         when installed; SINK_ARGS='--answer-delay-ms 20' makes the sink a
#                         distant storage)
#                         (also: highlander-serial: one request at a time, no ordered
#                         lanes; highlander-v2: the generator sends 2.0 and the sink reads
#                         1.0 only, so highlander converts; highlander-v2-pass: the sink
#                         reads 2.0 too, so highlander passes 2.0 through)
#                         [--no-latency] [--latency-rate REQ_PER_S] [--no-build] [--keep]
#                         [--name latest]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
DURATION=20
SERIES=100000
SPR=2000
CONCURRENCY=8
MODES="direct highlander highlander-inflight vmagent"
# Debian bookworm's vmagent, as a second row, when the system has one.
[[ -x $VMAGENT_BOOKWORM ]] && MODES="$MODES vmagent-bookworm"
LATENCY=1
LATENCY_RATE=
KEEP=0
NAME=latest
DRAIN_MAX=${DRAIN_MAX:-120}
# The relays' extra flags are part of what was measured.
COMMAND="${HIGHLANDER_ARGS:+HIGHLANDER_ARGS='$HIGHLANDER_ARGS' }${VMAGENT_ARGS:+VMAGENT_ARGS='$VMAGENT_ARGS' }${SINK_ARGS:+SINK_ARGS='$SINK_ARGS' }bench/compare.sh${*:+ $*}"

while (($#)); do
    case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=${2%s}; shift ;;
    --series) SERIES=$2; shift ;;
    --samples-per-request) SPR=$2; shift ;;
    --concurrency) CONCURRENCY=$2; shift ;;
    --modes) MODES=$2; shift ;;
    --no-latency) LATENCY=0 ;;
    --latency-rate) LATENCY_RATE=$2; shift ;;
    --no-build) NO_BUILD=1 ;;
    --keep) KEEP=1 ;;
    --name) NAME=$2; shift ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
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
WORK=$(mktemp -d "${BENCH_WORK_DIR:-${TMPDIR:-/tmp}}/highlander-bench.XXXXXX")
RUNS="$WORK/runs"
mkdir -p "$RUNS"
# The versions the report names beside each relay.
{
    printf 'highlander %s\n' "$("$HIGHLANDER" --version 2>/dev/null | head -n 1)"
    [[ " $MODES " == *" vmagent "* ]] && printf 'vmagent vmagent %s (%s)\n' "$(vmagent_version "$VMAGENT")" "${VMAGENT#"$ROOT"/}"
    [[ " $MODES " == *" vmagent-bookworm "* ]] && printf 'vmagent-bookworm vmagent %s (%s)\n' "$(vmagent_version "$VMAGENT_BOOKWORM")" "$VMAGENT_BOOKWORM"
    true
} >"$RUNS/versions.txt"

cleanup() {
    local rc=$?
    set +e
    kill_all_started
    if ((KEEP)); then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# protocol_of MODE: the Remote-Write version the generator sends in MODE.
protocol_of() {
    if [[ $1 == *-v2 || $1 == *-v2-pass ]]; then echo 2.0; else echo 1.0; fi
}

# run_one PHASE ROUND MODE RATE
run_one() {
    local phase=$1 round=$2 mode=$3 rate=$4
    local dir="$RUNS/$phase-r$round-$mode"
    mkdir -p "$dir"
    log "== $phase round $round: $mode (rate ${rate} req/s, 0 = unlimited)"
    local sink_args=
    [[ $mode == *-v2-pass ]] && sink_args=--accept-v2
    start_sink "$dir" $sink_args
    start_relay "$mode" "$dir" "$WORK/data-$phase-$round-$mode"

    local relay_cpu0=0 sink_cpu0
    [[ -n $RELAY_PID ]] && relay_cpu0=$(cpu_seconds "$RELAY_PID")
    sink_cpu0=$(cpu_seconds "$SINK_PID")

    timeout $((DURATION + 90)) "$BENCH" load --url "$WRITE_URL" --series "$SERIES" \
        --samples-per-request "$SPR" --concurrency "$CONCURRENCY" --rate "$rate" \
        --duration "${DURATION}s" --query highlander_source=bench --protocol "$(protocol_of "$mode")" \
        --out "$dir/load.json" >/dev/null 2>"$dir/load.err" ||
        log "load exited with $? (see $dir/load.err)"
    local load_end=$SECONDS
    sink_stats >"$dir/sink_end.json" || echo '{}' >"$dir/sink_end.json"

    local acked
    acked=$(json_num "$dir/load.json" acked_samples)
    if ! wait_delivered "${acked:-0}" "$DRAIN_MAX"; then
        log "$mode: sink did not reach $acked samples (see sink_final.json)"
    fi
    local drain=$((SECONDS - load_end))
    sink_stats >"$dir/sink_final.json" || echo '{}' >"$dir/sink_final.json"

    local relay_cpu=0 relay_hwm=0 sink_cpu
    if [[ -n $RELAY_PID ]]; then
        relay_cpu=$(awk -v a="$relay_cpu0" -v b="$(cpu_seconds "$RELAY_PID")" 'BEGIN {printf "%.2f", b - a}')
        relay_hwm=$(hwm_kb "$RELAY_PID")
    fi
    sink_cpu=$(awk -v a="$sink_cpu0" -v b="$(cpu_seconds "$SINK_PID")" 'BEGIN {printf "%.2f", b - a}')
    printf '{"mode":"%s","phase":"%s","round":%d,"relay_cpu_s":%s,"relay_hwm_kb":%s,"sink_cpu_s":%s,"drain_s":%d}\n' \
        "$mode" "$phase" "$round" "$relay_cpu" "${relay_hwm:-0}" "$sink_cpu" "$drain" >"$dir/measure.json"
    log "$mode: $(json_num "$dir/load.json" samples_per_s) samples/s acked, p99 $(json_num "$dir/load.json" p99) ms, relay CPU ${relay_cpu}s, HWM ${relay_hwm:-0} kB, drain ${drain}s"

    stop "$RELAY_PID"
    stop "$SINK_PID"
    rm -rf "$WORK/data-$phase-$round-$mode"
}

# run_phase PHASE RATE: every mode once per round, the order reversed every other round.
run_phase() {
    local phase=$1 rate=$2 round order
    for round in $(seq 1 "$ROUNDS"); do
        order=$MODES
        if ((round % 2 == 0)); then
            order=$(echo "$MODES" | awk '{for (i = NF; i > 0; i--) printf "%s ", $i}')
        fi
        for mode in $order; do
            run_one "$phase" "$round" "$mode" "$rate"
        done
    done
}

run_phase max 0

if ((LATENCY)); then
    if [[ -n $LATENCY_RATE ]]; then
        rate=$LATENCY_RATE
        log "latency phase at $rate req/s (--latency-rate)"
    else
        # 50% of vmagent's median max throughput (else direct's), as requests per second.
        base=$("$BENCH" report --runs "$RUNS" --get /summary/max/vmagent/delivered_samples_per_s 2>/dev/null ||
            "$BENCH" report --runs "$RUNS" --get /summary/max/direct/delivered_samples_per_s)
        rate=$(awk -v s="$base" -v n="$SPR" 'BEGIN {printf "%.1f", s * 0.5 / n}')
        log "latency phase at $rate req/s (50% of $base samples/s)"
    fi
    run_phase latency "$rate"
fi

"$BENCH" report --runs "$RUNS" --json "$RESULTS/$NAME.json" --markdown "$RESULTS/$NAME.md" \
    --command "$COMMAND"
log "wrote $RESULTS/$NAME.json and $RESULTS/$NAME.md"
