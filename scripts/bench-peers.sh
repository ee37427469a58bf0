#!/usr/bin/env bash
# idnode against NSD and Knot DNS, on one machine, on the same data, in one go.
#
#   bash scripts/bench-peers.sh                 # print the table
#   bash scripts/bench-peers.sh --write         # and update the results section of BENCHMARKS.md
#
# What it does (BENCHMARKS.md explains the method and every column):
#  1. installs NSD, Knot and dnsperf from Debian when missing (apt-get; needs root), with
#     services kept from starting; builds idnode with `cargo build --release`;
#  2. generates N identifiers 88.100.1/SN-0000001... with 2-3 realistic values each (JSON
#     Lines, the format `idnode import` reads), a dnsperf query file of every DNS name
#     (shuffled, type TXT) and the identifier list for `idnode bench`;
#  3. imports them into an authoritative idnode (temporary data directory and config) and
#     writes the same data as a zone file with `idnode export --format zone`, which NSD and
#     Knot load, so every name answers with the same RRsets from all three servers (checked
#     with dig before measuring);
#  4. measures, one server at a time, the server pinned to one core and the load generator
#     to the other: NSD, Knot and idnode's DNS front end with dnsperf (max rate, then a fixed
#     rate for server CPU time per query) and `idnode bench --proto dns-udp` (percentiles);
#     idnode's Handle UDP, Handle TCP and HTTP front ends with `idnode bench`; a second
#     idnode configured as a recursive node (root: the authoritative idnode), warmed so it
#     answers from its cache (Handle UDP and DNS); p99 at half of idnode's peak rate;
#  5. prints one markdown table (and with --write puts it, the machine, the versions and the
#     exact commands into BENCHMARKS.md).
#
# Options (environment variables in brackets):
#   --count N        identifiers (default 100000) [BENCH_COUNT]
#   --duration S     seconds per run (default 10) [BENCH_DURATION]
#   --rate Q         fixed offered rate for CPU per query, queries/s (default 40000) [BENCH_RATE]
#   --keep           keep the temporary directory (data, configs, logs, raw outputs)
#   --write          update the marked results section of BENCHMARKS.md
#   --release        build with `cargo build --release` first (the default)
#   --idnode PATH    use this idnode binary instead of building one [BENCH_IDNODE]
#   --note TEXT      a line printed above the table (e.g. "development run") [BENCH_NOTE]
#   --no-install     do not install missing packages; fail instead
# Cores: the servers run on core BENCH_SERVER_CPU (0), the load generators on BENCH_CLIENT_CPU (1).
#
# Everything runs on 127.0.0.1; all servers are stopped on exit, also on errors and Ctrl-C.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COUNT=${BENCH_COUNT:-100000}
DURATION=${BENCH_DURATION:-10}
RATE=${BENCH_RATE:-40000}
IDNODE=${BENCH_IDNODE:-}
NOTE=${BENCH_NOTE:-}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
KEEP=0
WRITE=0
INSTALL=1
ZONE=id.example.
PREFIX=88.100.1
# dnsperf settings (also used for idnode bench over UDP: 4 sockets, 200 outstanding).
CLIENTS=4
OUTSTANDING=200
# Handle TCP and HTTP: connections, one request in flight on each.
CONNECTIONS=${BENCH_CONNECTIONS:-32}
ARGS=""    # the options as given, for the report (without --note's text)

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

log() { printf '[bench-peers] %s\n' "$*" >&2; }
die() {
    printf '[bench-peers] error: %s\n' "$*" >&2
    exit 1
}

add_arg() { ARGS="${ARGS:+$ARGS }$(printf '%q' "$1")${2:+ $(printf '%q' "$2")}"; }
while [ $# -gt 0 ]; do
    case "$1" in
    --note) ;;
    --count | --duration | --rate | --idnode) add_arg "$1" "${2:-}" ;;
    *) add_arg "$1" ;;
    esac
    case "$1" in
    --count) COUNT=${2:?--count needs a number}; shift 2 ;;
    --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
    --rate) RATE=${2:?--rate needs queries per second}; shift 2 ;;
    --idnode) IDNODE=${2:?--idnode needs a path}; shift 2 ;;
    --note) NOTE=${2:?--note needs a text}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --write) WRITE=1; shift ;;
    --release) IDNODE=""; shift ;;
    --no-install) INSTALL=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
for v in COUNT DURATION RATE SERVER_CPU CLIENT_CPU CONNECTIONS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
[ "$COUNT" -ge 10 ] || die "--count must be at least 10"
[ "$DURATION" -ge 1 ] || die "--duration must be at least 1 second"
[ "$RATE" -ge 1 ] || die "--rate must be at least 1"
[ "$SERVER_CPU" -ne "$CLIENT_CPU" ] || die "server and load generator need different cores"
[ "$(nproc --all)" -gt "$CLIENT_CPU" ] || die "core $CLIENT_CPU does not exist ($(nproc --all) cores)"

# --------------------------------------------------------------------------------------------
# Clean-up: every server this script starts is recorded here and stopped on exit.

PIDS=()
WORK=""
POLICY_RC_CREATED=0

