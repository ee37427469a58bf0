#!/usr/bin/env bash
# Sync on one machine: a secondary node's records appearing on its read-only mirror and on
# the top-level node that hosts its core data, with the repository's role configs:
#
#   secondary node (config/secondary.toml)  homes 88.100, serves its change feed   HTTP 8102
#   mirror         (config/mirror.toml)     follows 88.100 read-only              HTTP 8105
#   top-level node (config/top-level.toml + a [[sync.follow]] of 88.100)           HTTP 8101
#
# The followers do not hold the secondary administrator's secret: the administrator first
# creates a dedicated replication identity, an admin-only HS_SECKEY at index 301 of
# 0.NA/88.100 that HS_ADMIN does not reference (so it can read the feed it is listed for in
# [[sync.allow]] and change nothing), and gives the followers that secret only.
#
# Registers identifiers on the secondary, times how long each takes to be resolvable on the
# mirror and on the top-level node, shows a write to the mirror refused (RC 7 naming the
# primary) and the replication identity's own write refused, compares the content digests
# of 88.100 on all three (each node asked with its operator token) and prints `idnode sync
# status`. Exits non-zero if a step does not give the expected answer.
#
# Usage: bash scripts/demo-sync.sh
#   IDNODE_BIN  the binary to use (default: target/debug/idnode, built when absent)

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${IDNODE_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/idnode}
if [[ ! -x $BIN ]]; then
    (cd "$REPO" && cargo build --bin idnode)
fi
command -v curl >/dev/null || { echo "error: curl is needed" >&2; exit 2; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
cp -r "$REPO/config" .
cat >> config/top-level.toml <<'TOML'

# Hosting the secondary's core data (demo-sync.sh): follow its prefix 88.100.
[sync]
allow_plain = true
[[sync.follow]]
upstream = "http://127.0.0.1:8102"
identity = "301:0.NA/88.100"
secret_file = "./idnode-data/88.100.replication-secret"
prefixes = ["88.100"]
TOML

wait_http() {
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0
        sleep 0.1
    done
    echo "error: node on port $1 did not start" >&2
    exit 1
}

"$BIN" serve --config config/secondary.toml >secondary.log 2>&1 &
PIDS+=($!)
wait_http 8102
AUTH="300%3A0.NA/88.100:$(cat idnode-data/secondary/88.100.admin-secret)"

echo "== creating the replication identity 301:0.NA/88.100 (admin-only HS_SECKEY)"
(umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >idnode-data/88.100.replication-secret)
REPL_SECRET=$(cat idnode-data/88.100.replication-secret)
curl -sf -u "$AUTH" -X PUT -H 'Content-Type: application/json' \
    -d "{\"values\":[{\"index\":301,\"type\":\"HS_SECKEY\",\"data\":\"$REPL_SECRET\",\"permissions\":\"1100\"}]}" \
    "http://127.0.0.1:8102/api/handles/0.NA/88.100?index=301" >/dev/null
answer=$(curl -s -u "301%3A0.NA/88.100:$REPL_SECRET" -X PUT -H 'Content-Type: application/json' \
    -d '{"values":[{"index":1,"type":"URL","data":"https://evil.example/"}]}' \
    "http://127.0.0.1:8102/api/handles/88.100/BY-REPLICATOR")
echo "  a write by the replication identity: $answer"
grep -q '"responseCode":1,' <<<"$answer" && { echo "error: the replication identity could write" >&2; exit 1; }

"$BIN" serve --config config/mirror.toml >mirror.log 2>&1 &
PIDS+=($!)
"$BIN" serve --config config/top-level.toml >top-level.log 2>&1 &
PIDS+=($!)
wait_http 8105
wait_http 8101

now_ms() { date +%s%3N; }

echo "== registering identifiers on the secondary, timing their arrival"
for i in 1 2 3 4 5; do
    h="88.100/DEMO-$i"
    t0=$(now_ms)
    curl -sf -u "$AUTH" -X PUT -H 'Content-Type: application/json' \
        -d "{\"values\":[{\"index\":1,\"type\":\"URL\",\"data\":\"https://example.com/demo/$i\"}]}" \
        "http://127.0.0.1:8102/api/handles/$h" >/dev/null
    for port in 8105 8101; do
        until curl -sf "http://127.0.0.1:$port/api/handles/$h" >/dev/null; do
            if (($(now_ms) - t0 > 5000)); then
                echo "error: $h not on port $port after 5 s" >&2
                exit 1
            fi
            sleep 0.005
        done
        echo "  $h on port $port after $(($(now_ms) - t0)) ms"
    done
done

echo "== a write sent to the mirror"
answer=$(curl -s -u "$AUTH" -X DELETE "http://127.0.0.1:8105/api/handles/88.100/DEMO-1")
echo "  $answer"
grep -q '"responseCode":7' <<<"$answer" || { echo "error: not refused" >&2; exit 1; }

echo "== content digests of 88.100"
d=()
for node in secondary:8102 mirror:8105 top-level:8101; do
    name=${node%:*} port=${node#*:}
    token=$(cat "idnode-data/$name/sync-operator.token")
    d+=("$(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/sync/digest?prefix=88.100")")
    echo "  $name (port $port): ${d[-1]}"
done
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:8102/sync/digest?prefix=88.100")
echo "  without credentials: HTTP $code"
[[ $code == 401 ]] || { echo "error: anonymous digest not refused" >&2; exit 1; }
# The content (records and sha256) must agree; "seq" is each node's own sequence the digest
# is exact at, which differs from node to node.
content() { sed 's/,"seq":[0-9]*//' <<<"$1"; }
[[ $(content "${d[0]}") == "$(content "${d[1]}")" && $(content "${d[0]}") == "$(content "${d[2]}")" ]] \
    || { echo "error: digests differ" >&2; exit 1; }

echo "== idnode sync status (mirror, top-level)"
"$BIN" sync status --config config/mirror.toml
"$BIN" sync status --config config/top-level.toml
echo "OK"
