# booture: make build | test | demo | bench | fuzz | proto | deb | clean
GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/booture/booture/internal/daemon.Version=$(VERSION) -X main.version=$(VERSION)
# Static binaries: no C library to install or to map into memory (1.5 MB
# of each daemon's RSS), the same on a PC as cross-compiled for a Pi.
export CGO_ENABLED = 0

.PHONY: all build test demo bench fuzz proto deps clean cross deb

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...
	$(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/booture-plugin-staticsite ./examples/staticsite

# Installs the Debian packages the lab tests and the demo use (root).
deps:
	scripts/install-deps.sh

# The whole test suite. As root, the lab tests run real bootures in network
# namespaces; as another user they are skipped with a message.
test: deps
	$(GO) vet ./...
	$(GO) test -timeout 30m ./...

# A demo mesh of three bootures in network namespaces, with a member (root).
demo: deps
	$(GO) run ./examples/lab

bench:
	scripts/install-deps.sh --bench
	bench/run.sh

# Runs every fuzz target for FUZZTIME each.
FUZZTIME ?= 20s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

proto:
	$(GO) generate ./plugins/proto/...

cross:
	GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/linux-arm64/ ./cmd/...
	GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/linux-arm/ ./cmd/...

# Debian packages for DEB_ARCHS in $(BIN)/deb (dpkg-deb; see packaging/deb).
DEB_ARCHS ?= amd64 arm64 armhf
deb:
	GO=$(GO) VERSION=$(VERSION) packaging/deb/build.sh $(BIN)/deb $(DEB_ARCHS)

clean:
	rm -rf $(BIN)