descendants() { # PID -> the PIDs of all its descendants
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

cleanup() {
    local rc=$? pid all=() i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        all+=("$pid")
        while read -r i; do all+=("$i"); done < <(descendants "$pid")
    done
    for pid in "${all[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${all[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$POLICY_RC_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$KEEP" = 1 ] || [ "$rc" -ne 0 ]; then
            log "kept $WORK (configs, logs, raw outputs)"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------------------------------------
# 1. Tools

install_tools() {
    local need=() before after pid
    command -v nsd >/dev/null 2>&1 || need+=(nsd)
    command -v knotd >/dev/null 2>&1 || need+=(knot)
    command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
    command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    command -v taskset >/dev/null 2>&1 || need+=(util-linux)
    command -v pgrep >/dev/null 2>&1 || need+=(procps)
    [ ${#need[@]} -gt 0 ] || return 0
    [ "$INSTALL" = 1 ] || die "missing packages: ${need[*]} (--no-install given)"
    [ "$(id -u)" -eq 0 ] || die "missing packages: ${need[*]}; run as root to install them with apt-get"
    command -v apt-get >/dev/null 2>&1 || die "missing packages: ${need[*]}, and no apt-get here"
    log "installing ${need[*]} (apt-get)"
    before=$(pgrep '^(nsd|nsd: .*|knotd)$' || true)
    # Keep the packages' services from starting (Debian's policy-rc.d convention).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
        die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >/dev/null || die "apt-get install ${need[*]} failed"
    if [ "$POLICY_RC_CREATED" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=0
    fi
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now nsd.service knot.service >/dev/null 2>&1 || true
    fi
    # Daemons the packages started anyway (none are expected): stop them by their ids.
    after=$(pgrep '^(nsd|nsd: .*|knotd)$' || true)
    for pid in $after; do
        if ! grep -qx "$pid" <<<"$before"; then
            log "stopping $(cat "/proc/$pid/comm" 2>/dev/null) (pid $pid) started by the package"
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for t in nsd knotd dnsperf dig python3 taskset pgrep; do
        command -v "$t" >/dev/null 2>&1 || die "$t is still missing after apt-get install"
    done
}

install_tools
if pgrep '^(nsd|nsd: .*|knotd)$' >/dev/null; then
    log "warning: other nsd/knotd processes are running; they may disturb the measurement"
fi

if [ -z "$IDNODE" ]; then
    log "building idnode (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    IDNODE="${CARGO_TARGET_DIR:-$REPO/target}/release/idnode"
fi
[ -x "$IDNODE" ] || die "no idnode binary at $IDNODE"
IDNODE=$(cd "$(dirname "$IDNODE")" && pwd)/$(basename "$IDNODE")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-peers.XXXXXX")
mkdir -p "$WORK/results" "$WORK/out" "$WORK/zone" "$WORK/nsd" "$WORK/knot"
: >"$WORK/commands.txt"
log "working in $WORK"

# --------------------------------------------------------------------------------------------
# Helpers

# N free ports below the ephemeral range (so no load generator socket takes one), each free
# for both TCP and UDP on 127.0.0.1.
free_ports() {
    python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
got, held = [], []
rng = random.Random()
for _ in range(10000):
    if len(got) == n:
        break
    port = rng.randrange(20000, 30000)
    if port in got:
        continue
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        t.bind(("127.0.0.1", port))
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close()
        u.close()
        continue
    held += [t, u]
    got.append(port)
if len(got) < n:
    sys.exit("no free ports found")
print(" ".join(map(str, got)))
EOF
}

# Record a command exactly as run (for BENCHMARKS.md), then run it.
run() {
    local q
    q=$(printf '%q ' "$@")
    printf '%s\n' "${q% }" >>"$WORK/commands.txt"
    "$@"
}

# utime + stime, in clock ticks, of a process and all its descendants (all threads of each:
# /proc/<pid>/stat covers the whole process).
cpu_ticks() {
    local pid sum=0 f
    for pid in "$1" $(descendants "$1"); do
        f=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        f=${f##*) }
        read -r -a fields <<<"$f"
        # After "pid (comm) ": state is field 0; utime and stime are fields 11 and 12.
        sum=$((sum + fields[11] + fields[12]))
    done
    echo "$sum"
}

# start NAME LOG CMD...: start a server pinned to the server core; sets SERVER_PID.
start() {
    local name=$1 logfile=$2
    shift 2
    local q
    q=$(printf '%q ' taskset -c "$SERVER_CPU" "$@")
    printf '# %s\n%s\n' "$name" "${q% }" >>"$WORK/commands.txt"
    taskset -c "$SERVER_CPU" "$@" >"$logfile" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    log "started $name (pid $SERVER_PID)"
}

# wait_dns NAME PID PORT LOG: until the server answers the apex SOA (at most 60 s).
wait_dns() {
    local name=$1 pid=$2 port=$3 logfile=$4
    for _ in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            die "$name exited while starting (log: $logfile)"
        fi
        if dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" "$ZONE" SOA 2>/dev/null | grep -q .; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 20 "$logfile" >&2 || true
    die "$name did not answer on 127.0.0.1:$port within 60 s (log: $logfile)"
}

# measure LABEL PID TOOL CMD...: run a load generator on the client core and store its
# results with the server's CPU time over the run in results/LABEL.json. TOOL: dnsperf or
# bench (idnode bench --json).
measure() {
    local label=$1 pid=$2 tool=$3 t0 t1 out
    shift 3
    out="$WORK/out/$label.txt"
    kill -0 "$pid" 2>/dev/null || die "the server of $label (pid $pid) is not running"
    log "run $label"
    printf '# %s\n' "$label" >>"$WORK/commands.txt"
    t0=$(cpu_ticks "$pid")
    run taskset -c "$CLIENT_CPU" "$@" >"$out" 2>"$WORK/out/$label.err" ||
        die "$label: load generator failed: $(tail -n 5 "$WORK/out/$label.err")"
    t1=$(cpu_ticks "$pid")
    kill -0 "$pid" 2>/dev/null || die "the server of $label (pid $pid) died during the run"
    python3 - "$tool" "$out" "$((t1 - t0))" "$WORK/results/$label.json" <<'EOF' ||
import json, re, sys
tool, path, ticks, dest = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
text = open(path).read()
if tool == "dnsperf":
    def num(label):
        m = re.search(r"^\s*" + re.escape(label) + r":\s+([0-9.]+)", text, re.M)
        if not m:
            sys.exit(f"dnsperf output has no '{label}' line:\n{text}")
        return float(m.group(1))
    codes = {}
    m = re.search(r"^\s*Response codes:\s+(.*)$", text, re.M)
    if m:
        for code, n in re.findall(r"([A-Z0-9]+) (\d+) \(", m.group(1)):
            codes[code] = int(n)
    r = {
        "tool": "dnsperf",
        "sent": int(num("Queries sent")),
        "completed": int(num("Queries completed")),
        "lost": int(num("Queries lost")),
        "qps": num("Queries per second"),
        "run_time_s": num("Run time (s)"),
        "avg_latency_ms": num("Average Latency (s)") * 1000,
        "codes": codes,
    }
else:
    try:
        s = json.loads(text)
    except ValueError as e:
        sys.exit(f"idnode bench printed no JSON ({e}):\n{text[:2000]}")
    r = {
        "tool": "idnode bench",
        "sent": s["queries_sent"],
        "completed": s["queries_completed"],
        "lost": s["queries_lost"],
        "qps": s["queries_per_second"],
        "run_time_s": s["run_time_s"],
        "avg_latency_ms": s["average_latency_s"] * 1000,
        "p50_ms": s["p50_us"] / 1000,
        "p90_ms": s["p90_us"] / 1000,
        "p99_ms": s["p99_us"] / 1000,
        "codes": s.get("response_codes", {}),
    }
r["server_cpu_ticks"] = ticks
json.dump(r, open(dest, "w"), indent=1)
EOF
        die "$label: could not read the results (raw output: $out)"
}

# field LABEL KEY: a number from results/LABEL.json.
field() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
        "$WORK/results/$1.json" "$2"
}

half_of() { # LABEL -> half its QPS, whole queries per second
    python3 -c 'import json,sys; print(max(1, int(json.load(open(sys.argv[1]))["qps"] / 2)))' \
        "$WORK/results/$1.json"
}

success_share() { # LABEL -> share of answers with the success code (RC1, NOERROR or HTTP 200)
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
ok = sum(n for c, n in r["codes"].items() if c in ("RC1", "NOERROR", "200", "HTTP200"))
print(ok / r["completed"] if r["completed"] else 0)' "$WORK/results/$1.json"
}

# --------------------------------------------------------------------------------------------
# 2. Data

read -r P_NSD P_KNOT P_DNS P_HANDLE P_HTTP P_RDNS P_RHANDLE P_RHTTP <<<"$(free_ports 8)" ||
    die "could not find free ports"
log "ports: nsd $P_NSD, knot $P_KNOT, idnode dns $P_DNS handle $P_HANDLE http $P_HTTP," \
    "recursive idnode dns $P_RDNS handle $P_RHANDLE http $P_RHTTP"

log "generating $COUNT identifiers"
python3 - "$WORK" "$COUNT" "$PREFIX" "$ZONE" "$P_HANDLE" <<'EOF'
import base64, json, random, sys
work, count, prefix, zone, handle_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
labels = ".".join(reversed(prefix.split(".")))
descs = [
    "Pump housing, lot 2026-11, line 3",
    "Valve body DN50, cast steel, batch 7",
    "Motor controller 4 kW, firmware 2.3",
    "Bearing 6204-2RS, supplier lot 88-17",
]
with open(f"{work}/records.jsonl", "w") as rec, open(f"{work}/ids.txt", "w") as ids:
    # The prefix handle with the node's HS_SITE, so a recursive node can find the site.
    site = {"version": 1, "protocolVersion": "2.11", "serialNumber": 1, "primarySite": True,
            "multiPrimary": False, "attributes": [],
            "servers": [{"serverId": 1, "address": "127.0.0.1",
                         "publicKey": {"format": "base64", "value": ""},
                         "interfaces": [
                             {"query": True, "admin": False, "protocol": "UDP", "port": handle_port},
                             {"query": True, "admin": True, "protocol": "TCP", "port": handle_port}]}]}
    rec.write(json.dumps({"handle": f"0.NA/{prefix}", "values": [
        {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": site}}]}) + "\n")
    names = []
    for n in range(1, count + 1):
        suffix = f"SN-{n:07d}"
        values = [{"index": 1, "type": "URL", "data": f"https://example.com/sn/{n:07d}"}]
        if n % 3 != 1:
            values.append({"index": 2, "type": "EMAIL", "data": f"quality-{n % 97}@example.com"})
        if n % 3 != 2:
            values.append({"index": 3, "type": "DESC", "data": descs[n % len(descs)]})
        rec.write(json.dumps({"handle": f"{prefix}/{suffix}", "values": values}) + "\n")
        ids.write(f"{prefix}/{suffix}\n")
        names.append(f"{suffix.lower()}.{labels}.{zone}")
random.Random(7).shuffle(names)
with open(f"{work}/queries.txt", "w") as q:
    for name in names:
        q.write(f"{name} TXT\n")
EOF

# --------------------------------------------------------------------------------------------
# 3. idnode: configs, import, zone export

# The bench config of an idnode node (see config/default.toml for the keys). $1: file,
# $2: data dir, $3 $4 $5: HTTP, Handle, DNS ports, $6: extra TOML for [dns]/[handle] threads,
# $7: homed prefixes (TOML array), $8: extra sections.
write_node_config() {
    cat >"$1" <<EOF
# Written by scripts/bench-peers.sh (based on config/default.toml).
[node]
data_dir = "$2"
homed_prefixes = $7
suffix_case = "sensitive"
bootstrap_admins = false

[http]
listen = "127.0.0.1:$3"

[handle]
listen = "127.0.0.1:$4"
$6
[dns]
listen = "127.0.0.1:$5"
zone = "$ZONE"
$6
$8
EOF
}

# One UDP worker thread per front end when idnode has the setting, like NSD's and Knot's
# single worker.
THREADS=""
write_node_config "$WORK/probe.toml" "$WORK/probe-data" 1 2 3 "udp_threads = 1" '["88.100.1"]' ""
if "$IDNODE" check-config "$WORK/probe.toml" >/dev/null 2>&1; then
    THREADS="udp_threads = 1"
    log "idnode has udp_threads: set to 1 in [dns] and [handle]"
else
    log "this idnode has no udp_threads setting: its default worker count is used"
fi

write_node_config "$WORK/auth.toml" "$WORK/auth-data" "$P_HTTP" "$P_HANDLE" "$P_DNS" \
    "$THREADS" "[\"$PREFIX\"]" ""
"$IDNODE" check-config "$WORK/auth.toml" >/dev/null || die "idnode rejects $WORK/auth.toml"
# The recursive node: homes nothing, its root is the authoritative idnode; a cache that holds
# every identifier (and the lower-case DNS candidates it misses first) for the whole run.
write_node_config "$WORK/rec.toml" "$WORK/rec-data" "$P_RHTTP" "$P_RHANDLE" "$P_RDNS" \
    "$THREADS" "[]" "[recursion]
enabled = true
roots = [\"127.0.0.1:$P_HANDLE\"]
cache_max_entries = $((3 * COUNT + 1000))
negative_ttl_secs = 3600"
"$IDNODE" check-config "$WORK/rec.toml" >/dev/null || die "idnode rejects $WORK/rec.toml"

printf '# data: %s/records.jsonl, ids.txt and queries.txt, generated by the script\n' "$WORK" >>"$WORK/commands.txt"
log "importing into idnode"
run "$IDNODE" import "$WORK/records.jsonl" --config "$WORK/auth.toml" --batch 5000 \
    >"$WORK/out/import.txt" 2>&1 || die "idnode import failed: $(tail -n 5 "$WORK/out/import.txt")"
ZONEFILE="$WORK/zone/${ZONE%.}.zone"
run "$IDNODE" export --config "$WORK/auth.toml" --format zone --zone "$ZONE" --output "$ZONEFILE" \
    2>"$WORK/out/export.txt" || die "idnode export --format zone failed: $(cat "$WORK/out/export.txt")"
log "$(head -n 1 "$WORK/out/export.txt")"

# --------------------------------------------------------------------------------------------
# NSD and Knot configs

cat >"$WORK/nsd/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@$P_NSD
    server-count: 1
    reuseport: yes
    # Like Knot and idnode: no NS RRset in the authority section of positive answers.
    minimal-responses: yes
    do-ip6: no
    username: ""
    chroot: ""
    database: ""
    zonesdir: "$WORK/zone"
    zonelistfile: "$WORK/nsd/zone.list"
    xfrdfile: "$WORK/nsd/xfrd.state"
    xfrdir: "$WORK/nsd"
    pidfile: "$WORK/nsd/nsd.pid"
    logfile: "$WORK/nsd/nsd.log"
    verbosity: 1
remote-control:
    control-enable: no
zone:
    name: "$ZONE"
    zonefile: "$ZONEFILE"
EOF

cat >"$WORK/knot/knot.conf" <<EOF
server:
    rundir: "$WORK/knot"
    listen: 127.0.0.1@$P_KNOT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$WORK/knot/db"
log:
  - target: stderr
    any: warning
zone:
  - domain: "$ZONE"
    file: "$ZONEFILE"
    storage: "$WORK/zone"
    journal-content: none
    zonefile-sync: -1
EOF

run nsd-checkzone "$ZONE" "$ZONEFILE" >"$WORK/out/nsd-checkzone.txt" 2>&1 ||
    die "NSD rejects the exported zone: $(tail -n 5 "$WORK/out/nsd-checkzone.txt")"
if command -v kzonecheck >/dev/null 2>&1; then
    run kzonecheck -o "$ZONE" "$ZONEFILE" >"$WORK/out/kzonecheck.txt" 2>&1 ||
        die "Knot rejects the exported zone: $(tail -n 5 "$WORK/out/kzonecheck.txt")"
fi

# --------------------------------------------------------------------------------------------
# Start every server (each pinned to the server core; only the one being measured is loaded)

start NSD "$WORK/nsd/stderr.log" nsd -d -c "$WORK/nsd/nsd.conf"
PID_NSD=$SERVER_PID
start Knot "$WORK/knot/knotd.log" knotd -c "$WORK/knot/knot.conf"
PID_KNOT=$SERVER_PID
start "idnode (authoritative)" "$WORK/auth.log" env RUST_LOG=warn "$IDNODE" serve --config "$WORK/auth.toml"
PID_AUTH=$SERVER_PID
wait_dns NSD "$PID_NSD" "$P_NSD" "$WORK/nsd/stderr.log"
wait_dns Knot "$PID_KNOT" "$P_KNOT" "$WORK/knot/knotd.log"
wait_dns idnode "$PID_AUTH" "$P_DNS" "$WORK/auth.log"
start "idnode (recursive)" "$WORK/rec.log" env RUST_LOG=warn "$IDNODE" serve --config "$WORK/rec.toml"
PID_REC=$SERVER_PID
wait_dns "recursive idnode" "$PID_REC" "$P_RDNS" "$WORK/rec.log"

# --------------------------------------------------------------------------------------------
# Same answers from all three? (dig, before any load)

# dig_view PORT NAME TYPE: rcode, flags and the answer and authority records, normalized.
dig_view() {
    local out
    out=$(dig @127.0.0.1 -p "$1" +norec +time=2 +tries=2 +noall +comments +answer +authority \
        "$2" "$3" 2>&1) || {
        echo "dig failed: $out"
        return 0
    }
    grep -o 'status: [A-Z]*' <<<"$out" || echo "status: none"
    grep -o 'flags: [a-z ]*' <<<"$out" | head -n 1 || true
    grep -v '^;' <<<"$out" | awk 'NF { $1 = tolower($1); print }' | sort
}

MISMATCHES=0
DIFFS="$WORK/out/answer-differences.txt"
DIFF_SUMMARY="$WORK/out/answer-differences-summary.txt"
: >"$DIFFS"
: >"$DIFF_SUMMARY"
brief() { # a dig_view as "STATUS, N records"
    printf '%s with %s RR' "$(head -n 1 <<<"$1" | sed 's/^status: //')" "$(tail -n +3 <<<"$1" | grep -c . || true)"
}
# compare strict|info NAME TYPE
compare() {
    local kind=$1 name=$2 type=$3 a b c
    a=$(dig_view "$P_NSD" "$name" "$type")
    b=$(dig_view "$P_KNOT" "$name" "$type")
    c=$(dig_view "$P_DNS" "$name" "$type")
    if [ "$a" == "$b" ] && [ "$a" == "$c" ]; then
        return 0
    fi
    {
        echo "## $name $type ($kind)"
        echo "### NSD"
        echo "$a"
        echo "### Knot"
        echo "$b"
        echo "### idnode"
        echo "$c"
        echo
    } >>"$DIFFS"
    # shellcheck disable=SC2016 # the backquotes are markdown
    printf -- '- `%s %s`: NSD %s; Knot %s; idnode %s\n' "$name" "$type" "$(brief "$a")" \
        "$(brief "$b")" "$(brief "$c")" >>"$DIFF_SUMMARY"
    if [ "$kind" = strict ]; then
        MISMATCHES=$((MISMATCHES + 1))
    fi
    log "answers differ ($kind): $name $type"
}

LABELS=$(tr '.' '\n' <<<"$PREFIX" | tac | paste -sd. -)
log "comparing answers of NSD, Knot and idnode with dig"
for n in 1 2 3 $((COUNT / 2)) "$COUNT"; do
    name=$(printf 'sn-%07d.%s.%s' "$n" "$LABELS" "$ZONE")
    for t in TXT URI NAPTR A; do compare strict "$name" "$t"; done
done
compare strict "sn-does-not-exist.$LABELS.$ZONE" TXT
# The prefix handle 0.NA/<prefix>: an encoded suffix label, binary data as base64 in TXT
# strings of up to 255 bytes.
NA_LABEL=$(python3 -c 'import base64,sys; print("x--" + base64.b32encode(sys.argv[1].encode()).decode().lower().rstrip("="))' "$PREFIX")
compare strict "$NA_LABEL.na.0.$ZONE" TXT
compare strict "$ZONE" SOA
compare strict "$ZONE" NS
# Names a zone file cannot express the way idnode answers them (see BENCHMARKS.md).
compare info "$LABELS.$ZONE" TXT
compare info "na.0.$ZONE" TXT
compare info "0.$ZONE" TXT
[ "$MISMATCHES" -eq 0 ] ||
    die "$MISMATCHES identifier answers differ between NSD, Knot and idnode: see $DIFFS"

# --------------------------------------------------------------------------------------------
# 4. Measurements

DNSPERF=(dnsperf -s 127.0.0.1 -d "$WORK/queries.txt" -c "$CLIENTS" -T 1 -q "$OUTSTANDING" -l "$DURATION")
BENCH_BASE=("$IDNODE" bench --ids "$WORK/ids.txt" --json --sockets "$CLIENTS")
BENCH=("${BENCH_BASE[@]}" --duration "${DURATION}s")
BENCH_UDP=("${BENCH[@]}" --concurrency "$OUTSTANDING")

# warm LABEL CMD...: an unmeasured pass (NSD and Knot hold the whole zone in memory from the
# start; idnode's caches fill on first use).
warm() {
    local label=$1
    shift
    log "warm-up $label"
    printf '# %s (warm-up, not measured)\n' "$label" >>"$WORK/commands.txt"
    run taskset -c "$CLIENT_CPU" "$@" >"$WORK/out/$label.txt" 2>&1 ||
        die "warm-up $label failed: $(tail -n 5 "$WORK/out/$label.txt")"
}
WARM_SECONDS=$((DURATION < 3 ? DURATION : 3))

# DNS: one pass over every name, then dnsperf at max rate and at the fixed rate, and idnode
# bench for the percentiles.
dns_runs() { # KEY PID PORT
    warm "$1.warm" dnsperf -s 127.0.0.1 -p "$3" -d "$WORK/queries.txt" -c "$CLIENTS" -T 1 \
        -q "$OUTSTANDING" -n 1 -t 5
    measure "$1.dnsperf.max" "$2" dnsperf "${DNSPERF[@]}" -p "$3"
    measure "$1.bench.max" "$2" bench "${BENCH_UDP[@]}" --proto dns-udp --zone "$ZONE" \
        --server "127.0.0.1:$3"
    measure "$1.dnsperf.fixed" "$2" dnsperf "${DNSPERF[@]}" -p "$3" -Q "$RATE"
}
dns_runs nsd "$PID_NSD" "$P_NSD"
dns_runs knot "$PID_KNOT" "$P_KNOT"
dns_runs idnode-dns "$PID_AUTH" "$P_DNS"
# p99 at half of idnode's DNS peak, the same offered load for all three.
HALF_DNS=$(half_of idnode-dns.dnsperf.max)
for s in "nsd $PID_NSD $P_NSD" "knot $PID_KNOT $P_KNOT" "idnode-dns $PID_AUTH $P_DNS"; do
    read -r key pid port <<<"$s"
    measure "$key.bench.half" "$pid" bench "${BENCH_UDP[@]}" --proto dns-udp --zone "$ZONE" \
        --server "127.0.0.1:$port" --rate "$HALF_DNS"
done

# idnode's Handle UDP, Handle TCP and HTTP front ends.
warm idnode-hudp.warm "${BENCH_BASE[@]}" --duration "${WARM_SECONDS}s" \
    --concurrency "$OUTSTANDING" --proto handle-udp --server "127.0.0.1:$P_HANDLE"
measure idnode-hudp.bench.max "$PID_AUTH" bench "${BENCH_UDP[@]}" --proto handle-udp \
    --server "127.0.0.1:$P_HANDLE"
measure idnode-hudp.bench.fixed "$PID_AUTH" bench "${BENCH_UDP[@]}" --proto handle-udp \
    --server "127.0.0.1:$P_HANDLE" --rate "$RATE"
HALF_HUDP=$(half_of idnode-hudp.bench.max)
measure idnode-hudp.bench.half "$PID_AUTH" bench "${BENCH_UDP[@]}" --proto handle-udp \
    --server "127.0.0.1:$P_HANDLE" --rate "$HALF_HUDP"
measure idnode-htcp.bench.max "$PID_AUTH" bench "${BENCH[@]}" --proto handle-tcp \
    --concurrency "$CONNECTIONS" --server "127.0.0.1:$P_HANDLE"
HTTP_BENCH=0
if "$IDNODE" bench --help 2>/dev/null | grep -q 'http'; then
    HTTP_BENCH=1
    measure idnode-http.bench.max "$PID_AUTH" bench "${BENCH[@]}" --proto http \
        --concurrency "$CONNECTIONS" --server "127.0.0.1:$P_HTTP"
else
    log "this idnode bench has no http protocol: HTTP row skipped"
fi

# The recursive node, warmed first: every name once over DNS (the cache is shared by all
# front ends), twice so that queries lost in the cold pass are filled in (dns_runs below
# adds a third pass).
for pass in 1 2; do
    warm "rec.warm-$pass" dnsperf -s 127.0.0.1 -p "$P_RDNS" -d "$WORK/queries.txt" \
        -c "$CLIENTS" -T 1 -q "$OUTSTANDING" -n 1 -t 5
done
compare_rec() { # the recursive node's records for a name equal the authoritative node's
    # (TTLs aside: the recursive node counts them down from when it cached the answer)
    local name a b
    name=$(printf 'sn-%07d.%s.%s' 1 "$LABELS" "$ZONE")
    a=$(dig_view "$P_DNS" "$name" TXT | tail -n +3 | awk '{ $2 = "TTL"; print }')
    b=$(dig_view "$P_RDNS" "$name" TXT | tail -n +3 | awk '{ $2 = "TTL"; print }')
    [ "$a" == "$b" ] || {
        printf '## %s TXT: authoritative vs recursive idnode\n%s\n---\n%s\n\n' "$name" "$a" "$b" >>"$DIFFS"
        log "warning: the recursive node's answer differs from the authoritative node's (see $DIFFS)"
    }
}
compare_rec

REC_FLAG=()
if "$IDNODE" bench --help 2>/dev/null | grep -qE -- '--rec(ursive|ursion)?\b'; then
    REC_FLAG=("$("$IDNODE" bench --help | grep -oE -- '--rec(ursive|ursion)?\b' | head -n 1)")
fi
REC_HUDP=0
# A short probe: does the recursive node answer idnode bench's Handle requests (they need the
# REC flag)?
measure rec-hudp.probe "$PID_REC" bench "${BENCH_BASE[@]}" --duration 1s \
    --concurrency "$OUTSTANDING" --proto handle-udp --server "127.0.0.1:$P_RHANDLE" \
    ${REC_FLAG[@]+"${REC_FLAG[@]}"}
if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0.99 else 1)' "$(success_share rec-hudp.probe)"; then
    REC_HUDP=1
    measure rec-hudp.bench.max "$PID_REC" bench "${BENCH_UDP[@]}" --proto handle-udp \
        --server "127.0.0.1:$P_RHANDLE" ${REC_FLAG[@]+"${REC_FLAG[@]}"}
    measure rec-hudp.bench.fixed "$PID_REC" bench "${BENCH_UDP[@]}" --proto handle-udp \
        --server "127.0.0.1:$P_RHANDLE" --rate "$RATE" ${REC_FLAG[@]+"${REC_FLAG[@]}"}
else
    log "the recursive node does not answer idnode bench's Handle requests with RC 1" \
        "($(tr -d '\n ' <"$WORK/results/rec-hudp.probe.json" | grep -o '"codes":{[^}]*}')):" \
        "recursive Handle UDP row skipped"
fi
dns_runs rec-dns "$PID_REC" "$P_RDNS"

# --------------------------------------------------------------------------------------------
# 5. The table

DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
CPU_MODEL=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
V_NSD=$(nsd -v 2>&1 | head -n 1 || true)
V_KNOT=$(knotd --version 2>&1 | head -n 1 || true)
V_DNSPERF=$(dnsperf -h 2>&1 | grep -m1 -i 'version' || dnsperf -h 2>&1 | head -n 1 || true)
V_IDNODE=$("$IDNODE" --version 2>&1 | head -n 1 || true)
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -n 1)" ]; then
    GIT_REV="$GIT_REV (with uncommitted changes)"
fi
export DATE CPU_MODEL V_NSD V_KNOT V_DNSPERF V_IDNODE GIT_REV COUNT DURATION RATE HALF_DNS \
    HALF_HUDP HTTP_BENCH REC_HUDP THREADS NOTE ARGS WORK SERVER_CPU CLIENT_CPU CLIENTS \
    OUTSTANDING CONNECTIONS
NPROC=$(nproc)
KERNEL=$(uname -r)
CLK_TCK=$(getconf CLK_TCK)
# Memory of each authoritative server after its runs (same data, same queries): the
# proportional set size (Pss) of the process and all its descendants, so a server that forks
# its workers (NSD) is counted whole and pages they share are counted once.
tree_pids() { echo "$1"; local c; for c in $(pgrep -P "$1" 2>/dev/null); do tree_pids "$c"; done; }
rss_mib() {
    local p kb=0 v
    for p in $(tree_pids "$1"); do
        v=$(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true)
        kb=$((kb + ${v:-0}))
    done
    [ "$kb" -gt 0 ] && echo $((kb / 1024))
}
RSS_NSD=$(rss_mib "$PID_NSD")
RSS_KNOT=$(rss_mib "$PID_KNOT")
RSS_IDNODE=$(rss_mib "$PID_AUTH")
export NPROC KERNEL CLK_TCK RSS_NSD RSS_KNOT RSS_IDNODE

python3 - "$WORK" >"$WORK/table.md" <<'EOF'
import json, os, sys
work = sys.argv[1]
E = os.environ
clk = int(E["CLK_TCK"])
rate, duration = int(E["RATE"]), int(E["DURATION"])

def res(label):
    path = f"{work}/results/{label}.json"
    return json.load(open(path)) if os.path.exists(path) else None

def cpu_us(label):
    r = res(label)
    if not r or not r["completed"]:
        return None
    return r["server_cpu_ticks"] / clk * 1e6 / r["completed"]

rows = [
    # (name, key, qps label, pct label, half label, cpu label)
    ("NSD (DNS UDP)", "nsd", "nsd.dnsperf.max", "nsd.bench.max", "nsd.bench.half", "nsd.dnsperf.fixed"),
    ("Knot DNS (DNS UDP)", "knot", "knot.dnsperf.max", "knot.bench.max", "knot.bench.half", "knot.dnsperf.fixed"),
    ("idnode DNS UDP", "idnode-dns", "idnode-dns.dnsperf.max", "idnode-dns.bench.max", "idnode-dns.bench.half", "idnode-dns.dnsperf.fixed"),
    ("idnode Handle UDP", "idnode-hudp", "idnode-hudp.bench.max", "idnode-hudp.bench.max", "idnode-hudp.bench.half", "idnode-hudp.bench.fixed"),
    ("idnode Handle TCP", "idnode-htcp", "idnode-htcp.bench.max", "idnode-htcp.bench.max", None, None),
    ("idnode HTTP API", "idnode-http", "idnode-http.bench.max", "idnode-http.bench.max", None, None),
    ("idnode recursive, cached: Handle UDP", "rec-hudp", "rec-hudp.bench.max", "rec-hudp.bench.max", None, "rec-hudp.bench.fixed"),
    ("idnode recursive, cached: DNS UDP", "rec-dns", "rec-dns.dnsperf.max", "rec-dns.bench.max", None, "rec-dns.dnsperf.fixed"),
]

def fmt_qps(v):
    return f"{v / 1000:.1f}k" if v is not None else "–"

def fmt_ms(v):
    return f"{v:.2f}" if v is not None else "–"

notes = []
nsd_qps = (res("nsd.dnsperf.max") or {}).get("qps")
nsd_cpu = cpu_us("nsd.dnsperf.fixed")
lines = [
    "| Server / front end | QPS (max) | p50 ms | p99 ms | p99 ms at ½ idnode peak | "
    f"server CPU µs/query at {rate}/s | QPS vs NSD | CPU/query vs NSD |",
    "|---|--:|--:|--:|--:|--:|--:|--:|",
]
for name, key, q, p, h, c in rows:
    rq = res(q)
    if rq is None:
        probe = res("rec-hudp.probe") or {}
        why = {"idnode-http": "not measured: `idnode bench` has no http protocol in this build",
               "rec-hudp": "not measured: the recursive node answered `idnode bench`'s Handle "
                           f"requests with {probe.get('codes')}, not RC 1 (the requests need the "
                           "REC flag to be resolved through the hierarchy, and this `idnode bench` "
                           "has no option to set it)"}.get(key, "not measured")
        lines.append(f"| {name} | – | – | – | – | – | – | – |")
        notes.append(f"{name}: {why}.")
        continue
    rp, rh = res(p), res(h) if h else None
    cpu = cpu_us(c) if c else None
    cpu_text = f"{cpu:.1f}" if cpu is not None else "–"
    if c and res(c):
        rc = res(c)
        offered = rate * rc["run_time_s"]
        if rc["completed"] < 0.95 * offered:
            cpu_text += " ⚠"
            notes.append(f"{name}: the server answered {rc['completed']} of about {int(offered)} "
                         f"queries offered at {rate}/s: it did not sustain the fixed rate, so its "
                         "CPU per query is measured under overload (⚠).")
    for label in (q, p, h, c):
        r = res(label) if label else None
        if r and r["sent"] and r["lost"] > 0.01 * r["sent"]:
            notes.append(f"{name}: {r['lost']} of {r['sent']} queries lost in `{label}`.")
        if r and r["completed"]:
            ok = sum(n for code, n in r["codes"].items() if code in ("RC1", "NOERROR", "200", "HTTP200"))
            if ok < r["completed"]:
                notes.append(f"{name}: `{label}` answer codes {r['codes']}.")
    qps_ratio = f"{rq['qps'] / nsd_qps:.2f}×" if nsd_qps else "–"
    cpu_ratio = f"{cpu / nsd_cpu:.2f}×" if (cpu is not None and nsd_cpu) else "–"
    lines.append(
        f"| {name} | {fmt_qps(rq['qps'])} | {fmt_ms(rp.get('p50_ms') if rp else None)} | "
        f"{fmt_ms(rp.get('p99_ms') if rp else None)} | "
        f"{fmt_ms(rh.get('p99_ms') if rh else None)} | {cpu_text} | {qps_ratio} | {cpu_ratio} |")

bench_qps = ", ".join(
    f"{n} {fmt_qps(res(k + '.bench.max')['qps'])}"
    for n, k in (("NSD", "nsd"), ("Knot", "knot"), ("idnode", "idnode-dns"), ("recursive idnode", "rec-dns"))
    if res(k + ".bench.max"))
out = []
if E.get("NOTE"):
    out += [f"**{E['NOTE']}**", ""]
out += [
    f"- Date: {E['DATE']}; `bash scripts/bench-peers.sh {E['ARGS']}`".rstrip(),
    f"- Machine: {E['NPROC']} cores, {E['CPU_MODEL']}, Linux {E['KERNEL']}; servers pinned to "
    f"core {E['SERVER_CPU']}, load generators to core {E['CLIENT_CPU']} (`taskset`)",
    f"- Versions: {E['V_NSD']}; {E['V_KNOT']}; dnsperf: {E['V_DNSPERF']}; {E['V_IDNODE']} at "
    f"git {E['GIT_REV']}",
    f"- Data: {E['COUNT']} identifiers, 2–3 values each; {duration} s per run; fixed rate "
    f"{rate}/s; ½ idnode peak = {E['HALF_DNS']}/s (DNS, all three servers) and "
    f"{E['HALF_HUDP']}/s (Handle UDP); idnode {E['THREADS'] or 'default UDP threads'}",
    "- Memory after the runs (Pss of each server's process tree): " + ", ".join(
        f"{n} {E[k]} MiB ({int(E[k]) * 1048576 // max(int(E['COUNT']), 1)} B per identifier)"
        for n, k in (("NSD", "RSS_NSD"), ("Knot", "RSS_KNOT"), ("idnode", "RSS_IDNODE"))
        if E.get(k, "").isdigit()),
    "",
]
out += lines
out += [
    "",
    "Tools: QPS (max) and CPU/query of the DNS rows by dnsperf (`-c 4 -T 1 -q 200`); all "
    "other QPS and CPU figures, and every latency column, by `idnode bench` (the DNS rows "
    "with `--proto dns-udp`, same 4 sockets and 200 outstanding). "
    + (f"`idnode bench` max QPS of the DNS rows, for comparison: {bench_qps}." if bench_qps else ""),
]
if notes:
    out += ["", "Notes:", ""] + [f"- {n}" for n in dict.fromkeys(notes)]
print("\n".join(out))
EOF

cat "$WORK/table.md"
if [ -s "$DIFF_SUMMARY" ]; then
    log "answers that differ in names a zone file cannot express like idnode (details: $DIFFS):"
    sed 's/^/    /' "$DIFF_SUMMARY" >&2
fi

if [ "$WRITE" = 1 ]; then
    python3 - "$REPO/BENCHMARKS.md" "$WORK/table.md" "$WORK/commands.txt" "$DIFF_SUMMARY" <<'EOF' ||
import re, sys
doc_path, table, commands, diffs = sys.argv[1:5]
begin, end = "<!-- bench-peers:results:begin -->", "<!-- bench-peers:results:end -->"
doc = open(doc_path).read()
if begin not in doc or end not in doc:
    sys.exit(f"{doc_path} has no {begin} ... {end} section")
body = open(table).read().rstrip() + "\n"
d = open(diffs).read().strip()
if d:
    body += "\nAnswers that differ between the servers (names a zone file cannot express " \
            "like idnode; every identifier answer checked was identical):\n\n" + d + "\n"
body += "\n<details><summary>Exact commands of this run</summary>\n\n```sh\n" + \
        open(commands).read().rstrip() + "\n```\n\n</details>\n"
head, rest = doc.split(begin, 1)
_, tail = rest.split(end, 1)
open(doc_path, "w").write(head + begin + "\n" + body + end + tail)
EOF
        die "could not update BENCHMARKS.md"
    log "updated the results section of $REPO/BENCHMARKS.md"
fi
