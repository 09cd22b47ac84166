#!/usr/bin/env bash
# health_vs_redis.sh: the foundation benchmark. How fast is an empty larder
# call (gRPC health Check) next to the cheapest Redis round trip (PING)?
#
# In one run, on this machine, it starts its own redis-server and the larder
# servers on free loopback ports, then alternates, for each round:
#   ld-load --concurrency C --duration D      (health Check, per larder server)
#   redis-benchmark -t ping_mbulk -c C -n N   (N sized to last about D seconds)
# and prints per-round and median (min-max) calls/s, p50, p99, server CPU per
# call, and the larder/Redis ratios. Everything it started is stopped on exit.
#
# Usage: bench/health_vs_redis.sh [--quick] [--build DIR] [--rounds N] [--duration S]
#                                 [--concurrency C] [--servers LIST] [--out DIR]
#                                 [--json PATH] [--warmup S]
set -euo pipefail

BUILD=build
DURATION=10
WARMUP=1
ROUNDS=3
CONC=32
SERVERS="registry online offline"
OUT=
JSON=

usage() {
    cat <<EOF
Usage: $0 [options]
  --quick            3 s per run instead of 10
  --build DIR        meson build directory with the binaries (default: build)
  --rounds N         rounds (default 3)
  --duration S       seconds per measured run (default 10)
  --concurrency C    calls in flight / Redis clients (default 32)
  --servers LIST     larder servers to run, space or comma separated
                     (default "registry online offline"; missing binaries are skipped)
  --json PATH        also write every run as machine-readable records (a JSON list of
                     {name, metric, value, unit, round, reference, params}) to PATH
  --warmup S         unmeasured seconds before each larder run (default 1)
  --out DIR          keep the raw results (ld-load JSON lines, redis-benchmark CSV,
                     the results table, server logs) in DIR
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) DURATION=3 ;;
    --build) BUILD=$2; shift ;;
    --build=*) BUILD=${1#*=} ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --concurrency) CONC=$2; shift ;;
    --servers) SERVERS=${2//,/ }; shift ;;
    --out) OUT=$2; shift ;;
    --json) JSON=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "$0: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

LD_LOAD=$BUILD/bench/ld-load
die() { echo "health_vs_redis: $*" >&2; exit 1; }
[ -x "$LD_LOAD" ] || die "$LD_LOAD not found (ninja -C $BUILD bench/ld-load)"
command -v redis-server >/dev/null || die "redis-server not installed"
command -v redis-benchmark >/dev/null || die "redis-benchmark not installed"
command -v redis-cli >/dev/null || die "redis-cli not installed"

# ---- process bookkeeping: everything started here is stopped on exit ------
TMP=$(mktemp -d /tmp/larder-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # give each process up to 5 s, then SIGKILL
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$OUT" ]; then
        if ! { mkdir -p "$OUT" && cp -r "$TMP"/. "$OUT"/; }; then
            echo "health_vs_redis: could not copy results to $OUT" >&2
        fi
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# CPU (user + system) a process has used so far, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
CLK_TCK=$(getconf CLK_TCK)

# Interference meter. Over one run: the CPU the machine spent (user, nice,
# system, irq, softirq, steal), minus the server's and the client's (this
# shell's waited-for children), is what other processes took; printed as % of
# the machine. Loopback softirq work shows up in both the machine's and our
# processes' times, so it cancels out; steal counts as interference.
meter_start() { # $1 = server pid
    M_SRV=$(cpu_ticks "$1")
    M_CLI=$(awk '{ print $16 + $17 }' "/proc/$$/stat")
    read -r M_BUSY M_ALL < <(awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i
        print $2 + $3 + $4 + $7 + $8 + $9, t }' /proc/stat)
}
meter_stop() { # $1 = server pid; sets SRV_TICKS and OTHER_PCT
    local srv cli busy all
    srv=$(cpu_ticks "$1")
    cli=$(awk '{ print $16 + $17 }' "/proc/$$/stat")
    read -r busy all < <(awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i
        print $2 + $3 + $4 + $7 + $8 + $9, t }' /proc/stat)
    SRV_TICKS=$((srv - M_SRV))
    OTHER_PCT=$(awk -v b="$((busy - M_BUSY))" -v s="$SRV_TICKS" -v c="$((cli - M_CLI))" \
        -v a="$((all - M_ALL))" 'BEGIN { o = a > 0 ? 100 * (b - s - c) / a : 0
            printf "%.1f", (o < 0 ? 0 : o) }')
}

# ---- start Redis ------------------------------------------------------------
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$TMP" --logfile "$TMP/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 100); do
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
    kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited: $(tail -5 "$TMP/redis.log")"
    sleep 0.05
