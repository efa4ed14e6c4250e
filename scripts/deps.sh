#!/usr/bin/env bash
# Installs what `make test` needs on a fresh Debian machine (CI runs as root).
# Fails loudly instead of letting tests skip.
set -euo pipefail
need=()
command -v tgtd >/dev/null || need+=(tgt)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "deps: need root to install: ${need[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
