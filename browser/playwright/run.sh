#!/bin/sh
# @fidelio/playwright end to end: installs the npm packages (npm ci, package-lock.json), builds
# the package with tsc, builds `fidelio` unless FIDELIO_BIN names one, and runs the examples
# (examples/*.spec.ts) with Playwright's test runner in Debian's Chromium, through lane A and
# lane B. Ends with `playwright-fixture: N passed, M failed`; exit status non-zero on failure.
#
#   browser/playwright/run.sh                    # every example
#   browser/playwright/run.sh -g "backup flags"  # arguments go to `playwright test`
#
# Environment: FIDELIO_BIN (a built fidelio), CARGO_TARGET_DIR (where cargo builds it),
# CHROMIUM_BIN (default /usr/bin/chromium), FIDELIO_VERBOSE=1 (the daemons' logs).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$here"

fail() {
    echo "playwright-fixture: $*" >&2
    echo "playwright-fixture: 0 passed, 1 failed"
    exit 1
}

command -v node >/dev/null 2>&1 || fail "node is not installed (apt-get install nodejs npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "node $(node --version) is too old (>= 20)"
CHROMIUM_BIN=${CHROMIUM_BIN:-/usr/bin/chromium}
export CHROMIUM_BIN
[ -x "$CHROMIUM_BIN" ] || fail "no Chromium at $CHROMIUM_BIN (apt-get install chromium, or set CHROMIUM_BIN)"
# Playwright's own browser downloads are never needed: Debian's Chromium is used.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD

stamp=node_modules/.fidelio-lock-stamp
if ! [ -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
    npm ci --no-audit --no-fund --loglevel=error || fail "npm ci failed"
    cp package-lock.json "$stamp"
fi
npx tsc -p tsconfig.json || fail "tsc failed"

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

FIDELIO_RESULTS=$work/results.json
export FIDELIO_RESULTS
status=0
npx playwright test -c examples/playwright.config.ts "$@" || status=$?

[ -f "$FIDELIO_RESULTS" ] || fail "playwright wrote no results (exit $status)"
counts=$(node -e '
  const stats = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).stats;
  const failed = stats.unexpected + (stats.flaky ?? 0);
  console.log(`${stats.expected} ${failed} ${stats.skipped}`);
' "$FIDELIO_RESULTS")
set -- $counts
passed=$1
failed=$2
skipped=$3
if [ "$skipped" -gt 0 ]; then
    echo "playwright-fixture: $passed passed, $failed failed, $skipped skipped"
else
    echo "playwright-fixture: $passed passed, $failed failed"
fi
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ] || exit 1
