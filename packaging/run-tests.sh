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
# One throwaway PostgreSQL for the whole run (packaging/pg-cluster.sh): the
# PostgreSQL tests make their own databases in it. Without it (not root)
# they skip, or fail under CI=true.
if [ "$(id -u)" = 0 ] && [ -z "${SCRAPYD_TEST_POSTGRES:-}" ]; then
	pgdir=$(mktemp -d /tmp/scrapyd-pg.XXXXXX)
	trap 'packaging/pg-cluster.sh stop "$pgdir"' EXIT
	SCRAPYD_TEST_POSTGRES=$(packaging/pg-cluster.sh start "$pgdir")
	export SCRAPYD_TEST_POSTGRES
fi
go test -count=1 -timeout 40m ./...

# As root: build the .deb, lint it, and install/upgrade/purge it in the
# systemd lab (packaging/test-deb.sh; the lab script sets up its host tools
# and builds its image on a fresh machine). dist/ is emptied first, so that
# the glob names the one .deb just built.
if [ "$(id -u)" = 0 ]; then
	rm -rf dist
	make lint-deb # builds the .deb first
	packaging/test-deb.sh dist/scrapyd_*.deb
	# The daemon sleeping and waking (idle_timeout), and the appliance image
	# booting, in their own lab.
	make image
	IMAGE_ROOT=build/image/rootfs packaging/test-idle.sh dist/scrapyd_*.deb
fi

# The long reliability tests and the bounded fuzzing pass (Makefile).
make test-long
make fuzz FUZZTIME="${FUZZTIME:-8s}"
