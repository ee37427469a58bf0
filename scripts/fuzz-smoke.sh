#!/usr/bin/env bash
# Fuzz smoke test: run every cargo-fuzz target in fuzz/ for a few seconds, starting from its
# checked-in seeds (fuzz/seeds/<target>), and fail if any target crashes. Meant for CI: with the
# default 12 seconds the nine targets run for about two minutes in all (plus the first build).
#
#   scripts/fuzz-smoke.sh [SECONDS]          # default 12 seconds per target
#   FUZZ_TARGETS="message_decode rest_json" scripts/fuzz-smoke.sh 30
#
# Works on a stable toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...)
# to rustc, which stable rustc accepts when RUSTC_BOOTSTRAP=1 is set, as this script does for
# its own cargo invocations. FUZZ_TOOLCHAIN=nightly runs `cargo +nightly fuzz` instead.
# FUZZ_SANITIZER (address by default; none is faster) is passed to cargo fuzz.
#
# Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when it is missing. Builds into
# fuzz/target; the grown corpus goes to fuzz/corpus/<target> and crash inputs to
# fuzz/artifacts/<target>/, run logs to fuzz/artifacts/<target>.log (all git-ignored). Exit status: 0 when no target crashed,
# 1 when one did (each crash input is printed in hex), 2 on a setup or build failure.
set -uo pipefail

secs="${1:-${FUZZ_SECONDS:-12}}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz" || exit 2

export RUSTC_BOOTSTRAP=1
cargo_cmd=(cargo)
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    cargo_cmd=(cargo "+$FUZZ_TOOLCHAIN")
fi
sanitizer="${FUZZ_SANITIZER:-address}"

if ! "${cargo_cmd[@]}" fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 2
fi

if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <("${cargo_cmd[@]}" fuzz list)
fi
if [ "${#targets[@]}" -eq 0 ]; then
    echo "no fuzz targets found" >&2
    exit 2
fi

echo "==> building ${#targets[@]} fuzz targets (sanitizer: $sanitizer)"
for t in "${targets[@]}"; do
    "${cargo_cmd[@]}" fuzz build --sanitizer "$sanitizer" "$t" || exit 2
done

failed=()
crashes=()
mkdir -p artifacts
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    log="artifacts/$t.log"
    echo "==> $t: ${secs}s"
    start=$(date +%s)
    # -timeout: one input taking over 10 s counts as a hang (a crash); -rss_limit_mb: libFuzzer's
    # default 2 GB limit, spelled out.
    if "${cargo_cmd[@]}" fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        echo "    ok after $(($(date +%s) - start))s: $(grep -E '^#[0-9]+.*DONE' "$log" | tail -1)"
    else
        echo "    FAILED after $(($(date +%s) - start))s (log: fuzz/$log)"
        grep -E -A12 "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$log" | head -40
        failed+=("$t")
        # The input libFuzzer saved for this crash (older artifacts are left alone).
        while read -r f; do
            crashes+=("$t $f")
        done < <(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "==> crashes in: ${failed[*]}"
    for c in "${crashes[@]}"; do
        t="${c%% *}"
        f="${c#* }"
        [ -f "$f" ] || continue
        echo "--- $t: $f ($(wc -c <"$f") bytes; hex, at most the first 4096)"
        head -c 4096 "$f" | od -An -v -tx1 | tr -d ' \n' | fold -w 128
        echo
        echo "    reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t $f)"
    done
    exit 1
fi
echo "==> all ${#targets[@]} targets ran ${secs}s without a crash"
