#!/usr/bin/env bash
# Interop check: query a real idnode's DNS front end with two independent DNS clients,
# ISC `dig` (dnsutils) and Knot `kdig` (knot-dnsutils), over UDP and TCP.
#
# A node homing 88.100.1 is started in a temporary directory on free 127.0.0.1 ports;
# identifiers are registered over the HTTP API with curl, then each check is run with both
# clients: TXT / URI / NAPTR / ANY of 88.100.1/SN-0001 (sn-0001.1.100.88.id.example.), an
# upper-case name, an x--<base32> encoded suffix (88.100.1/Lot.2026/A), SOA and NS at the
# apex, NXDOMAIN and NODATA with the SOA in AUTHORITY, REFUSED outside the zone, AXFR
# refused, TCP, EDNS (OPT echoed, absent without EDNS), and a 40-value record that is
# truncated (TC) over UDP without EDNS or with a 1232-byte buffer, fits a 4096-byte EDNS
# buffer, and arrives whole when the client falls back to TCP.
#
# Every check prints a PASS or FAIL line (a FAIL shows the command and its output); the
# script ends with "N passed" and exits non-zero if any check failed.
#
# Usage: bash scripts/interop-dns.sh
#   IDNODE_BIN  node binary (default target/debug/idnode, built with `cargo build` when
#               missing)
#   PYTHON      python interpreter for the helpers (default python3)
#
# dig and kdig are installed with apt-get (dnsutils, knot-dnsutils) when missing; that
# needs root (CI runs as root on Debian 12).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

PREFIX=88.100.1
ZONE=id.example.
NEG_TTL=30
MAX_UDP=4096
BIG_COUNT=40
PYTHON=${PYTHON:-python3}

log() { echo "[dns-interop] $*"; }
die() {
    echo "[dns-interop] ERROR: $*" >&2
    exit 1
}

# --- DNS clients ----------------------------------------------------------------
need=()
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
command -v kdig >/dev/null 2>&1 || need+=(knot-dnsutils)
if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        die "missing DNS clients (dig from dnsutils, kdig from knot-dnsutils); install them" \
            "with: sudo apt-get install --no-install-recommends ${need[*]} (or run as root)"
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "missing ${need[*]} and no apt-get to install them with"
    log "installing: ${need[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
    command -v dig >/dev/null 2>&1 || die "dig still missing after installing dnsutils"
    command -v kdig >/dev/null 2>&1 || die "kdig still missing after installing knot-dnsutils"
fi
for tool in curl "$PYTHON"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
log "$(dig -v 2>&1 | head -n1); $(kdig --version 2>&1 | head -n1)"

# --- node binary -------------------------------------------------------------------
if [[ -n "${IDNODE_BIN:-}" ]]; then
    [[ -x "$IDNODE_BIN" ]] || die "IDNODE_BIN=$IDNODE_BIN is not an executable file"
else
    IDNODE_BIN=$ROOT/target/debug/idnode
    if [[ ! -x "$IDNODE_BIN" ]]; then
        log "building $IDNODE_BIN (cargo build)"
        cargo build
    fi
    [[ -x "$IDNODE_BIN" ]] || die "cargo build did not produce $IDNODE_BIN"
fi
IDNODE_BIN=$(cd "$(dirname "$IDNODE_BIN")" && pwd)/$(basename "$IDNODE_BIN")
log "node binary: $IDNODE_BIN"

# --- scratch dir, cleanup ------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/idnode-dns-interop.XXXXXX")
NODE_PID=
NODE_LOG=$WORK/node.log

cleanup() {
    local rc=$?
    if [[ -n "$NODE_PID" ]] && kill -0 "$NODE_PID" 2>/dev/null; then
        kill "$NODE_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$NODE_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$NODE_PID" 2>/dev/null || true
        wait "$NODE_PID" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 ]]; then
        echo "[dns-interop] FAILED (exit $rc)" >&2
        if [[ -s "$NODE_LOG" ]]; then
            echo "[dns-interop] ---- node log ($NODE_LOG) ----" >&2
            cat "$NODE_LOG" >&2
            echo "[dns-interop] ---- end of node log ----" >&2
        fi
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- free ports (each free for both TCP and UDP, all distinct) -----------------------------
read -r HTTP_PORT HANDLE_PORT DNS_PORT < <("$PYTHON" - <<'EOF'
import socket
held, ports = [], []
while len(ports) < 3:
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close()
        continue
    held += [t, u]
    ports.append(port)
print(*ports)
EOF
)
[[ -n "${DNS_PORT:-}" ]] || die "could not find free ports"

# --- config and node ---------------------------------------------------------------
CONFIG=$WORK/idnode.toml
cat >"$CONFIG" <<EOF
[node]
data_dir = "$WORK/data"
homed_prefixes = ["$PREFIX"]
suffix_case = "sensitive"
bootstrap_admins = true

[http]
listen = "127.0.0.1:$HTTP_PORT"

[handle]
listen = "127.0.0.1:$HANDLE_PORT"

[dns]
listen = "127.0.0.1:$DNS_PORT"
zone = "$ZONE"
negative_ttl_secs = $NEG_TTL
max_udp_payload = $MAX_UDP
EOF
log "config $CONFIG (http $HTTP_PORT, native $HANDLE_PORT, dns $DNS_PORT)"

BASE_URL=http://127.0.0.1:$HTTP_PORT
NO_COLOR=1 RUST_LOG=${RUST_LOG:-info} "$IDNODE_BIN" serve --config "$CONFIG" >"$NODE_LOG" 2>&1 &
NODE_PID=$!
log "node started (pid $NODE_PID), waiting for $BASE_URL/healthz"

ready=
for _ in $(seq 1 120); do # 120 x 0.25 s = 30 s at most
    kill -0 "$NODE_PID" 2>/dev/null || die "node exited before becoming healthy"
    if curl -sf --max-time 2 -o /dev/null "$BASE_URL/healthz"; then
        ready=1
        break
    fi
    sleep 0.25
done
[[ -n "$ready" ]] || die "node not healthy at $BASE_URL/healthz after 30 s"

ready=
deadline=$((SECONDS + 10))
while ((SECONDS < deadline)); do
    kill -0 "$NODE_PID" 2>/dev/null || die "node exited before its DNS port answered"
    if dig @127.0.0.1 -p "$DNS_PORT" +time=1 +tries=1 SOA "$ZONE" 2>/dev/null |
        grep -q 'status: NOERROR'; then
        ready=1
        break
    fi
    sleep 0.25
done
[[ -n "$ready" ]] || die "no NOERROR answer to 'dig @127.0.0.1 -p $DNS_PORT SOA $ZONE' within 10 s"
log "node healthy, DNS answering on 127.0.0.1:$DNS_PORT"

# --- register identifiers over HTTP -----------------------------------------------------
SECRET_FILE=$WORK/data/$PREFIX.admin-secret
[[ -s "$SECRET_FILE" ]] || die "no bootstrap admin secret at $SECRET_FILE"
SECRET=$(<"$SECRET_FILE")
AUTH="300%3A0.NA/$PREFIX:$SECRET"

register() { # suffix json
    local suffix=$1 json=$2 code
    code=$(curl -s -o "$WORK/put.out" -w '%{http_code}' --max-time 10 -u "$AUTH" -X PUT \
        -H 'Content-Type: application/json' --data-binary "$json" \
        "$BASE_URL/api/handles/$PREFIX/$suffix") || code="curl-error"
    case $code in
        200 | 201) log "registered $PREFIX/$suffix (HTTP $code)" ;;
        *) die "PUT $BASE_URL/api/handles/$PREFIX/$suffix: HTTP $code: $(cat "$WORK/put.out" 2>/dev/null)" ;;
    esac
}

# Number of values an anonymous reader sees (what the DNS may publish).
public_count() { # suffix
    curl -sf --max-time 10 "$BASE_URL/api/handles/$PREFIX/$1" |
        "$PYTHON" -c 'import json, sys; print(len(json.load(sys.stdin)["values"]))'
}

SN_URL=https://example.com/sn/0001
SN_DESC="Pump housing"
register SN-0001 "{\"values\":[{\"index\":1,\"type\":\"URL\",\"data\":\"$SN_URL\"},
                               {\"index\":2,\"type\":\"DESC\",\"data\":\"$SN_DESC\"}]}"

LOT_SUFFIX=Lot.2026/A
LOT_URL=https://example.com/lot/2026-A
register "$LOT_SUFFIX" "{\"values\":[{\"index\":1,\"type\":\"URL\",\"data\":\"$LOT_URL\"}]}"

# BIG: 40 DESC values of 60 bytes each (about 3.3 kB of TXT records).
BIG_VALUES=$WORK/big-values.txt
"$PYTHON" - "$BIG_COUNT" >"$BIG_VALUES" <<'EOF'
import sys
for i in range(1, int(sys.argv[1]) + 1):
    print(f"{i} DESC " + f"Spare part {i:02d} of the big record: ".ljust(60, "x"))
EOF
BIG_JSON=$("$PYTHON" - "$BIG_VALUES" <<'EOF'
import json, sys
values = []
for line in open(sys.argv[1]):
    index, typ, data = line.rstrip("\n").split(" ", 2)
    values.append({"index": int(index), "type": typ, "data": data})
print(json.dumps({"values": values}))
EOF
)
register BIG "$BIG_JSON"

SN_PUBLIC=$(public_count SN-0001) || die "GET $BASE_URL/api/handles/$PREFIX/SN-0001 failed"
BIG_PUBLIC=$(public_count BIG) || die "GET $BASE_URL/api/handles/$PREFIX/BIG failed"
[[ $SN_PUBLIC == 2 ]] || die "88.100.1/SN-0001 has $SN_PUBLIC public values over HTTP, expected 2"
[[ $BIG_PUBLIC == "$BIG_COUNT" ]] ||
    die "88.100.1/BIG has $BIG_PUBLIC public values over HTTP, expected $BIG_COUNT"

# Names. Plain suffix label first, then the prefix segments reversed, then the zone; a
# suffix that is not a plain label is x--<base32 of its UTF-8, lower case, no padding>.
PREFIX_LABELS=1.100.88
SN_NAME=sn-0001.$PREFIX_LABELS.$ZONE
SN_NAME_UPPER=SN-0001.$PREFIX_LABELS.$ZONE
LOT_LABEL=x--$("$PYTHON" -c 'import base64, sys; print(base64.b32encode(sys.argv[1].encode()).decode().lower().rstrip("="))' "$LOT_SUFFIX")
LOT_NAME=$LOT_LABEL.$PREFIX_LABELS.$ZONE
BIG_NAME=big.$PREFIX_LABELS.$ZONE
NOPE_NAME=nope.$PREFIX_LABELS.$ZONE
log "names: $SN_NAME $LOT_NAME $BIG_NAME"

# --- query helpers --------------------------------------------------------------------
LAST_CMD=
LAST_OUT=
LAST_RC=0
FAIL_REASON=

# q TOOL ARGS...: run dig or kdig against the node; output in LAST_OUT.
q() {
    local tool=$1
    shift
    local -a cmd
    case $tool in
        dig) cmd=(dig "@127.0.0.1" -p "$DNS_PORT" +time=5 +tries=1 "$@") ;;
        kdig) cmd=(kdig "@127.0.0.1" -p "$DNS_PORT" +timeout=5 +retry=0 "$@") ;;
        *) die "unknown tool $tool" ;;
    esac
    LAST_CMD="${cmd[*]}"
    if LAST_OUT=$("${cmd[@]}" 2>&1); then LAST_RC=0; else LAST_RC=$?; fi
}

bad() {
    FAIL_REASON=$*
    return 1
}

# Header fields; dig and kdig print ";; ->>HEADER<<- ... status: X" and ";; flags: ..." /
# ";; Flags: ...; QUERY: 1, ANSWER: n" (dig separates the counts with ",", kdig with ";").
status_of() { sed -n 's/.*->>HEADER<<-.*status: \([A-Z]*\).*/\1/p' <<<"$LAST_OUT" | tail -n1; }
flags_of() { sed -n 's/^;; [Ff]lags: *\([^;]*\);.*/\1/p' <<<"$LAST_OUT" | tail -n1; }
count_of() { sed -n "s/^;; [Ff]lags:.* $1: \([0-9]*\).*/\1/p" <<<"$LAST_OUT" | tail -n1; }

# Records of a section (ANSWER, AUTHORITY, ...), whitespace squeezed; optional type regex.
section() { # name [type-regex]
    awk -v h=";; $1 SECTION:" -v t="${2:-.*}" '
        $0 == h { f = 1; next }
        f && NF == 0 { exit }
        f && !/^;/ && $4 ~ ("^(" t ")$") { $1 = $1; print }' <<<"$LAST_OUT"
}

want_status() {
    local got
    got=$(status_of)
    [[ $got == "$1" ]] || bad "status ${got:-<none>}, expected $1"
}
want_flag() {
    local f
    f=" $(flags_of) "
    [[ $f == *" $1 "* ]] || bad "flags [${f# }] lack '$1'"
}
want_noflag() {
    local f
    f=" $(flags_of) "
    [[ $f != *" $1 "* ]] || bad "flags [${f# }] have '$1'"
}
want_count() { # section n
    local got
    got=$(count_of "$1")
    [[ $got == "$2" ]] || bad "$1 count ${got:-<none>}, expected $2"
}
want_rrs() { # section type-regex n: exactly n records of the type
    local got
    got=$(section "$1" "$2" | grep -c . || true)
    [[ $got == "$3" ]] || bad "$got $2 record(s) in $1, expected $3"
}
want_rr() { # section type-regex text: a record of the type whose line contains text
    section "$1" "$2" | grep -qF -- "$3" || bad "no $2 record containing '$3' in $1"
}
want_text() {
    grep -qF -- "$1" <<<"$LAST_OUT" || bad "output lacks '$1'"
}
want_notext() {
    ! grep -qiF -- "$1" <<<"$LAST_OUT" || bad "output has '$1'"
}
want_transport() { # UDP|TCP: dig ";; SERVER: 127.0.0.1#p(127.0.0.1) (TCP)", kdig ";; From 127.0.0.1@p(TCP)"
    grep -qE "^;; (SERVER: .*\($1\)|From .*\($1\))" <<<"$LAST_OUT" ||
        bad "the answer did not come over $1"
}
# The OPT record's payload: dig "; EDNS: version: 0, flags:; udp: 4096", kdig "UDP size: 4096 B".
opt_payload() { sed -n -e 's/^; EDNS:.* udp: \([0-9]*\).*/\1/p' -e 's/^;; Version:.*UDP size: \([0-9]*\) B.*/\1/p' <<<"$LAST_OUT" | tail -n1; }
has_opt() { grep -qE '^(; EDNS:|;; EDNS PSEUDOSECTION:)' <<<"$LAST_OUT"; }

# A negative answer: SOA of the zone in AUTHORITY with TTL and MINIMUM = negative_ttl_secs.
want_neg_soa() {
    local soa
    local -a f
    soa=$(section AUTHORITY SOA | head -n1)
    [[ -n $soa ]] || bad "no SOA in AUTHORITY" || return 1
    read -r -a f <<<"$soa"
    [[ ${f[0],,} == "${ZONE,,}" ]] || bad "AUTHORITY SOA owner ${f[0]}, expected $ZONE" || return 1
    [[ ${f[1]} == "$NEG_TTL" ]] || bad "AUTHORITY SOA TTL ${f[1]}, expected $NEG_TTL (negative_ttl_secs)" || return 1
    [[ ${f[-1]} == "$NEG_TTL" ]] || bad "AUTHORITY SOA MINIMUM ${f[-1]}, expected $NEG_TTL" || return 1
}

# --- checks -------------------------------------------------------------------------------
PASSED=0
FAILED=()

check() { # description function args...
    local desc=$1
    shift
    FAIL_REASON=
    LAST_CMD=
    LAST_OUT=
    if "$@"; then
        PASSED=$((PASSED + 1))
        echo "PASS  $desc"
    else
        FAILED+=("$desc")
        echo "FAIL  $desc: ${FAIL_REASON:-check failed}"
        if [[ -n $LAST_CMD ]]; then
            echo "      command: $LAST_CMD (exit $LAST_RC)"
            awk '{ print "      | " $0 }' <<<"$LAST_OUT"
        fi
    fi
}

# The URI type: dig takes TYPE256 (and shows URI or TYPE256 depending on its version), kdig URI.
uri_qtype() { if [[ $1 == dig ]]; then echo TYPE256; else echo URI; fi; }
URI_RE='URI|TYPE256'

c_txt() {
    q "$1" TXT "$SN_NAME"
    want_status NOERROR && want_flag aa && want_flag qr && want_count ANSWER 2 &&
        want_rrs ANSWER TXT 2 &&
        want_rr ANSWER TXT "\"1 URL $SN_URL\"" &&
        want_rr ANSWER TXT "\"2 DESC $SN_DESC\""
}
c_uri() {
    q "$1" "$(uri_qtype "$1")" "$SN_NAME"
    want_status NOERROR && want_flag aa && want_rrs ANSWER "$URI_RE" 1 &&
        want_rr ANSWER "$URI_RE" "1 1 \"$SN_URL\""
}
c_naptr() {
    q "$1" NAPTR "$SN_NAME"
    want_status NOERROR && want_flag aa && want_rrs ANSWER NAPTR 1 &&
        want_rr ANSWER NAPTR "1 10 \"u\" \"E2U+web:https\" \"!^.*\$!$SN_URL!\" ."
}
c_any() {
    q "$1" ANY "$SN_NAME"
    want_status NOERROR && want_rrs ANSWER TXT 2 && want_rrs ANSWER "$URI_RE" 1 &&
        want_rrs ANSWER NAPTR 1 && want_count ANSWER 4 &&
        want_rr ANSWER TXT "\"2 DESC $SN_DESC\"" && want_rr ANSWER "$URI_RE" "\"$SN_URL\"" &&
        want_rr ANSWER NAPTR "!^.*\$!$SN_URL!"
}
c_upper() {
    q "$1" TXT "$SN_NAME_UPPER"
    want_status NOERROR && want_rrs ANSWER TXT 2 && want_rr ANSWER TXT "\"1 URL $SN_URL\""
}
c_encoded() {
    q "$1" TXT "$LOT_NAME"
    want_status NOERROR && want_flag aa && want_rrs ANSWER TXT 1 &&
        want_rr ANSWER TXT "\"1 URL $LOT_URL\"" || return 1
    q "$1" "$(uri_qtype "$1")" "$LOT_NAME"
    want_status NOERROR && want_rr ANSWER "$URI_RE" "1 1 \"$LOT_URL\""
}
c_soa() {
    q "$1" SOA "$ZONE"
    want_status NOERROR && want_flag aa && want_rrs ANSWER SOA 1 || return 1
    local owner
    owner=$(section ANSWER SOA | awk '{ print tolower($1) }')
    [[ $owner == "${ZONE,,}" ]] || bad "SOA owner $owner, expected $ZONE"
}
c_ns() {
    q "$1" NS "$ZONE"
    want_status NOERROR && want_flag aa || return 1
    local n
    n=$(section ANSWER NS | grep -c . || true)
    ((n >= 1)) || bad "no NS record in ANSWER"
}
c_nxdomain() {
    q "$1" TXT "$NOPE_NAME"
    want_status NXDOMAIN && want_flag aa && want_count ANSWER 0 && want_neg_soa
}
c_nodata() {
    q "$1" A "$SN_NAME"
    want_status NOERROR && want_flag aa && want_count ANSWER 0 && want_neg_soa
}
c_ent() {
    # The names on the path down to the homed prefix 88.100.1 are empty non-terminals.
    local name
    for name in "88.$ZONE" "100.88.$ZONE" "1.100.88.$ZONE"; do
        q "$1" TXT "$name"
        want_status NOERROR && want_count ANSWER 0 && want_neg_soa || return 1
    done
}
c_refused() {
    q "$1" A example.com.
    want_status REFUSED && want_count ANSWER 0
}
c_axfr() {
    q "$1" AXFR "$ZONE"
    if [[ $1 == dig ]]; then
        want_text "Transfer failed" || return 1
    else
        grep -q REFUSED <<<"$LAST_OUT" || bad "no REFUSED in the output" || return 1
    fi
    want_notext "XFR size" || return 1
    # No zone content may come back (AXFR output has no section headers: any SOA record).
    if awk '!/^;/ && $4 == "SOA" { found = 1 } END { exit !found }' <<<"$LAST_OUT"; then
        bad "the zone was transferred (an SOA record in the output)"
    fi
}
c_tcp() {
    q "$1" +tcp TXT "$SN_NAME"
    want_status NOERROR && want_transport TCP && want_rrs ANSWER TXT 2 &&
        want_rr ANSWER TXT "\"1 URL $SN_URL\""
}
c_edns() {
    q "$1" +bufsize=4096 TXT "$SN_NAME"
    want_status NOERROR && want_transport UDP && want_rrs ANSWER TXT 2 || return 1
    has_opt || bad "no OPT record in the reply to an EDNS query" || return 1
    local p
    p=$(opt_payload)
    [[ $p == "$MAX_UDP" ]] || bad "OPT payload ${p:-<none>}, expected $MAX_UDP"
}
c_noedns() {
    q "$1" +noedns TXT "$SN_NAME"
    want_status NOERROR && want_rrs ANSWER TXT 2 || return 1
    ! has_opt || bad "OPT record in the reply to a query without EDNS"
}
c_big_tc_noedns() {
    q "$1" +noedns +ignore TXT "$BIG_NAME"
    want_status NOERROR && want_transport UDP && want_flag tc || return 1
    local size
    size=$(sed -n -e 's/^;; MSG SIZE  rcvd: \([0-9]*\).*/\1/p' -e 's/^;; Received \([0-9]*\) B.*/\1/p' <<<"$LAST_OUT" | tail -n1)
    [[ -z $size ]] || ((size <= 512)) || bad "UDP reply without EDNS is $size bytes (> 512)"
}
c_big_tc_1232() {
    q "$1" +bufsize=1232 +ignore TXT "$BIG_NAME"
    want_status NOERROR && want_transport UDP && want_flag tc || return 1
    local size
    size=$(sed -n -e 's/^;; MSG SIZE  rcvd: \([0-9]*\).*/\1/p' -e 's/^;; Received \([0-9]*\) B.*/\1/p' <<<"$LAST_OUT" | tail -n1)
    [[ -z $size ]] || ((size <= 1232)) || bad "UDP reply with a 1232-byte buffer is $size bytes"
}
c_big_udp_4096() {
    q "$1" +bufsize=4096 +ignore TXT "$BIG_NAME"
    want_status NOERROR && want_transport UDP && want_noflag tc && want_count ANSWER "$BIG_COUNT" &&
        want_rrs ANSWER TXT "$BIG_COUNT" && want_all_big
}
c_big_fallback() {
    q "$1" TXT "$BIG_NAME"
    want_status NOERROR && want_transport TCP && want_noflag tc &&
        want_count ANSWER "$BIG_COUNT" && want_rrs ANSWER TXT "$BIG_COUNT" && want_all_big
}
want_all_big() {
    local answer line
    answer=$(section ANSWER TXT)
    while IFS= read -r line; do
        grep -qF -- "\"$line\"" <<<"$answer" || bad "BIG value \"$line\" missing from the answer" || return 1
    done <"$BIG_VALUES"
}

