# Build the binaries and the Debian package. nfpm is a Go tool pinned in
# go.mod, so nothing but Go modules is downloaded.
VERSION ?= 0.1.0
ARCH    ?= $(shell go env GOARCH)
DEB     := dist/scrapyd_$(VERSION)_$(ARCH).deb
GOFLAGS_BUILD := -trimpath -ldflags=-s

.PHONY: build deb lint-deb test-deb clean

build: bin/scrapyd bin/scrapydctl

# Always rebuilt: go build knows what is stale.
bin/scrapyd bin/scrapydctl: FORCE
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o $@ ./cmd/$(notdir $@)

build/%.gz: packaging/man/%
	@mkdir -p build
	gzip -9n <$< >$@

build/changelog.gz: packaging/changelog
	@mkdir -p build
	gzip -9n <$< >$@

deb: build build/scrapyd.8.gz build/scrapydctl.1.gz build/changelog.gz
	@mkdir -p dist
	VERSION=$(VERSION) ARCH=$(ARCH) go tool nfpm package --packager deb --config nfpm.yaml --target $(DEB)

lint-deb: deb
	lintian --fail-on error,warning --info $(DEB)

# apt install/purge in the systemd lab (needs root).
test-deb: deb
	packaging/test-deb.sh $(DEB)

clean:
	rm -rf bin build dist

FORCE:
