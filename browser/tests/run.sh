#!/bin/sh
# Lane A end-to-end tests in headless Debian Chromium: installs the npm packages from
# package-lock.json (npm ci), builds `fidelio` unless FIDELIO_BIN names one, runs the node:test
# files, and ends with `browser-chromium: N passed, M failed`. Exit status non-zero on any failure.
#
#   browser/tests/run.sh                  # everything
#   browser/tests/run.sh lane-a.test.mjs  # some files
#
# Environment: FIDELIO_BIN (a built fidelio), CARGO_TARGET_DIR (where cargo builds it),
# CHROMIUM_BIN (default /usr/bin/chromium), FIDELIO_TEST_VERBOSE=1 (the daemon's log).
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

tap=$work/results.tap
status=0
# spec for people, TAP for the counts; one file at a time (each starts its own daemon and browser).
# shellcheck disable=SC2086
node --test --test-concurrency=1 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    $files || status=$?

passed=$(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)
failed=$(sed -n 's/^# fail \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)
cancelled=$(sed -n 's/^# cancelled \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)
passed=${passed:-0}
failed=$(( ${failed:-0} + ${cancelled:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1
fi
if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
    failed=1
fi
echo "browser-chromium: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
