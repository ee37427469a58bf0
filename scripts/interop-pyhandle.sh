#!/usr/bin/env bash
# Interop check: drive a real idnode over HTTPS with pyhandle 1.5.0 (the
# EUDAT Handle REST client) and check create / read / modify / add / delete,
# and that wrong credentials and foreign-prefix admins are refused, with
# Basic auth (username/password) and with pyhandle's client-certificate mode
# (TLS client certificate + `Authorization: Handle clientCert="true"`).
#
# Usage: bash scripts/interop-pyhandle.sh
#   IDNODE_BIN   node binary (default target/debug/idnode, built with
#                `cargo build` when missing)
#   INTEROP_VENV venv directory (default target/interop-venv, reused)
#   PYTHON       interpreter for the venv (default python3)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

PYHANDLE_VERSION=1.5.0
PREFIX=88.100.1
OTHER_PREFIX=88.200.2
ADMIN_INDEX=300
# The client-certificate identity: HS_PUBKEY at CERT_INDEX of CERT_HANDLE,
# named by the certificate subject as "index:handle".
CERT_INDEX=300
CERT_HANDLE=$PREFIX/certadmin
CERT_USER=$CERT_INDEX:$CERT_HANDLE
PYTHON=${PYTHON:-python3}
VENV=${INTEROP_VENV:-$ROOT/target/interop-venv}

log() { echo "[interop] $*"; }
die() { echo "[interop] ERROR: $*" >&2; exit 1; }

# --- node binary -------------------------------------------------------------
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

# --- scratch dir, cleanup ----------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/idnode-interop.XXXXXX")
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
        echo "[interop] FAILED (exit $rc)" >&2
        if [[ -s "$NODE_LOG" ]]; then
            echo "[interop] ---- node log ($NODE_LOG) ----" >&2
            cat "$NODE_LOG" >&2
            echo "[interop] ---- end of node log ----" >&2
        fi
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- python venv with pyhandle -----------------------------------------------
venv_ok() {
    [[ -x "$VENV/bin/python" ]] &&
        "$VENV/bin/python" - "$PYHANDLE_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
import pyhandle.client.resthandleclient  # noqa: F401
sys.exit(0 if version("pyhandle") == sys.argv[1] else 1)
EOF
}
if venv_ok; then
    log "reusing venv $VENV"
else
    log "creating venv $VENV with pyhandle==$PYHANDLE_VERSION"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "pyhandle==$PYHANDLE_VERSION"
    venv_ok || die "pyhandle==$PYHANDLE_VERSION is not importable in $VENV"
fi

# --- self-signed TLS certificate -----------------------------------------------
log "generating self-signed certificate"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 2 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>"$WORK/openssl.log" ||
    { cat "$WORK/openssl.log" >&2; die "openssl req failed"; }

# --- client-certificate identity: keys and self-signed certificates ------------
# `idnode keygen` writes an RSA private key and prints its HS_PUBKEY value
# (REST JSON), stored on CERT_HANDLE once the node runs. The certificates are
# self-signed: Handle.Net checks no CA chain, only that the certificate's key
# is an HS_PUBKEY of the identity its subject names (UID, else CN).
log "generating client keys and certificates for $CERT_USER"
"$IDNODE_BIN" keygen --out "$WORK/certadmin-key.pem" --index "$CERT_INDEX" \
    >"$WORK/certadmin-pubkey.json" 2>>"$WORK/openssl.log" ||
    { cat "$WORK/openssl.log" >&2; die "idnode keygen failed"; }
# A second key, never registered; its certificate names the same identity.
"$IDNODE_BIN" keygen --out "$WORK/impostor-key.pem" --index "$CERT_INDEX" \
    >/dev/null 2>>"$WORK/openssl.log" ||
    { cat "$WORK/openssl.log" >&2; die "idnode keygen (second key) failed"; }

