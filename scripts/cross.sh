#!/usr/bin/env bash
# Builds and vets every package for darwin, freebsd and windows, and compiles
# the tests of the portable packages there (issue 10: userspace I/O is not
# Linux-only). blockdev and blockdev/volume build everywhere but answer
# "not supported on this OS" off Linux; their tests need Linux and are only
# vetted here.
set -euo pipefail
cd "$(dirname "$0")/.."
portable=(. ./pdu/... ./scsi/... ./initiator/... ./internal/login/... ./internal/portal/...)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for os in darwin freebsd windows; do
  echo "cross: GOOS=$os build, vet, test compile"
  GOOS=$os go build ./...
  GOOS=$os go vet ./...
  GOOS=$os go test -c -o "$out" "${portable[@]}" >/dev/null
done
