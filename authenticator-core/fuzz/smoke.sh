#!/usr/bin/env bash
# Fuzz smoke test: runs every cargo-fuzz target of authenticator-core for N seconds each
# (N = $1, default 30) and exits non-zero if any target crashes, leaks, times out or runs out
# of memory. Needs the nightly toolchain (libFuzzer's sanitizer flags); installs cargo-fuzz
# if it is missing.
#
#   authenticator-core/fuzz/smoke.sh        # 30 s per target
#   authenticator-core/fuzz/smoke.sh 300    # 5 min per target
#
# Seeds are read from fuzz/seeds/<target>/ (checked in, see make_seeds.py); what the fuzzer
# learns goes to fuzz/corpus/<target>/ (git-ignored scratch) and crashing inputs to
# fuzz/artifacts/<target>/.
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [seconds-per-target]" >&2
    exit 2
fi

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
core_dir="$(dirname "$fuzz_dir")"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "error: the '$toolchain' toolchain is needed (set FUZZ_TOOLCHAIN to use another)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz..."
    cargo install cargo-fuzz --locked
fi

cd "$core_dir"
targets=$(cargo +"$toolchain" fuzz list)
status=0
for target in $targets; do
    corpus="$fuzz_dir/corpus/$target"
    seeds="$fuzz_dir/seeds/$target"
    mkdir -p "$corpus"
    # A target's own dictionary (<target>.dict) when it has one, else the CTAP2 one.
    dict="$fuzz_dir/$target.dict"
    [ -f "$dict" ] || dict="$fuzz_dir/ctap2.dict"
    args=("-max_total_time=$seconds" "-timeout=10" "-rss_limit_mb=2048" "-max_len=8192"
          "-dict=$dict" "-print_final_stats=1")
    echo "=== fuzzing $target for ${seconds}s"
    # --debug-assertions: overflow checks and debug_assert! are on, so arithmetic
    # overflow in the core is a crash too. New inputs go to the first (scratch) corpus dir.
    log="$fuzz_dir/artifacts/$target.log"
    mkdir -p "$fuzz_dir/artifacts"
    # The fuzzer's progress lines go to a log; the summary (or, on failure, the end of the
    # log) is printed.
    if cargo +"$toolchain" fuzz run --debug-assertions "$target" "$corpus" "$seeds" \
        -- "${args[@]}" >"$log" 2>&1; then
        grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
    else
        tail -n 60 "$log" >&2
        echo "!!! $target failed; crashing inputs are in $fuzz_dir/artifacts/$target/" >&2
        status=1
    fi
done
if [ "$status" -eq 0 ]; then
    echo "fuzz smoke: all targets ran ${seconds}s without a crash"
fi
exit "$status"
