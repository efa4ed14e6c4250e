# gosan/iscsi. `make demo` runs the quick start on an in-process target;
# `make test` installs what the tests need (as root on Debian) and runs all of them.
GO ?= go
FUZZTIME ?= 10s

.PHONY: demo test deps check cross unit csi fuzz wirecheck bench

# Nested modules (own go.mod): vetted and tested like the root module.
NESTED ?= examples/csi

demo:
	$(GO) run ./examples/quickstart

deps:
	bash scripts/deps.sh

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt -l lists:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags vmguest ./...
	$(GO) vet -tags wirecheck ./initiator
	@set -e; for d in $(NESTED); do echo "vet: $$d"; (cd $$d && $(GO) vet ./... && $(GO) vet -tags vmguest ./...); done

# Every package builds and vets on darwin, freebsd and windows (blockdev and
# blockdev/volume answer "not supported" there), and the portable packages'
# tests compile there (the poll fast path where the OS has one, a plain
# read elsewhere).
cross:
	bash scripts/cross.sh

unit: csi
	$(GO) test -race -count=1 -timeout 30m ./...

# The CSI node plugin (examples/csi, a nested module): unit tests, then
# csi-sanity and the kubelet-less harness in a qemu guest.
csi:
	@set -e; for d in $(NESTED); do echo "test: $$d"; (cd $$d && $(GO) test -race -count=1 -timeout 20m ./...); done

fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

# An independent decoder (tshark) checks one captured run against tgtd.
wirecheck:
	bash scripts/wirecheck.sh

test: deps check cross unit fuzz wirecheck

bench:
	bash scripts/bench.sh