done
[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] ||
    die "redis-server on port $REDIS_PORT did not answer PING"

# ---- start the larder servers -------------------------------------------------
NAMES=()   # servers that came up
declare -A PORT PID SKIPPED
for s in $SERVERS; do
    case "$s" in
    registry) bin=$BUILD/registry_server/larder-registry ;;
    online) bin=$BUILD/online_server/larder-online ;;
    offline) bin=$BUILD/offline_server/larder-offline ;;
    *) die "unknown server '$s' (registry, online, offline)" ;;
    esac
    if [ ! -x "$bin" ]; then
        SKIPPED[$s]="$bin not built"
        continue
    fi
    PORT[$s]=$(free_port)
    mkdir -p "$TMP/$s"
    # run from an empty directory, so no stray feature_store.yaml is picked up;
    # env -C execs the server, so $! is the server's own pid
    env -C "$TMP/$s" "$(realpath "$bin")" --port "${PORT[$s]}" --no-access-log \
        >"$TMP/$s.log" 2>&1 &
    PID[$s]=$!
    PIDS+=("${PID[$s]}")
    # readiness: one successful health Check (ld-load waits for the connection)
    if "$LD_LOAD" --target "127.0.0.1:${PORT[$s]}" --concurrency 1 --warmup 0 --duration 0.05 \
        --connect-timeout 10 --json >"$TMP/$s.probe" 2>&1; then
        NAMES+=("$s")
    else
        SKIPPED[$s]="did not serve health Check: $(tail -3 "$TMP/$s.log" | tr '\n' ' ')"
        kill -TERM "${PID[$s]}" 2>/dev/null || true
    fi
done
[ ${#NAMES[@]} -gt 0 ] || {
    for s in "${!SKIPPED[@]}"; do echo "  $s: ${SKIPPED[$s]}" >&2; done
    die "no larder server came up"
}

# ---- describe the setup -------------------------------------------------------
buildtype=$(/usr/bin/python3 -c 'import json, sys
opts = json.load(open(sys.argv[1]))
print(next((o["value"] for o in opts if o["name"] == "buildtype"), "unknown"))' \
    "$BUILD/meson-info/intro-buildoptions.json" 2>/dev/null || echo unknown)
echo "health vs Redis: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), $(nproc) CPUs" \
    "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
# the load average lags by a minute; sample the CPU for 1 s as well
idle_pct() {
    local a b
    read -r -a a </proc/stat
    sleep 1
    read -r -a b </proc/stat
    awk -v a="${a[*]}" -v b="${b[*]}" 'BEGIN {
        n = split(a, x, " "); split(b, y, " "); t = 0
        for (i = 2; i <= n; i++) t += y[i] - x[i]
        printf "%.0f", (t > 0 ? 100 * ((y[5] - x[5]) + (y[6] - x[6])) / t : 0) }'
}
idle=$(idle_pct)
echo "  client and servers share these CPUs; before start: CPU idle ${idle}% over 1 s," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)" \
    "$([ "$idle" -ge 90 ] || echo '** machine busy: numbers are noise **')"