for tool in dig kdig; do
    echo
    log "---- $tool ----"
    check "$tool: TXT $SN_NAME has both values (aa)" c_txt "$tool"
    check "$tool: URI (type 256) $SN_NAME gives $SN_URL" c_uri "$tool"
    check "$tool: NAPTR $SN_NAME gives !^.*\$!$SN_URL!" c_naptr "$tool"
    check "$tool: ANY $SN_NAME gives TXT, URI and NAPTR" c_any "$tool"
    check "$tool: upper-case $SN_NAME_UPPER answers" c_upper "$tool"
    check "$tool: encoded suffix $LOT_NAME ($PREFIX/$LOT_SUFFIX) answers TXT and URI" c_encoded "$tool"
    check "$tool: SOA at the apex $ZONE" c_soa "$tool"
    check "$tool: NS at the apex $ZONE" c_ns "$tool"
    check "$tool: NXDOMAIN for $NOPE_NAME with SOA (TTL $NEG_TTL) in AUTHORITY" c_nxdomain "$tool"
    check "$tool: NODATA for A $SN_NAME (NOERROR, no answer, SOA in AUTHORITY)" c_nodata "$tool"
    check "$tool: NODATA (not NXDOMAIN) for the empty non-terminals 88 / 100.88 / 1.100.88" c_ent "$tool"
    check "$tool: REFUSED for example.com (outside the zone)" c_refused "$tool"
    check "$tool: AXFR $ZONE refused" c_axfr "$tool"
    check "$tool: TXT over TCP (+tcp)" c_tcp "$tool"
    check "$tool: EDNS +bufsize=4096: OPT in the reply with payload $MAX_UDP" c_edns "$tool"
    check "$tool: no EDNS in the query, no OPT in the reply" c_noedns "$tool"
    check "$tool: BIG over UDP without EDNS is truncated (tc)" c_big_tc_noedns "$tool"
    check "$tool: BIG over UDP with a 1232-byte EDNS buffer is truncated (tc)" c_big_tc_1232 "$tool"
    check "$tool: BIG over UDP with +bufsize=4096 arrives whole ($BIG_COUNT TXT)" c_big_udp_4096 "$tool"
    check "$tool: BIG by default falls back to TCP and gets all $BIG_COUNT TXT" c_big_fallback "$tool"
done

echo
kill -0 "$NODE_PID" 2>/dev/null || {
    FAILED+=("node still running after the checks")
    echo "FAIL  the node died during the checks"
}

if ((${#FAILED[@]})); then
    log "$PASSED passed, ${#FAILED[@]} failed:"
    printf '  - %s\n' "${FAILED[@]}"
    exit 1
fi
log "$PASSED passed"
