#!/usr/bin/env bash
# make bench: libiscsi (fio's libiscsi engine) and iscsictl bench against the
# same tgtd LUN on tmpfs, in the same run, alternating. Prints a Markdown table.
# BENCH_TIME (default 8s) and BENCH_REPS (default 3) shorten or lengthen it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# perf counts each initiator's system calls and context switches per I/O.
if ! command -v perf >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq linux-perf
fi
fio=$(bash scripts/fio-libiscsi.sh)
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/iscsictl" ./examples/iscsictl
go run ./internal/testenv/benchrun --fio "$fio" --iscsictl "$bin/iscsictl" \
  --time "${BENCH_TIME:-8s}" --reps "${BENCH_REPS:-3}" ${BENCH_ONLY:+--only "$BENCH_ONLY"}