src=$(git -C "$(dirname "$0")" describe --always --dirty 2>/dev/null || echo unknown)
echo "  source: git $src; build: $BUILD (buildtype ${buildtype:-unknown})$([ "$buildtype" = release ] || echo '  ** not a release build **')"
echo "  redis: $(redis-server --version | cut -d' ' -f3) on port $REDIS_PORT; larder: ${NAMES[*]}"
for s in "${!SKIPPED[@]}"; do echo "  skipped $s: ${SKIPPED[$s]}"; done
echo "  $ROUNDS rounds; $CONC calls in flight; ${DURATION} s measured per run, ${WARMUP} s warm-up"
echo "  larder: $LD_LOAD --concurrency $CONC --duration $DURATION --warmup $WARMUP (1 thread, 1 connection)"

# ---- size the Redis run (and warm it up) --------------------------------------
csv_field() { # $1 = csv line, $2 = 1-based field; strips quotes
    echo "$1" | awk -F, -v f="$2" '{ gsub(/"/, "", $f); print $f }'
}
cal=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t ping_mbulk -c "$CONC" -n 50000 --csv |
    grep PING_MBULK)
cal_rps=$(csv_field "$cal" 2)
REDIS_N=$(awk -v r="$cal_rps" -v d="$DURATION" 'BEGIN { n = int(r * d); if (n < 10000) n = 10000; print n }')
echo "  redis: redis-benchmark -t ping_mbulk -c $CONC -n $REDIS_N --csv (sized from a warm-up of $cal_rps/s)"
echo

RESULTS=$TMP/results # lines: system round rps p50_us p99_us cpu_us_per_call other_pct

# Peak RSS of one run: reset the process's VmHWM to its current RSS before the run
# (/proc/PID/clear_refs, Linux >= 4.0), read it after. Lines: system round KiB.
rss_reset() { { echo 5 >"/proc/$1/clear_refs"; } 2>/dev/null; }
rss_peak() { # $1 = pid, $2 = system, $3 = round, $4 = 0 if the reset worked
    [ "$4" = 0 ] || return 0
    awk -v s="$2" -v r="$3" '/^VmHWM:/ { print s, r, $2 }' "/proc/$1/status" \
        >>"$TMP/rss" 2>/dev/null || true
}

run_larder() { # $1 = server name, $2 = round
    local s=$1 r=$2 out rr=0
    rss_reset "${PID[$s]}" || rr=1
    meter_start "${PID[$s]}"
    out=$("$LD_LOAD" --target "127.0.0.1:${PORT[$s]}" --concurrency "$CONC" --duration "$DURATION" \
        --warmup "$WARMUP" --json) || { echo "ld-load failed against $s" >&2; return 1; }
    meter_stop "${PID[$s]}"
    rss_peak "${PID[$s]}" "$s" "$r" "$rr"
    echo "$out" >>"$TMP/$s.jsonl"
    local rps p50 p99 errs total
    rps=$(echo "$out" | sed -E 's/.*"rps":([0-9.]+).*/\1/')
    p50=$(echo "$out" | sed -E 's/.*"p50_us":([0-9.]+).*/\1/')
    p99=$(echo "$out" | sed -E 's/.*"p99_us":([0-9.]+).*/\1/')
    errs=$(echo "$out" | sed -E 's/.*"errors":([0-9]+).*/\1/')
    total=$(echo "$out" | sed -E 's/.*"calls_total":([0-9]+).*/\1/')
    [ "$errs" = 0 ] || echo "  warning: $s round $r: $errs errors: $out" >&2
    awk -v s="$s" -v r="$r" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v c="$SRV_TICKS" \
        -v t="$total" -v hz="$CLK_TCK" -v o="$OTHER_PCT" \
        'BEGIN { printf "%s %d %.1f %.1f %.1f %.2f %s\n", s, r, rps, p50, p99, c / hz * 1e6 / t, o }' \
        >>"$RESULTS"
}

