#!/bin/sh
# The project's test command (README, .ci/run): installs what the tests need
# when run as root, checks formatting and vet, runs every test (the systemd
# lab and .deb tests run when root), then the bounded fuzzing pass.
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
