#!/bin/sh
# The project's test command (README, .ci/run): installs what the tests need
# when run as root, checks formatting and vet, runs every test (the systemd
# lab tests run when root), builds, lints and tests the .deb in the systemd
# lab (when root), then the bounded fuzzing pass.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
	./packaging/test-deps.sh
fi
unformatted=$(gofmt -l cmd appliance)
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...
go test -count=1 -timeout 40m ./...

# As root: build the .deb, lint it, and install/upgrade/purge it in the
# systemd lab (packaging/test-deb.sh; the lab script sets up its host tools
# and builds its image on a fresh machine). dist/ is emptied first, so that
# the glob names the one .deb just built.
if [ "$(id -u)" = 0 ]; then
	rm -rf dist
	make lint-deb # builds the .deb first
	packaging/test-deb.sh dist/scrapyd_*.deb
fi

# The long tests of reliability: 50 clients scheduling 20,000 jobs, and
# kill -9 of the daemon at seeded random moments (SCRAPYD_FAULT_SEED replays
# a run). Bounded: a few minutes on two cores.
long=$(mktemp)
if ! SCRAPYD_LONG_TESTS=1 go test -count=1 -timeout 20m -run '^TestLong' -v ./appliance/e2e >"$long" 2>&1; then
	cat "$long"
	rm -f "$long"
	exit 1
fi
grep -E '^(--- |ok|[[:space:]]+long_test)' "$long" || true
rm -f "$long"

# A bounded fuzzing pass over the inputs a remote client controls, the
# configuration parser, version ordering and name checks. The corpus in each
# package's testdata/fuzz is replayed by `go test` above on every run.
for target in \
	./appliance/api:FuzzScheduleParams \
	./appliance/api:FuzzCheckUTF8 \
	./appliance/egg:FuzzSettingsModule \
	./appliance/egg:FuzzCompare \
	./appliance/config:FuzzParseINI \
	./appliance/job:FuzzCheckName; do
	go test -run '^$' -fuzz "^${target#*:}\$" -fuzztime "${FUZZTIME:-8s}" "${target%%:*}"
done
