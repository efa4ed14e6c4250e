#!/usr/bin/env bash
# Installs what internal/testenv/vmtest needs to boot a qemu guest with Debian's stock
# kernel: qemu-system-x86_64, busybox-static, xz, and the kernel package that
# linux-image-amd64 depends on, unpacked into a cache folder outside the repo.
#
#   GOSAN_VM_CACHE  cache folder (default /var/cache/gosan-iscsi/kernel)
#
# Layout written: $GOSAN_VM_CACHE/<kernel-version>/{boot,lib/modules} and
# $GOSAN_VM_CACHE/current (one line: the kernel version to boot). The harness
# adds vmlinux and cached initramfs archives next to them. Idempotent: a second
# run with a complete cache touches no network.
set -euo pipefail
cache=${GOSAN_VM_CACHE:-/var/cache/gosan-iscsi/kernel}

apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "vm-deps: need root to install: $*" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "$@"; then
    apt-get update -qq -o DPkg::Lock::Timeout=600
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "$@"
  fi
}

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
# busybox-static (not the dynamic busybox, which it replaces) provides /bin/busybox.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || need+=(busybox-static)
command -v xz >/dev/null || need+=(xz-utils)
if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi

# Kernel: complete if current names a version whose bzImage and modules are there.
if [ -f "$cache/current" ]; then
  ver=$(cat "$cache/current")
  if [ -f "$cache/$ver/boot/vmlinuz-$ver" ] && [ -d "$cache/$ver/lib/modules/$ver/kernel" ]; then
    exit 0
  fi
fi

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
  apt-get update -qq -o DPkg::Lock::Timeout=600
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[ -n "$pkg" ] || { echo "vm-deps: cannot resolve the package linux-image-amd64 depends on" >&2; exit 1; }
ver=${pkg#linux-image-}

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.dl.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"   # apt's sandbox user must be able to write the download
(cd "$tmp" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
deb=$(ls "$tmp"/*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || { echo "vm-deps: apt-get download $pkg produced no .deb" >&2; exit 1; }
dpkg-deb -x "$deb" "$tmp/root"
[ -f "$tmp/root/boot/vmlinuz-$ver" ] || { echo "vm-deps: $deb has no boot/vmlinuz-$ver" >&2; exit 1; }
mkdir -p "$tmp/out/lib"
mv "$tmp/root/boot" "$tmp/out/boot"
mv "$tmp/root/lib/modules" "$tmp/out/lib/modules"
rm -rf "${cache:?}/$ver"
mv "$tmp/out" "$cache/$ver"
printf '%s\n' "$ver" > "$cache/.current.tmp"
mv "$cache/.current.tmp" "$cache/current"
echo "vm-deps: kernel $ver cached in $cache/$ver"
