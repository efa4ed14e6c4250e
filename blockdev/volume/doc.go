// Package volume is the mount layer and volume lifecycle on top of the
// kernel iSCSI binding: it attaches a LUN (through an [Attacher]), formats
// it only when it is provably blank, mounts it once per node in a global
// directory, bind-mounts it into each consumer, and tears all of that down
// again without logging out sessions that other volumes still use.
//
// The model is the Kubernetes in-tree iscsi volume plugin (kubelet's
// pkg/volume/iscsi) and mount-utils' SafeFormatAndMount, with the problems
// users reported fixed (docs/kubelet.md compares the two row by row):
//
//   - a lock per target IQN, both in-process and across processes (flock on
//     a file under the root directory), around the session work only
//     (attach, device delete, logout), so two volumes on one target never
//     race a login against a logout; and a lock per LUN around the global
//     directory, format and mount, so the LUNs of one target format and
//     mount in parallel (the LUN lock is always taken first);
//   - a device is formatted only if neither this package (filesystem magics,
//     MBR, GPT at 512 and 4096 byte sectors, LVM2, swap, LUKS, ...) nor
//     `blkid -p` finds any signature; a read-only volume is never formatted;
//   - an existing filesystem is checked with `fsck -a` before a read-write
//     mount, as mount-utils does: corrected errors are logged, exit 4 and
//     above refuse the mount ([FsckError]);
//   - a session is logged out only when the Attacher reports no other device
//     on it and no device of it is mounted anywhere on the node;
//   - every step is idempotent and may be repeated after a crash at any
//     point; the attach record (iscsi.json, without secrets) is written
//     atomically before the first attach, so Unstage can always clean up;
//   - as kubelet, Stage first runs a SendTargets discovery on each of the
//     volume's portals (with discovery CHAP when chapAuthDiscovery asks for
//     it) when the Attacher is a [Discoverer], and logs in on the portals
//     the target advertises as well as on the volume's own;
//   - secrets (CHAP) are never serialized, logged or printed;
//   - Unstage also reads the iscsi.json kubelet's in-tree plugin writes, and
//     without any iscsi.json takes the portal, target, LUN and iface from
//     the path as kubelet does, so volumes the in-tree plugin staged can be
//     unstaged here (a migration).
//
// Layout under the root directory (kubelet's: the root is kubelet's
// plugins/kubernetes.io directory):
//
//	<root>/iscsi/iface-<iface>/<portal>-<iqn>-lun-<n>/                 global mount point
//	<root>/iscsi/iface-<iface>/<portal>-<iqn>-lun-<n>/iscsi.json       attach record (under the mount)
//	<root>/iscsi/volumeDevices/iface-<iface>/<portal>-<iqn>-lun-<n>/   block volume (record only)
//	<root>/iscsi/.locks/<iqn>.lock                           per-target lock file
//	<root>/iscsi/.locks/<iqn>-lun-<n>.lock                   per-LUN lock file
//	<root>/iscsi/.staged/<sha256(volume id)>.json             staging record (StageAt)
//
// StageAt, PublishAt and UnstageAt run the same lifecycle for a caller
// that names the staging path and a volume id (a CSI node plugin): the
// global directory is bind-mounted at the staging path, and the staging
// record maps the volume id and staging path to the attach record.
//
// [KernelAttacher] makes the kernel binding (package blockdev) an
// [Attacher]; tests use a fake backed by loop devices and need no iSCSI
// target or kernel binding.
//
// The package builds on every OS: off Linux the volume spec still
// validates and normalizes, and NewManager and the Manager's methods return
// an error matching blockdev.ErrNotSupported.
package volume
