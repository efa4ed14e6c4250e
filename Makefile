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
	@set -e; for d in $(NESTED); do echo "vet: $$d"; (cd $$d && $(GO) vet ./...); done

# The userspace core builds, vets and compiles its tests on every OS it
# supports (the poll fast path where the OS has one, a plain read elsewhere).
CROSS_OS ?= darwin freebsd windows
CROSS_PKGS ?= ./pdu ./scsi ./initiator/...
cross:
	@set -e; for os in $(CROSS_OS); do \
		echo "cross: $$os"; \
		GOOS=$$os $(GO) build $(CROSS_PKGS); \
		GOOS=$$os $(GO) vet $(CROSS_PKGS); \
		for p in $$($(GO) list $(CROSS_PKGS)); do GOOS=$$os $(GO) test -c -o /dev/null $$p; done; \
	done

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
