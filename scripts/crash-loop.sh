#!/usr/bin/env bash
# Crash loop: acknowledged writes survive SIGKILL, on a primary and on a follower.
#
#   primary   REST writes (PUT, plain HTTP from loopback) at a steady rate from 4 writers; the
#             node is SIGKILLed at a random moment, restarted, and every acknowledged write
#             since the last check (plus a sample of older ones; all of them at the end) is
#             read back and compared value by value with what was sent.
#   follower  a primary homing 88.100 takes the writes; its follower ([[sync.follow]]) is
#             SIGKILLed at random moments while it applies the change feed, restarted, and
#             must converge: every acknowledged record on it with the same values, and the
#             two /sync/digest answers equal (records and sha256; "seq" is each node's own).
#
# Prints cycles, acknowledged writes, writes in flight at a kill (either outcome allowed) and
# writes lost per loop. Exit status 1 if an acknowledged write was lost (or the follower's
# digest differs at the end), 2 if the loop could not run.
#
# Usage: bash scripts/crash-loop.sh [--cycles N] [--rate W] [--only primary|follower]
#                                   [--seed S] [--keep]
#   --cycles N  kills per loop (default 200; CI runs 10)
#   --rate W    acknowledged-write target, writes per second (default 100)
#   IDNODE_BIN  the binary (default target/release/idnode if present, else target/debug/idnode,
#               built when absent)
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
command -v python3 >/dev/null || { echo "error: python3 is needed" >&2; exit 2; }
echo "[crash] binary: $BIN"
exec python3 "$REPO/scripts/crash.py" --bin "$BIN" "$@"
