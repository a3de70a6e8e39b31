# Build the binaries and the Debian package. nfpm is a Go tool pinned in
# go.mod, so nothing but Go modules is downloaded.
VERSION ?= 0.1.0
ARCH    ?= $(shell go env GOARCH)
DEB     := dist/scrapyd_$(VERSION)_$(ARCH).deb
GOFLAGS_BUILD := -trimpath -ldflags=-s
# make install copies both binaries to $(DESTDIR)$(PREFIX)/bin.
PREFIX  ?= /usr/local

.PHONY: build install deb lint-deb test-deb image test-long fuzz clean

build: bin/scrapyd bin/scrapydctl

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 bin/scrapyd bin/scrapydctl $(DESTDIR)$(PREFIX)/bin/

# Always rebuilt: go build knows what is stale.
bin/scrapyd bin/scrapydctl: FORCE
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o $@ ./cmd/$(notdir $@)

build/%.gz: packaging/man/%
	@mkdir -p build
	gzip -9n <$< >$@

build/changelog.gz: packaging/changelog
	@mkdir -p build
	gzip -9n <$< >$@

build/cluster.md.gz: packaging/cluster.md
	@mkdir -p build
	gzip -9n <$< >$@

deb: build build/scrapyd.8.gz build/scrapydctl.1.gz build/changelog.gz build/cluster.md.gz
	@mkdir -p dist
	VERSION=$(VERSION) ARCH=$(ARCH) go tool nfpm package --packager deb --config nfpm.yaml --target $(DEB)

lint-deb: deb
	lintian --fail-on error,warning --info $(DEB)

# apt install/purge in the systemd lab (needs root).
test-deb: deb
	packaging/test-deb.sh $(DEB)

# The appliance image (needs root): Debian 12 with the package installed and
# its sockets enabled, bootable in systemd-nspawn (build/image/rootfs) and as a
# tarball (build/image/scrapyd-appliance.tar.zst). README: "The appliance image".
image: deb
	packaging/make-image.sh $(DEB) build/image

# The long reliability tests (issue 9): 50 clients scheduling 20,000 jobs,
# and kill -9 of the daemon at seeded random moments (SCRAPYD_FAULT_SEED
# replays a run). Bounded: a few minutes on two cores, 20 at most.
test-long:
	packaging/test-long.sh

# A bounded fuzzing pass (FUZZTIME per target) over the inputs a remote
# client controls, the configuration parser, version ordering and name
# checks. Each package's testdata/fuzz corpus is replayed by `go test`.
FUZZTIME ?= 8s
FUZZ_TARGETS := ./appliance/api:FuzzScheduleParams ./appliance/api:FuzzCheckUTF8 \
	./appliance/egg:FuzzSettingsModule ./appliance/egg:FuzzCompare \
	./appliance/config:FuzzParseINI ./appliance/job:FuzzCheckName
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		go test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

clean:
	rm -rf bin build dist

FORCE:
