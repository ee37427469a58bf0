#!/usr/bin/env bash
# Interop check: drive a real idnode over HTTPS with pyhandle 1.5.0 (the
# EUDAT Handle REST client) and check create / read / modify / add / delete,
# and that wrong credentials and foreign-prefix admins are refused.
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

# --- pyhandle checks ----------------------------------------------------------
"$VENV/bin/python" "$ROOT/scripts/interop_pyhandle.py" \
    --url "$BASE_URL" \
    --prefix "$PREFIX" \
    --user "$ADMIN_INDEX:0.NA/$PREFIX" \
    --password-file "$SECRET1" \
    --other-prefix "$OTHER_PREFIX" \
    --other-user "$ADMIN_INDEX:0.NA/$OTHER_PREFIX" \
    --other-password-file "$SECRET2"

kill -0 "$NODE_PID" 2>/dev/null || die "node died during the checks"
log "all pyhandle interop checks passed"
