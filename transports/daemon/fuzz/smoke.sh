#!/usr/bin/env bash
# Fuzz smoke test of this package's targets: $0 [seconds-per-target] (default 30).
# See .ci/fuzz-smoke.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../../../.ci/fuzz-smoke" "$here" "$@"
