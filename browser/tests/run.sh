#!/bin/sh
# The browser lanes end to end: lane A (extension) and lane B (injected shim) in headless Debian
# Chromium, lane B in headless Debian Firefox ESR (puppeteer-core over WebDriver BiDi). Installs
# the npm packages from package-lock.json (npm ci), builds `fidelio` unless FIDELIO_BIN names one,
# runs the node:test files (firefox-*.test.mjs in Firefox, the others in Chromium), and ends with
# `browser-chromium: N passed, M failed` and `browser-firefox: N passed, M failed`. Exit status
# non-zero on any failure.
#
#   browser/tests/run.sh                  # everything
#   browser/tests/run.sh lane-a.test.mjs  # some files
#
# Environment: FIDELIO_BIN (a built fidelio), CARGO_TARGET_DIR (where cargo builds it),
# CHROMIUM_BIN (default /usr/bin/chromium), FIREFOX_BIN (default /usr/bin/firefox-esr; installed
# with apt-get when missing and running as root), FIDELIO_TEST_VERBOSE=1 (the daemon's log),
# FIDELIO_BENCH=N (bench.mjs's rounds when run here as a smoke test, default 5; 0 skips it; it
# prints its table and counts as one more Chromium test).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$here"

fail() {
    echo "browser-chromium: $*" >&2
    echo "browser-chromium: 0 passed, 1 failed"
    exit 1
}

command -v node >/dev/null 2>&1 || fail "node is not installed (apt-get install nodejs npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "node $(node --version) is too old: @simplewebauthn/server 14 needs node >= 20"
chromium=${CHROMIUM_BIN:-/usr/bin/chromium}
[ -x "$chromium" ] || fail "no Chromium at $chromium (apt-get install chromium, or set CHROMIUM_BIN)"
firefox=${FIREFOX_BIN:-/usr/bin/firefox-esr}
if ! [ -x "$firefox" ] && [ -z "${FIREFOX_BIN:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "run.sh: installing firefox-esr for lane B in Firefox" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq firefox-esr; } >&2 || true
fi

# npm ci only when the lock file changed since the last install.
stamp=node_modules/.fidelio-lock-stamp
if ! [ -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
    npm ci --no-audit --no-fund --loglevel=error || fail "npm ci failed"
    cp package-lock.json "$stamp"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "${FIDELIO_BIN:-}" ]; then
    (cd "$repo" && cargo build --quiet -p fidelio-cli) || fail "cargo build -p fidelio-cli failed"
    target=${CARGO_TARGET_DIR:-$repo/target}
    # A private copy: another build sharing the target directory may relink it meanwhile.
    cp "$target/debug/fidelio" "$work/fidelio" || fail "no fidelio binary in $target/debug"
    FIDELIO_BIN=$work/fidelio
    export FIDELIO_BIN
fi
[ -x "$FIDELIO_BIN" ] || fail "no fidelio binary at $FIDELIO_BIN"
"$FIDELIO_BIN" serve --help | grep -q -- '--browser' || fail "$FIDELIO_BIN has no browser gateway (serve --browser)"

if [ "$#" -gt 0 ]; then
    files="$*"
else
    files=$(ls ./*.test.mjs)
fi
chromium_files=""
firefox_files=""
for file in $files; do
    case "$(basename "$file")" in
        firefox-*) firefox_files="$firefox_files $file" ;;
        *) chromium_files="$chromium_files $file" ;;
    esac
done

# Runs one group of files; sets $passed and $failed. spec for people, TAP for the counts; one file
# at a time (each starts its own daemons and browser).
run_group() {
    tap=$1
    shift
    group_status=0
    # shellcheck disable=SC2068
    node --test --test-concurrency=1 \
        --test-reporter=spec --test-reporter-destination=stdout \
        --test-reporter=tap --test-reporter-destination="$tap" \
        $@ || group_status=$?
    passed=$(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)
    failed=$(sed -n 's/^# fail \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)
    cancelled=$(sed -n 's/^# cancelled \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)
    # Skipped tests (opt-in slow ones) are neither passed nor failed, and said so.
    skipped=$(sed -n 's/^# skipped \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)
    skipped=${skipped:-0}
    passed=${passed:-0}
    failed=$(( ${failed:-0} + ${cancelled:-0} ))
    if [ "$group_status" -ne 0 ] && [ "$failed" -eq 0 ]; then
        failed=1
    fi
    if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
        failed=1
    fi
}

status=0
chromium_line=""
firefox_line=""
if [ -n "$chromium_files" ]; then
    run_group "$work/chromium.tap" $chromium_files
    # The benchmark as a smoke test (all lanes answer, the figures print) with the binary under
    # test — a debug build in CI, so its figures are not the ones to quote (docs/browser.md).
    bench_rounds=${FIDELIO_BENCH:-5}
    if [ "$#" -eq 0 ] && [ "$bench_rounds" -gt 0 ]; then
        if node bench.mjs --n "$bench_rounds" --warmup 1 --fidelio "$FIDELIO_BIN"; then
            passed=$((passed + 1))
        else
            echo "bench.mjs failed" >&2
            failed=$((failed + 1))
        fi
    fi
    chromium_line="browser-chromium: $passed passed, $failed failed, $skipped skipped (not run)"
    [ "$failed" -eq 0 ] || status=1
fi
if [ -n "$firefox_files" ]; then
    if [ -x "$firefox" ]; then
        FIREFOX_BIN=$firefox
        export FIREFOX_BIN
        run_group "$work/firefox.tap" $firefox_files
        firefox_line="browser-firefox: $passed passed, $failed failed, $skipped skipped (not run)"
    else
        echo "browser-firefox: no Firefox at $firefox (apt-get install firefox-esr, or set FIREFOX_BIN)" >&2
        firefox_line="browser-firefox: 0 passed, 1 failed"
        failed=1
    fi
    [ "$failed" -eq 0 ] || status=1
fi
[ -z "$chromium_line" ] || echo "$chromium_line"
[ -z "$firefox_line" ] || echo "$firefox_line"
exit "$status"
