#!/bin/sh
# The long reliability tests: their output is kept quiet unless they fail,
# then the summary lines (numbers for the record) are printed.
set -eu
cd "$(dirname "$0")/.."
long=$(mktemp)
trap 'rm -f "$long"' EXIT
if ! SCRAPYD_LONG_TESTS=1 go test -count=1 -timeout 20m -run '^TestLong' -v ./appliance/e2e >"$long" 2>&1; then
	cat "$long"
	exit 1
fi
grep -E '^(--- |ok|[[:space:]]+long_test)' "$long" || true
