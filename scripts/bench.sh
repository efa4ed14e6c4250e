#!/usr/bin/env bash
# make bench: libiscsi (fio's libiscsi engine) and iscsictl bench against the
# same tgtd LUN on tmpfs, in the same run, alternating. Prints a Markdown table.
# BENCH_TIME (default 8s) and BENCH_REPS (default 3) shorten or lengthen it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
fio=$(bash scripts/fio-libiscsi.sh)
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/iscsictl" ./examples/iscsictl
go run ./internal/testenv/benchrun --fio "$fio" --iscsictl "$bin/iscsictl" \
  --time "${BENCH_TIME:-8s}" --reps "${BENCH_REPS:-3}" ${BENCH_ONLY:+--only "$BENCH_ONLY"}
