#!/usr/bin/env bash
# Builds Debian's own fio source package with the libiscsi engine (Debian's
# binary fio lacks it) into a cache outside the repo, and prints the binary's
# path. Used by `make bench` to measure libiscsi in the same run as us.
set -euo pipefail
cache=${GOSAN_CACHE:-/var/cache/gosan-iscsi}/fio
bin=$cache/fio-libiscsi
if [ -x "$bin" ] && "$bin" --enghelp 2>/dev/null | grep -q libiscsi; then echo "$bin"; exit 0; fi
mkdir -p "$cache"
if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  # derive deb-src entries from the machine's own deb entries
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    sed 's/^Types: deb$/Types: deb-src/' "$f" > "/etc/apt/sources.list.d/gosan-src-$(basename "$f")"
  done
  apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
fi
need=()
for p in dpkg-dev build-essential libiscsi-dev libaio-dev pkg-config zlib1g-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
[ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${need[@]}" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get source -qq fio >&2)
src=$(find "$work" -maxdepth 1 -type d -name 'fio-*' | head -1)
(cd "$src" && ./configure --enable-libiscsi >&2 && make -j"$(nproc)" >&2)
"$src/fio" --enghelp | grep -q libiscsi || { echo "fio built without libiscsi" >&2; exit 1; }
cp "$src/fio" "$bin"
echo "$bin"
