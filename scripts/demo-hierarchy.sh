#!/usr/bin/env bash
# The identifier hierarchy on one machine, end to end, with the repository's role configs:
#
#   top-level node  (config/top-level.toml)  homes 88        HTTP 8101, native 2741, DNS 5301
#   secondary node  (config/secondary.toml)  homes 88.100    HTTP 8102, native 2742, DNS 5302
#   enterprise node (config/enterprise.toml) homes 88.100.1  HTTP 8103, native 2743, DNS 5303
#   recursive node  (config/recursive.toml)  homes nothing   HTTP 8104, native 2744, DNS 5304
#
# The top-level operator delegates 88.100 to the secondary node, the secondary's operator
# delegates 88.100.1 to the enterprise node (both over the authenticated native admin path),
# the enterprise registers 88.100.1/SN-0001, each hop is shown by asking each node directly,
# and a factory resolves the identifier through the recursive node (UDP, TCP, HTTP); the
# repeated lookups are cache hits. Every step is checked; the script exits non-zero if one
# does not give the expected answer.
#
# Usage: bash scripts/demo-hierarchy.sh [--keep]
#   --keep      leave the four nodes running afterwards (prints how to stop them)
#   IDNODE_BIN  the binary to use (default: target/debug/idnode, or under $CARGO_TARGET_DIR;
#               built with `cargo build` when absent)
#
# The nodes run in a fresh temporary directory (their data lands in ./idnode-data/<role>
# there); it is removed afterwards unless --keep is given or a step failed.

set -euo pipefail

KEEP=0
for arg in "$@"; do
    case "$arg" in
        --keep) KEEP=1 ;;
        -h | --help)
            sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (usage: $0 [--keep])" >&2
            exit 2
            ;;
    esac
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROLES=(top-level secondary enterprise recursive)
HTTP_PORTS=(8101 8102 8103 8104)
NATIVE_PORTS=(2741 2742 2743 2744)
DNS_PORTS=(5301 5302 5303 5304)

# ---------------------------------------------------------------------------------------------
# The binary

BIN=${IDNODE_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/idnode}
if [[ ! -x $BIN ]]; then
    if [[ -n ${IDNODE_BIN:-} ]]; then
        echo "error: IDNODE_BIN=$IDNODE_BIN is not an executable file" >&2
        exit 2
    fi
    echo "== building idnode (cargo build)"
    (cd "$REPO" && cargo build --bin idnode)
    if [[ ! -x $BIN ]]; then
        echo "error: cargo build did not produce $BIN" >&2
        exit 2
    fi
fi
case $BIN in
    /*) ;;
    *) BIN=$PWD/$BIN ;;
esac

# ---------------------------------------------------------------------------------------------
# The ports must be free (TCP and UDP)

port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        [[ -n $(ss -Hlntu "sport = :$port" 2>/dev/null) ]]
    else
        # No ss: a TCP connect tells whether something listens (UDP cannot be checked).
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

busy=()
for port in "${HTTP_PORTS[@]}" "${NATIVE_PORTS[@]}" "${DNS_PORTS[@]}"; do
    if port_in_use "$port"; then
        busy+=("$port")
    fi
done
if ((${#busy[@]} > 0)); then
    echo "error: port(s) ${busy[*]} on 127.0.0.1 already in use; the demo needs 8101-8104" \
        "(HTTP), 2741-2744 (native) and 5301-5304 (DNS), TCP and UDP, free. Stop whatever" \
        "listens there (\`ss -ltnup\` shows it), e.g. a node left running by --keep." >&2
    exit 1
fi

# ---------------------------------------------------------------------------------------------
# Start the four nodes in a temporary working directory; stop them on exit

WORK=$(mktemp -d "${TMPDIR:-/tmp}/idnode-demo.XXXXXX")
PIDS=()
SUCCESS=0

cleanup() {
    local status=$?
    if ((SUCCESS == 1 && KEEP == 1)); then
        return
    fi
    if ((SUCCESS == 0)); then
        echo >&2
        echo "FAILED (exit status $status). Node logs (last 40 lines each):" >&2
        local role
        for role in "${ROLES[@]}"; do
            if [[ -f $WORK/$role.log ]]; then
                echo "---- $WORK/$role.log" >&2
                tail -n 40 "$WORK/$role.log" >&2
            fi
        done
    fi
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if ((SUCCESS == 1)); then
        rm -rf "$WORK"
    else
        echo "(data and logs kept in $WORK)" >&2
    fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

cd "$WORK"
echo "== starting the four nodes in $WORK"
for i in "${!ROLES[@]}"; do
    role=${ROLES[$i]}
    filter=info
    if [[ $role == recursive ]]; then
        # The recursive node logs every upstream hop at debug level.
        filter=info,idnode::resolve::recursion=debug
    fi
    RUST_LOG=$filter NO_COLOR=1 "$BIN" serve --config "$REPO/config/$role.toml" \
        >"$role.log" 2>&1 &
    PIDS+=("$!")
    echo "   $role: pid $!, http 127.0.0.1:${HTTP_PORTS[$i]}, native 127.0.0.1:${NATIVE_PORTS[$i]}, log $WORK/$role.log"
done

for i in "${!ROLES[@]}"; do
    role=${ROLES[$i]}
    url=http://127.0.0.1:${HTTP_PORTS[$i]}/healthz
    for ((try = 1; ; try++)); do
        if curl -fsS --max-time 1 -o /dev/null "$url" 2>/dev/null; then
            break
        fi
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            echo "error: the $role node exited during start-up" >&2
            exit 1
        fi
        if ((try >= 100)); then
            echo "error: the $role node did not answer $url within 20 s" >&2
            exit 1
        fi
        sleep 0.2
    done
done
echo "   all four answer /healthz"

# ---------------------------------------------------------------------------------------------
# Helpers

# Print a command (with the binary shown as `idnode`), then run it.
run() {
    local shown=("$@")
    if [[ ${shown[0]} == "$BIN" ]]; then
        shown[0]=idnode
    fi
    local arg line='$'
    for arg in "${shown[@]}"; do
        if [[ $arg =~ ^[][A-Za-z0-9_./:=@%+,-]+$ ]]; then
            line+=" $arg"
        else
            line+=" '${arg//\'/\'\\\'\'}'"
        fi
    done
    printf '%s\n' "$line"
    "$@"
}

# Run a command (printed), show its output (stdout and stderr), keep it in OUT; returns the
# command's exit status.
capture() {
    local rc=0
    OUT=$(run "$@" 2>&1) || rc=$?
    printf '%s\n' "$OUT"
    return "$rc"
}

fail() {
    echo "CHECK FAILED: $*" >&2
    exit 1
}

# expect TEXT PATTERN WHAT: TEXT must contain the extended regular expression PATTERN.
expect() {
    if ! grep -Eq -- "$2" <<<"$1"; then
        fail "$3 (expected to match /$2/)"
    fi
    echo "   ok: $3"
}

# The JSON of an HS_SITE value: one server at 127.0.0.1 answering queries over UDP and
# queries and administration over TCP on PORT.
site_json() {
    local index=$1 type=$2 port=$3
    cat <<EOF
{"index": $index, "type": "$type", "data": {"format": "site", "value": {
  "version": 1, "protocolVersion": "2.11", "serialNumber": 1,
  "primarySite": true, "multiPrimary": false, "attributes": [],
  "servers": [{"serverId": 1, "address": "127.0.0.1",
               "publicKey": {"format": "base64", "value": ""},
               "interfaces": [{"query": true, "admin": false, "protocol": "UDP", "port": $port},
                              {"query": true, "admin": true, "protocol": "TCP", "port": $port}]}]}}}
EOF
}

# The JSON of an HS_ADMIN value at index 100 naming 200:0.NA/PREFIX with all permissions.
admin_json() {
    cat <<EOF
{"index": 100, "type": "HS_ADMIN", "data": {"format": "admin",
  "value": {"handle": "0.NA/$1", "index": 200, "permissions": "111111111111"}}}
EOF
}

# ---------------------------------------------------------------------------------------------
# a. The top-level operator delegates 88.100 to the secondary node

echo
echo "== hop: the top-level operator (300:0.NA/88) delegates 88.100 to the secondary node (2742)"
{
    echo '{"values": ['
    admin_json 88.100
    echo ','
    site_json 1 HS_SITE.PREFIX 2742
    echo ']}'
} >88.100.json
capture "$BIN" admin create 0.NA/88.100 --values-json 88.100.json \
    --auth-handle 300:0.NA/88 --secret-file ./idnode-data/top-level/88.admin-secret \
    --server 127.0.0.1:2741 || fail "creating 0.NA/88.100 at the top level"
expect "$OUT" '^created 0\.NA/88\.100$' "the top level stores 0.NA/88.100"

# ---------------------------------------------------------------------------------------------
# b. The secondary's operator delegates 88.100.1 to the enterprise node

echo
echo "== hop: the secondary operator (300:0.NA/88.100) delegates 88.100.1 to the enterprise node (2743)"
{
    echo '{"values": ['
    admin_json 88.100.1
    echo ','
    site_json 1 HS_SITE 2743
    echo ']}'
} >88.100.1.json
capture "$BIN" admin create 0.NA/88.100.1 --values-json 88.100.1.json \
    --auth-handle 300:0.NA/88.100 --secret-file ./idnode-data/secondary/88.100.admin-secret \
    --server 127.0.0.1:2742 || fail "creating 0.NA/88.100.1 at the secondary"
expect "$OUT" '^created 0\.NA/88\.100\.1$' "the secondary stores 0.NA/88.100.1"

# ---------------------------------------------------------------------------------------------
# c. The enterprise registers a product identifier

echo
echo "== hop: the enterprise admin (300:0.NA/88.100.1) registers 88.100.1/SN-0001"
capture "$BIN" admin create 88.100.1/SN-0001 \
    --value '1:URL:https://example.com/sn/0001' --value '2:DESC:Pump housing, lot 2026-11' \
    --auth-handle 300:0.NA/88.100.1 --secret-file ./idnode-data/enterprise/88.100.1.admin-secret \
    --server 127.0.0.1:2743 || fail "creating 88.100.1/SN-0001 at the enterprise"
expect "$OUT" '^created 88\.100\.1/SN-0001$' "the enterprise stores 88.100.1/SN-0001"

# ---------------------------------------------------------------------------------------------
# d. Each node's own answer

echo
echo "== hop: the top-level node answers 0.NA/88.100.1 with a referral (RC 303) to the secondary"
rc=0
capture "$BIN" resolve 0.NA/88.100.1 --server 127.0.0.1:2741 --json || rc=$?
expect "$OUT" '"responseCode": 303' "RC 303 (prefix referral) from the top level"
expect "$OUT" '"HS_SITE\.PREFIX"' "the referral carries 0.NA/88.100's HS_SITE.PREFIX"
expect "$OUT" '"port": 2742' "pointing at the secondary's native port 2742"
((rc == 1)) || fail "resolve of a referral should exit 1 (not found here), got $rc"

echo
echo "== hop: the secondary node answers 0.NA/88.100.1 with the enterprise's HS_SITE"
capture "$BIN" resolve 0.NA/88.100.1 --server 127.0.0.1:2742 ||
    fail "resolving 0.NA/88.100.1 at the secondary"
expect "$OUT" '[[:space:]]HS_SITE[[:space:]].*2743' "HS_SITE of 0.NA/88.100.1 naming port 2743"

echo
echo "== hop: the enterprise node answers 88.100.1/SN-0001 with the record"
capture "$BIN" resolve 88.100.1/SN-0001 --server 127.0.0.1:2743 ||
    fail "resolving 88.100.1/SN-0001 at the enterprise"
expect "$OUT" 'URL .*https://example\.com/sn/0001' "the URL value"
expect "$OUT" 'DESC .*Pump housing, lot 2026-11' "the DESC value"

# ---------------------------------------------------------------------------------------------
# e. A factory resolves through the recursive node

echo
echo "== hop: a factory resolves 88.100.1/SN-0001 through the recursive node (UDP)"
capture "$BIN" resolve 88.100.1/SN-0001 --server 127.0.0.1:2744 ||
    fail "resolving through the recursive node over UDP"
expect "$OUT" 'URL .*https://example\.com/sn/0001' "the record, over UDP"

echo
echo "== hop: the same lookup over TCP (served from the recursive node's cache)"
capture "$BIN" resolve 88.100.1/SN-0001 --server 127.0.0.1:2744 --tcp ||
    fail "resolving through the recursive node over TCP"
expect "$OUT" 'URL .*https://example\.com/sn/0001' "the record, over TCP"

echo
echo "== hop: the same lookup over HTTP (curl)"
capture curl -fsS http://127.0.0.1:8104/api/handles/88.100.1/SN-0001 ||
    fail "GET /api/handles/88.100.1/SN-0001 at the recursive node"
expect "$OUT" '"responseCode":1[,}]' "RC 1 over HTTP"
expect "$OUT" 'https://example\.com/sn/0001' "the URL value over HTTP"

echo
echo "== the recursive node's cache (/metrics)"
metrics=$(curl -fsS http://127.0.0.1:8104/metrics) || fail "GET /metrics at the recursive node"
cache=$(grep '^idnode_cache_events_total' <<<"$metrics" || true)
echo "${cache:-(no idnode_cache_events_total lines)}"
hits=$(awk '/^idnode_cache_events_total\{event="hit"\}/ { print int($2) }' <<<"$metrics")
((${hits:-0} > 0)) || fail "no cache hit after three identical lookups"
echo "   ok: $hits cache hit(s)"

echo
echo "== recursive node's upstream hops (debug log of idnode::resolve::recursion)"
hops=$(grep -F 'idnode::resolve::recursion' recursive.log || true)
if [[ -z $hops ]]; then
    fail "no debug lines from idnode::resolve::recursion in the recursive node's log"
fi
echo "$hops"
expect "$hops" 'upstream hop' "the log shows the upstream hops"

SUCCESS=1
echo
echo "== all steps gave the expected answers"
if ((KEEP == 1)); then
    echo "The nodes keep running (working directory $WORK, logs there):"
    for i in "${!ROLES[@]}"; do
        echo "   ${ROLES[$i]}: pid ${PIDS[$i]}"
    done
    echo "Stop them with:  kill ${PIDS[*]}  (and remove $WORK)"
fi
