#!/usr/bin/env bash
# How idnode's cost grows with the number of identifiers it serves.
#
# For each size N (default 100k 1M 10M):
#   1. generate N identifiers 88.100.1/SN-0000000.. as JSON Lines, 3 values each (URL, EMAIL,
#      DESC; ~270 bytes a line), in key order like an export, plus the list of identifiers;
#   2. `idnode import` them into an empty data directory, timed (records/s; the import
#      returns after the final fsync);
#   3. disk per identifier: `du -sb` of the data directory / N;
#   4. start `idnode serve` pinned to CPU 0 (`taskset -c 0`), record VmRSS after start-up;
#   5. `idnode bench --proto handle-udp` pinned to CPU 1 for --duration, uniform random
#      identifiers over the whole set → QPS, p99; VmRSS/VmHWM of the node after the load;
#   6. stop the node, disk per identifier again (after a restart sled may have compacted);
#   7. with --get-rate: random `Registry::get_key` reads straight from the data directory
#      (sled's read path below any answer cache; `store::tests::random_get_rate`);
#   8. with --writes RATE: the same read load again while `idnode bench --proto http --put`
#      (also on CPU 1, 64 connections, open loop at RATE) replaces random identifiers' records
#      over REST, each acknowledged only once durable: QPS with writes against without.
#
# The read load starts once the node's read index is loaded ("index s": seconds from start
# until the log says so; the node answers from sled before that).
#
# Prints a markdown table; --write puts it into the "Scale" section of BENCHMARKS.md between
# the markers <!-- scale:begin --> and <!-- scale:end -->.
#
# Usage: scripts/bench-scale.sh [--sizes "100k 1M"] [--duration 20s] [--workdir DIR] [--keep]
#          [--write] [--get-rate] [--writes RATE] [--port 18700] [--bin PATH]
#          [--import-args "..."]
#
# Needs: bash, awk, taskset (util-linux), python3 (input generation, the bench's JSON), 2+ CPUs.
# Disk: about 1.2 KB per identifier for the store plus 300 bytes for the input (10M ≈ 15 GB);
# the work directory is removed at the end unless --keep.
set -euo pipefail

SIZES="100k 1M 10M"
DURATION=20s
WORKDIR=""
KEEP=0
WRITE=0
GET_RATE=0
PORT=18700
BIN=""
IMPORT_ARGS=""
WRITES=0
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) SIZES="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --workdir) WORKDIR="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --write) WRITE=1; shift ;;
        --get-rate) GET_RATE=1; shift ;;
        --port) PORT="$2"; shift 2 ;;
        --bin) BIN="$2"; shift 2 ;;
        --import-args) IMPORT_ARGS="$2"; shift 2 ;;
        --writes) WRITES="$2"; shift 2 ;;
        -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "$WORKDIR" ]; then
    WORKDIR="$(mktemp -d /tmp/idnode-scale.XXXXXX)"
else
    mkdir -p "$WORKDIR"
fi
NODE_PID=""
cleanup() {
    if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
        kill "$NODE_PID" 2>/dev/null || true
        wait "$NODE_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 0 ]; then rm -rf "$WORKDIR"; fi
}
trap cleanup EXIT

# A private copy of the binary: other builds in the same tree cannot swap it mid-run.
if [ -z "$BIN" ]; then
    (cd "$ROOT" && cargo build --release --quiet)
    BIN="$ROOT/target/release/idnode"
fi
cp "$BIN" "$WORKDIR/idnode"
BIN="$WORKDIR/idnode"
CPUS=$(nproc)
[ "$CPUS" -ge 2 ] || { echo "needs at least 2 CPUs (node and load generator pinned apart)" >&2; exit 2; }

count_of() {  # 100k → 100000, 1M → 1000000, 250 → 250
    local s="$1"
    case "$s" in
        *k|*K) echo $(( ${s%[kK]} * 1000 )) ;;
        *m|*M) echo $(( ${s%[mM]} * 1000000 )) ;;
        *) echo "$s" ;;
    esac
}

rss_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

generate() {  # N JSONL IDS
    python3 - "$1" "$2" "$3" <<'PY'
import sys
n, jsonl, ids = int(sys.argv[1]), sys.argv[2], sys.argv[3]
line = ('{"handle":"88.100.1/SN-%07d","values":['
        '{"index":1,"type":"URL","data":"https://products.example.com/sn/SN-%07d"},'
        '{"index":2,"type":"EMAIL","data":"quality-%d@factory.example.com"},'
        '{"index":3,"type":"DESC","data":"Pump housing, cast iron, lot 2026-%02d, line %d"}]}\n')
with open(jsonl, "w", buffering=1 << 20) as out, open(ids, "w", buffering=1 << 20) as idf:
    for i in range(n):
        out.write(line % (i, i, i % 97, i % 12 + 1, i % 7))
        idf.write("88.100.1/SN-%07d\n" % i)
PY
}