run_redis() { # $1 = round
    local r=$1 line rr=0
    rss_reset "$REDIS_PID" || rr=1
    meter_start "$REDIS_PID"
    line=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t ping_mbulk -c "$CONC" -n "$REDIS_N" \
        --csv | grep PING_MBULK)
    meter_stop "$REDIS_PID"
    rss_peak "$REDIS_PID" redis "$r" "$rr"
    echo "$line" >>"$TMP/redis.csv"
    # csv: test, rps, avg, min, p50, p95, p99, max (latencies in ms)
    awk -v r="$r" -v rps="$(csv_field "$line" 2)" -v p50="$(csv_field "$line" 5)" \
        -v p99="$(csv_field "$line" 7)" -v c="$SRV_TICKS" -v n="$REDIS_N" -v hz="$CLK_TCK" \
        -v o="$OTHER_PCT" 'BEGIN { printf "redis %d %.1f %.1f %.1f %.2f %s\n", r, rps, p50 * 1000,
            p99 * 1000, c / hz * 1e6 / n, o }' >>"$RESULTS"
}

for r in $(seq "$ROUNDS"); do
    # alternate the order so drift (thermal, other load) does not favour one side
    if [ $((r % 2)) = 1 ]; then
        for s in "${NAMES[@]}"; do run_larder "$s" "$r"; done
        run_redis "$r"
    else
        run_redis "$r"
        for s in "${NAMES[@]}"; do run_larder "$s" "$r"; done
    fi
    echo "  round $r/$ROUNDS done"
done
echo

# ---- report -----------------------------------------------------------------
# printf format per results column: calls/s and latencies whole, CPU to 0.01 us
colfmt() { case $1 in 6) echo "%.2f" ;; 7) echo "%.1f" ;; *) echo "%.0f" ;; esac; }
# "median (min-max)" of column $2 for system $1
stat() {
    awk -v sys="$1" -v col="$2" '$1 == sys { print $col }' "$RESULTS" | sort -g |
        awk -v f="$(colfmt "$2")" '{ v[NR] = $1 } END {
            if (NR == 0) { print "-"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf f " (" f "-" f ")\n", m, v[1], v[NR] }'
}
val() { # system round col
    awk -v sys="$1" -v r="$2" -v col="$3" -v f="$(colfmt "$3")" \
        '$1 == sys && $2 == r { printf f "\n", $col }' "$RESULTS"
}

printf "%-16s %6s %12s %10s %10s %16s %10s\n" system round calls/s p50_us p99_us \
    srv_cpu_us/call other_%
