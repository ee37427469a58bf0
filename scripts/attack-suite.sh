#!/usr/bin/env bash
# Attack suite: idnode under standing attack on loopback, with legitimate traffic measured.
#
# Starts an authority node (HTTPS with a self-signed end-entity certificate, native UDP/TCP,
# DNS, [rate_limit] on) and a recursive node whose root is the authority, in a temporary
# directory on free 127.0.0.1 ports. Legitimate clients on 127.0.0.1 (`idnode bench` in open
# loop over native UDP, native TCP, DNS UDP, HTTPS and recursive native UDP; an
# administrator writing over native TCP and over HTTPS) run through every phase; the attacks
# come one at a time from other loopback networks (127.0.N.x):
#
#   1a/1b junk datagram floods (native UDP, DNS UDP)
#   2     VERIFY_CHALLENGE (opCode 201) flood, PBKDF2 with 200 000 iterations, index 0
#   3a/3b queries for a ~15 KB record from 254 sources of one /24 (native UDP, DNS UDP)
#   4a/4b challenge-table fill: PO-less resolutions of 0.NA/<prefix> from 256 sources in 64
#         /24s over UDP; ~261 kB unauthenticated creates over TCP
#   5a/5b/5c idle, never-reading and one-byte-every-2-s connections on native TCP, HTTPS and
#         DNS TCP
#   6     recursion fan-out: REC queries (native and DNS) for random non-existent prefixes
#         to the recursive node
#   7a    certified (CT) resolutions over UDP from 64 sources of one /24: every answer would
#         cost an RSA signature (the node signs within handle.signatures_per_second*)
#   7b    OC_SESSION_SETUP floods over TCP from 32 addresses, a new connection each (key
#         agreement, signature and session state each; bounded per address)
#
# One table row per attack: attacker bytes in and out, amplification, legitimate success %
# per front end, the worst legitimate p99, the attacked node's RSS before and after a settle;
# then per-phase detail and PASS/FAIL per target (success >= 99 %, amplification <= 3x for
# the sustained one-network UDP floods, RSS within 10 %, single queries from a fresh network
# still answered over UDP, nodes alive).
#
# Usage: bash scripts/attack-suite.sh [--quick] [--strict] [--only 1a,2,5] [--json FILE]
#                                     [--duration S] [--settle S] [--legit-rate Q] [--keep]
#   --quick   about 2 minutes (CI): 6 s phases, halved attack rates
#   --strict  exit 1 when a target fails (without it the exit status says only whether the
#             suite itself ran)
#   IDNODE_BIN  the binary (default target/release/idnode if present, else target/debug/idnode,
#               built when absent)
#   IDNODE_ATTACK_NEW_KEYS  auto (default: leave out [rate_limit] / recursion.allow when the
#               binary refuses them, with a note), on (never leave out), off (always)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
if [[ -n ${IDNODE_BIN:-} ]]; then
    BIN=$IDNODE_BIN
elif [[ -x $TARGET/release/idnode ]]; then
    BIN=$TARGET/release/idnode
else
    BIN=$TARGET/debug/idnode
    [[ -x $BIN ]] || (cd "$REPO" && cargo build --bin idnode)
fi
[[ -x $BIN ]] || { echo "error: $BIN is not an executable" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
for tool in python3 openssl; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed" >&2; exit 2; }
done
[[ $(uname -s) == Linux ]] || { echo "error: needs Linux (127.0.0.0/8 all local)" >&2; exit 2; }
echo "[attack] binary: $BIN"
exec python3 "$REPO/scripts/attack.py" --bin "$BIN" "$@"
