#!/usr/bin/env bash
# Installs what `make test` needs on a fresh Debian machine (CI runs as root).
# Fails loudly instead of letting tests skip. Idempotent: installs only what
# is missing, runs apt-get update at most once.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
need=()

# need PKG CMD...: queue Debian package PKG unless every CMD is on PATH.
need() {
  local pkg=$1 cmd; shift
  for cmd in "$@"; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
      case " ${need[*]-} " in *" $pkg "*) ;; *) need+=("$pkg") ;; esac
      return
    fi
  done
}

need tgt tgtd tgtadm   # internal/testenv/tgtd: userspace iSCSI target for integration tests
need iproute2 ip       # internal/testenv/tgtd: StartInNetns (netns + veth link cuts)
need e2fsprogs mkfs.ext4 mkfs.ext3 debugfs e2fsck        # blockdev/volume: format and detection tests
need xfsprogs mkfs.xfs
need btrfs-progs mkfs.btrfs               # blockdev/volume: any fsType with a mkfs.<fsType>
need dosfstools mkfs.vfat
need fdisk sfdisk                         # blockdev/volume: partition-table refusal tests
need gdisk sgdisk
need util-linux blkid mkswap fsck            # fsck -a before a read-write mount
need dmsetup dmsetup                     # blockdev guest tests: a dm-multipath map over two paths
need multipath-tools multipathd multipath # blockdev guest tests: multipathd builds the map, multipath -f removes it

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "deps: need root to install: ${need[*]}" >&2; exit 1; fi
  # Wait for another apt (a package timer, a parallel job) instead of failing.
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${need[@]}"
fi
bash "$(dirname "$0")/vm-deps.sh"   # internal/testenv/vmtest: qemu, busybox-static, Debian kernel (cached)