# In -subj '/' separates RDNs: the '/' of the handle must be written '\/'.
SUBJ_USER=${CERT_USER//\//\\/}
client_cert() { # client_cert KEY SUBJECT OUT
    openssl req -x509 -new -key "$1" -subj "$2" -days 2 -out "$3" \
        2>>"$WORK/openssl.log" ||
        { cat "$WORK/openssl.log" >&2; die "openssl req -subj '$2' failed"; }
}
# The identity in the CN (pyhandle: certificate_only + private_key) ...
client_cert "$WORK/certadmin-key.pem" "/CN=$SUBJ_USER" "$WORK/certadmin-cert.pem"
# ... in the UID, with an unrelated CN (pyhandle: certificate_and_key, one file) ...
client_cert "$WORK/certadmin-key.pem" "/UID=$SUBJ_USER/CN=pyhandle interop" "$WORK/certadmin-uid-cert.pem"
cat "$WORK/certadmin-uid-cert.pem" "$WORK/certadmin-key.pem" >"$WORK/certadmin-uid-cert-and-key.pem"
# ... and the same CN with the unregistered key.
client_cert "$WORK/impostor-key.pem" "/CN=$SUBJ_USER" "$WORK/impostor-cert.pem"
openssl x509 -in "$WORK/certadmin-cert.pem" -noout -subject -nameopt RFC2253 |
    grep -qF "CN=$CERT_USER" ||
    die "client certificate subject is not CN=$CERT_USER: $(openssl x509 -in "$WORK/certadmin-cert.pem" -noout -subject)"

# --- config ------------------------------------------------------------------
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
BASE_URL="https://127.0.0.1:$PORT"
CONFIG=$WORK/idnode.toml
cat >"$CONFIG" <<EOF
[node]
data_dir = "$WORK/data"
homed_prefixes = ["$PREFIX", "$OTHER_PREFIX"]
suffix_case = "sensitive"

[http]
listen = "127.0.0.1:$PORT"
tls_cert = "$WORK/cert.pem"
tls_key = "$WORK/key.pem"
# Ask TLS clients for a certificate (not required): pyhandle's certificate mode.
client_cert_auth = true

[handle]
# The native protocol is not under test here: any free port, so runs never collide.
listen = "127.0.0.1:0"

[dns]
# Nor is DNS (its default 127.0.0.1:5300 could be taken).
listen = "127.0.0.1:0"
EOF
log "config $CONFIG (port $PORT)"

# --- prefixes and admin identities (node stopped) -----------------------------
# First prefix: let init-prefix generate the secret and write it to the file.
SECRET1=$WORK/secret-$PREFIX
"$IDNODE_BIN" init-prefix "$PREFIX" --config "$CONFIG" \
    --secret-file "$SECRET1" --index "$ADMIN_INDEX" >>"$NODE_LOG" 2>&1 ||
    die "init-prefix $PREFIX failed"
[[ -s "$SECRET1" ]] || die "init-prefix $PREFIX did not write a secret to $SECRET1"

# Second prefix: the secret file exists beforehand; init-prefix must use it.
SECRET2=$WORK/secret-$OTHER_PREFIX
printf 'other-prefix-secret-%s\n' "$RANDOM$RANDOM" >"$SECRET2"
"$IDNODE_BIN" init-prefix "$OTHER_PREFIX" --config "$CONFIG" \
    --secret-file "$SECRET2" --index "$ADMIN_INDEX" >>"$NODE_LOG" 2>&1 ||
    die "init-prefix $OTHER_PREFIX failed"
log "init-prefix done for $PREFIX and $OTHER_PREFIX"

# --- start the node ------------------------------------------------------------
echo "---- serve ----" >>"$NODE_LOG"
RUST_LOG=${RUST_LOG:-info} "$IDNODE_BIN" serve --config "$CONFIG" >>"$NODE_LOG" 2>&1 &
NODE_PID=$!
log "node started (pid $NODE_PID), waiting for $BASE_URL/healthz"

ready=
for _ in $(seq 1 120); do # 120 x 0.25 s = 30 s at most
    kill -0 "$NODE_PID" 2>/dev/null || die "node exited before becoming healthy"
    if curl -ksf --max-time 2 -o /dev/null "$BASE_URL/healthz"; then
        ready=1
        break
    fi
    sleep 0.25
done
[[ -n "$ready" ]] || die "node not healthy at $BASE_URL/healthz after 30 s"
# The listener must present the certificate we configured (verify against it).
curl -sf --max-time 5 --cacert "$WORK/cert.pem" -o /dev/null "$BASE_URL/healthz" ||
    die "TLS check failed: $BASE_URL does not present $WORK/cert.pem"
log "node healthy"

# --- register the client-certificate identity (REST, as the Basic admin) ------
# What an administrator does with curl: create CERT_HANDLE holding the
# HS_PUBKEY, then add CERT_USER to the admin group HS_VLIST 200:0.NA/PREFIX,
# which the prefix's HS_ADMIN (ADD_HANDLE etc.) names, as does the HS_ADMIN
# of every handle pyhandle creates (200:0.NA/PREFIX by default).
api() { # api METHOD PATH [JSON-FILE]: prints the HTTP status, body in $WORK/resp.json
    local method=$1 path=$2 body=${3:-} secret
    local args=(-sS --max-time 10 --cacert "$WORK/cert.pem" -K - -X "$method"
        -o "$WORK/resp.json" -w '%{http_code}')
    if [[ -n "$body" ]]; then
        args+=(-H 'Content-Type: application/json' --data-binary "@$body")
    fi
    # The secret goes to curl on stdin (-K -), not on its command line.
    secret=$(tr -d '\r\n' <"$SECRET1")
    printf 'user = "%s:%s"\n' "$ADMIN_INDEX%3A0.NA/$PREFIX" "$secret" |
        curl "${args[@]}" "$BASE_URL/api/handles/$path"
}
expect_status() { # expect_status WANT GOT WHAT
    [[ "$2" == "$1" ]] ||
        die "$3: HTTP $2, expected $1: $(cat "$WORK/resp.json" 2>/dev/null)"
}

"$PYTHON" - "$WORK/certadmin-pubkey.json" "$PREFIX" >"$WORK/certadmin-record.json" <<'PY' ||
import json, sys
pubkey = json.load(open(sys.argv[1]))
assert pubkey.get("type") == "HS_PUBKEY", "keygen printed %r" % pubkey
admin = {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
    "handle": "0.NA/" + sys.argv[2], "index": 200, "permissions": "011111110011"}}}