write_config() {  # DATA_DIR BASEPORT > config: the embedded default, data and ports moved
    cat <<EOF
[node]
data_dir = "$1"
homed_prefixes = ["88.100.1"]
suffix_case = "sensitive"
bootstrap_admins = true

[http]
listen = "127.0.0.1:$2"

[handle]
listen = "127.0.0.1:$(($2 + 1))"

[dns]
listen = "127.0.0.1:$(($2 + 2))"
zone = "id.example."
EOF
}

wait_ready() {  # UDP_ADDR: until the node answers a resolution (start-up includes opening sled)
    local _
    for _ in $(seq 1 600); do
        if "$BIN" resolve 88.100.1/SN-0000000 --server "$1" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$NODE_PID" 2>/dev/null; then echo "node exited during start-up" >&2; return 1; fi
        sleep 0.2
    done
    echo "node not ready after 120 s" >&2
    return 1
}

human() {  # 10000000 → 10M
    awk -v n="$1" 'BEGIN { if (n >= 1e6 && n % 1e6 == 0) printf "%dM", n / 1e6;
                           else if (n >= 1e3 && n % 1e3 == 0) printf "%dk", n / 1e3;
                           else printf "%d", n }'
}

wait_index() {  # LOG: until the read index is loaded (or the node says it is off)
    local _
    for _ in $(seq 1 3000); do
        if grep -q "read index loaded\|read index:" "$1"; then return 0; fi
        if ! kill -0 "$NODE_PID" 2>/dev/null; then echo "node exited" >&2; return 1; fi
        sleep 0.2
    done
    echo "read index not loaded after 600 s" >&2
    return 1
}

qps_of() { python3 -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["queries_per_second"]))' "$1"; }

ROWS=()
GET_ROWS=()
WRITE_ROWS=()
echo "work directory: $WORKDIR (binary $BIN, $CPUS CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
for size in $SIZES; do
    n=$(count_of "$size")
    label=$(human "$n")
    dir="$WORKDIR/n$n"
    rm -rf "$dir"
    mkdir -p "$dir"
    echo "== $label: generating" >&2
    generate "$n" "$dir/in.jsonl" "$dir/ids.txt"
    write_config "$dir/data" "$PORT" > "$dir/node.toml"

    echo "== $label: importing" >&2
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$BIN" import "$dir/in.jsonl" --config "$dir/node.toml" $IMPORT_ARGS > "$dir/import.out"
    t1=$(date +%s.%N)
    import_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    import_rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    grep -q "imported $n records, rejected 0 lines" "$dir/import.out" \
        || { echo "import did not load $n records:" >&2; cat "$dir/import.out" >&2; exit 1; }
    disk_import=$(du -sb "$dir/data" | cut -f1)
    rm -f "$dir/in.jsonl"

    echo "== $label: serving (CPU 0) and loading (CPU 1) for $DURATION" >&2
    t0=$(date +%s.%N)
    taskset -c 0 "$BIN" serve --config "$dir/node.toml" > "$dir/serve.log" 2>&1 &
    NODE_PID=$!
    wait_ready "127.0.0.1:$((PORT + 1))"
    t1=$(date +%s.%N)
    start_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    rss_start=$(rss_kb "$NODE_PID" VmRSS)
    wait_index "$dir/serve.log"
    t2=$(date +%s.%N)
    index_s=$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.1f", b - a }')
    taskset -c 1 "$BIN" bench --proto handle-udp --server "127.0.0.1:$((PORT + 1))" \
        --ids "$dir/ids.txt" --duration "$DURATION" --json > "$dir/bench.json"
    rss_load=$(rss_kb "$NODE_PID" VmRSS)
    if [ "$WRITES" != 0 ]; then
        echo "== $label: the same reads with $WRITES REST writes/s" >&2
        taskset -c 1 "$BIN" bench --proto http --server "127.0.0.1:$PORT" --put \
            --auth-user 300:0.NA/88.100.1 --secret-file "$dir/data/88.100.1.admin-secret" \
            --ids "$dir/ids.txt" --miss-share 0 --concurrency 64 --rate "$WRITES" \
            --duration "$DURATION" --json > "$dir/writes.json" &
        writer=$!
        sleep 1
        taskset -c 1 "$BIN" bench --proto handle-udp --server "127.0.0.1:$((PORT + 1))" \
            --ids "$dir/ids.txt" --duration "$(( ${DURATION%s} - 2 ))s" --json > "$dir/bench-w.json"
        wait "$writer"
        read -r acked < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(round(s["response_codes"].get("HTTP200", 0) / s["run_time_s"]))