for sys in "${NAMES[@]/#/larder-}" redis; do
    key=${sys#larder-}
    for r in $(seq "$ROUNDS"); do
        printf "%-16s %6s %12s %10s %10s %16s %10s\n" "$sys" "$r" "$(val "$key" "$r" 3)" \
            "$(val "$key" "$r" 4)" "$(val "$key" "$r" 5)" "$(val "$key" "$r" 6)" \
            "$(val "$key" "$r" 7)"
    done
done
worst=$(awk '$7 > w { w = $7 } END { printf "%.1f", w }' "$RESULTS")
echo "other_% = CPU taken by other processes during the run, in % of the machine (worst: $worst%)"
awk -v w="$worst" 'BEGIN { exit !(w > 5) }' &&
    echo "** other processes took more than 5% of the machine in some runs: treat those as noise **"
echo
echo "median (min-max) over $ROUNDS rounds:"
printf "%-16s %26s %22s %22s %18s\n" system calls/s p50_us p99_us srv_cpu_us/call
for sys in "${NAMES[@]/#/larder-}" redis; do
    key=${sys#larder-}
    printf "%-16s %26s %22s %22s %18s\n" "$sys" "$(stat "$key" 3)" "$(stat "$key" 4)" \
        "$(stat "$key" 5)" "$(stat "$key" 6)"
done
echo
echo "ratios larder/Redis (median of the per-round ratios; calls/s: higher is better for larder,"
echo "latency and CPU: lower is better):"
printf "%-16s %10s %10s %10s %16s\n" system calls/s p50 p99 srv_cpu/call
for s in "${NAMES[@]}"; do
    ratios=$(for r in $(seq "$ROUNDS"); do
        awk -v sys="$s" -v r="$r" '
            $2 == r && $1 == sys { for (i = 3; i <= 6; i++) l[i] = $i }
            $2 == r && $1 == "redis" { for (i = 3; i <= 6; i++) d[i] = $i }
            END { printf "%.3f %.3f %.3f %.3f\n", l[3] / d[3], l[4] / d[4], l[5] / d[5], l[6] / d[6] }' \
            "$RESULTS"
    done)
    med() { echo "$ratios" | awk -v c="$1" '{ print $c }' | sort -g |
        awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f", m }'; }
    printf "%-16s %10s %10s %10s %16s\n" "larder-$s" "$(med 1)" "$(med 2)" "$(med 3)" "$(med 4)"
done
echo
echo "notes: Redis PING uses $CONC TCP connections; ld-load multiplexes $CONC HTTP/2 streams over one."
echo "       redis-benchmark reports latencies in ms with 3 decimals (--csv); ld-load in whole us."
echo "       srv_cpu_us/call = server process CPU (user+sys, /proc, ${CLK_TCK} Hz ticks) / calls served,"
echo "       warm-up included for larder (ld-load calls_total) and the -n requests for Redis."

# ---- machine-readable records (--json) ------------------------------------------
if [ -n "$JSON" ]; then
    /usr/bin/python3 - "$RESULTS" "$TMP" "$JSON" "$CONC" "$DURATION" "$ROUNDS" "$src" \
        "$buildtype" "$idle" "$(redis-server --version | cut -d' ' -f3)" <<'PYEOF'
import json, os, sys
results, tmp, path, conc, dur, rounds, src, bt, idle, redis_v = sys.argv[1:11]
name = {"redis": "Redis PING_MBULK"}
recs = [{"name": "health_vs_redis", "metric": "meta", "value": None, "unit": None,
         "params": {"source": src, "buildtype": bt, "idle_pct_before": float(idle),
                    "redis": redis_v.replace("v=", ""), "concurrency": int(conc),
                    "duration_s": float(dur), "rounds": int(rounds)}}]
rss = {}
if os.path.exists(os.path.join(tmp, "rss")):
    for line in open(os.path.join(tmp, "rss")):
        s, r, kib = line.split()
        rss[(s, int(r))] = int(kib)
p999 = {}  # from the ld-load JSON lines, one per round, in order
for line in open(results):
    s = line.split()[0]
    if s != "redis" and (s, 1) not in p999:
        for i, x in enumerate(open(os.path.join(tmp, s + ".jsonl"))):
            p999[(s, i + 1)] = json.loads(x).get("p999_us")
for line in open(results):
    s, r, rps, p50, p99, cpu, other = line.split()
    r = int(r)
    n = name.get(s, "larder-" + s) + " health Check" * (s != "redis")
    ref = None if s == "redis" else "Redis PING_MBULK"
    params = {"system": "redis" if s == "redis" else "larder-" + s, "conc": int(conc),
              "reference_case": s == "redis"}
    for metric, v, unit in (("rps", float(rps), "calls/s"), ("p50", float(p50), "us"),
                            ("p99", float(p99), "us"), ("p999", p999.get((s, r)), "us"),
                            ("cpu_per_call", float(cpu), "us/call"),
                            ("rss_peak", rss.get((s, r)), "KiB"),
                            ("other_pct", float(other), "%")):
        if v is not None:
            recs.append({"name": n, "metric": metric, "value": v, "unit": unit, "round": r,
                         "reference": ref, "params": params})
with open(path, "w") as f:
    json.dump(recs, f, indent=0)
    f.write("\n")
PYEOF
fi