print(json.dumps({"values": [pubkey, admin]}))
PY
    die "cannot build the record of $CERT_HANDLE from keygen's output"
status=$(api PUT "$CERT_HANDLE?overwrite=false" "$WORK/certadmin-record.json") ||
    die "PUT $CERT_HANDLE: curl failed"
expect_status 201 "$status" "create $CERT_HANDLE with HS_PUBKEY@$CERT_INDEX"

status=$(api GET "0.NA/$PREFIX?index=200") || die "GET 0.NA/$PREFIX?index=200: curl failed"
expect_status 200 "$status" "read the admin group 200:0.NA/$PREFIX"
"$PYTHON" - "$WORK/resp.json" "$CERT_HANDLE" "$CERT_INDEX" >"$WORK/vlist.json" <<'PY' ||
import json, sys
rec = json.load(open(sys.argv[1]))
found = [v for v in rec["values"] if v["index"] == 200 and v["type"] == "HS_VLIST"]
assert len(found) == 1, "no HS_VLIST at index 200: %r" % rec["values"]
vlist = found[0]
vlist["data"]["value"].append({"handle": sys.argv[2], "index": int(sys.argv[3])})
print(json.dumps({"values": [{k: vlist[k] for k in ("index", "type", "data")}]}))
PY
    die "0.NA/$PREFIX has no HS_VLIST at index 200 to add $CERT_USER to: $(cat "$WORK/resp.json")"
status=$(api PUT "0.NA/$PREFIX?index=200&overwrite=true" "$WORK/vlist.json") ||
    die "PUT 0.NA/$PREFIX?index=200: curl failed"
expect_status 200 "$status" "add $CERT_USER to HS_VLIST 200:0.NA/$PREFIX"
log "identity $CERT_USER registered (HS_PUBKEY) and in the admin group 200:0.NA/$PREFIX"

# --- pyhandle checks ----------------------------------------------------------
"$VENV/bin/python" "$ROOT/scripts/interop_pyhandle.py" \
    --url "$BASE_URL" \
    --prefix "$PREFIX" \
    --user "$ADMIN_INDEX:0.NA/$PREFIX" \
    --password-file "$SECRET1" \
    --other-prefix "$OTHER_PREFIX" \
    --other-user "$ADMIN_INDEX:0.NA/$OTHER_PREFIX" \
    --other-password-file "$SECRET2" \
    --cert-user "$CERT_USER" \
    --cert-file "$WORK/certadmin-cert.pem" \
    --key-file "$WORK/certadmin-key.pem" \
    --cert-and-key-file "$WORK/certadmin-uid-cert-and-key.pem" \
    --wrong-cert-file "$WORK/impostor-cert.pem" \
    --wrong-key-file "$WORK/impostor-key.pem"

kill -0 "$NODE_PID" 2>/dev/null || die "node died during the checks"
log "all pyhandle interop checks passed"