' "$dir/writes.json")
        qps_plain=$(qps_of "$dir/bench.json")
        qps_w=$(qps_of "$dir/bench-w.json")
        WRITE_ROWS+=("| $(human "$n") | $WRITES | $acked | $qps_plain | $qps_w | $(awk -v a="$qps_w" -v b="$qps_plain" 'BEGIN { printf "%.2f", a / b }') |")
    fi
    rss_peak=$(rss_kb "$NODE_PID" VmHWM)
    kill "$NODE_PID"
    wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=""
    disk_restart=$(du -sb "$dir/data" | cut -f1)
    read -r qps p99 lost found < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(round(s["queries_per_second"]), s["p99_us"], s["queries_lost"], s["response_codes"].get("RC1", 0))
' "$dir/bench.json")

    if [ "$GET_RATE" = 1 ]; then
        echo "== $label: random sled reads" >&2
        (cd "$ROOT" && IDNODE_GET_BENCH_DIR="$dir/data" IDNODE_GET_BENCH_IDS="$dir/ids.txt" \
            IDNODE_GET_BENCH_SECS=20 taskset -c 0 \
            cargo test --release --quiet --lib store::tests::random_get_rate -- \
            --ignored --nocapture) > "$dir/get.out" 2>&1 || { cat "$dir/get.out" >&2; exit 1; }
        read -r g1 g2 grss < <(awk '/^get-rate first-half/ {a = $3} /^get-rate second-half/ {b = $3; split($5, r, "="); m = r[2]}
            END { printf "%s %s %.0f\n", a, b, m / 1024 }' "$dir/get.out")
        GET_ROWS+=("| $label | $g1 | $g2 | $grss |")
    fi

    mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
    per_id() { awk -v b="$1" -v n="$n" 'BEGIN { printf "%.0f", b / n }'; }
    ROWS+=("| $label | $import_rate | $import_s | $(per_id "$disk_import") | $(per_id "$disk_restart") | $start_s | $index_s | $(mib "$rss_start") | $(mib "$rss_load") | $(mib "$rss_peak") | $qps | $p99 | $found/$lost |")
    echo "${ROWS[-1]}" >&2
    if [ "$KEEP" = 0 ]; then rm -rf "$dir"; fi
done

{
    echo "| N | import rec/s | import s | disk B/id after import | disk B/id after restart | start s | index s | RSS MiB after start | RSS MiB after load | peak RSS MiB | Handle UDP QPS | p99 µs | answered RC1/lost |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    if [ "${#WRITE_ROWS[@]}" -gt 0 ]; then
        echo
        echo "| N | REST writes/s offered | writes/s acknowledged | Handle UDP QPS without writes | with writes | ratio |"
        echo "|---|---|---|---|---|---|"
        printf '%s\n' "${WRITE_ROWS[@]}"
    fi
    if [ "${#GET_ROWS[@]}" -gt 0 ]; then
        echo
        echo "| N | sled random gets/s, first 10 s (cache filling) | gets/s, next 10 s | RSS MiB of the reader |"
        echo "|---|---|---|---|"
        printf '%s\n' "${GET_ROWS[@]}"
    fi
    echo
    echo "_$(date -u +%Y-%m-%d), $CPUS CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load before the run $(cut -d' ' -f1 /proc/loadavg); node on CPU 0, load generator on CPU 1, default [store] settings, bench: handle-udp, uniform random ids, $DURATION._"
} > "$WORKDIR/table.md"
cat "$WORKDIR/table.md"

if [ "$WRITE" = 1 ]; then
    BM="$ROOT/BENCHMARKS.md"
    python3 - "$BM" "$WORKDIR/table.md" <<'PY'
import re, sys, pathlib
path, table = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).read_text().rstrip("\n")
text = path.read_text() if path.exists() else ""
begin, end = "<!-- scale:begin -->", "<!-- scale:end -->"
block = f"{begin}\n{table}\n{end}"
if begin in text and end in text:
    text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text = text.rstrip("\n") + ("\n\n" if text else "") + "## Scale\n\n" + block + "\n"
path.write_text(text)
PY
    echo "updated $BM" >&2
fi
