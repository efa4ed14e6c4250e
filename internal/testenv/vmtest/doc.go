//go:build linux

// Package vmtest boots a throw-away qemu guest running Debian's stock kernel
// and runs a static test binary (or a busybox sh script) in it. The machines
// this project is developed and tested on have no SCSI or iSCSI in their own
// kernel; the guest has everything (iscsi_tcp, sd, xfs, dm-multipath, loop,
// LIO) as loadable modules.
//
// # Prerequisites
//
// `bash scripts/vm-deps.sh` (as root, from the repository root; `make test`
// runs it) installs qemu-system-x86, busybox-static and xz-utils, downloads
// the kernel package that linux-image-amd64 depends on and unpacks it into
// $GOSAN_VM_CACHE (default /var/cache/gosan-iscsi/kernel). The harness adds
// to that cache the uncompressed vmlinux (extracted from the bzImage, booted
// directly through PVH: about half the boot time of the bzImage) and gzip'd
// base initramfs archives, one per module list. Anything missing makes
// Run/Start fail with an error wrapping ErrNotInstalled that names the
// command to run.
//
// # The guest
//
// /init (busybox) mounts proc, sysfs, devtmpfs, devpts, tmpfs on /tmp and
// /run, loads the requested modules with insmod in dependency order (resolved
// on the host from each module's .modinfo; the guest has no modprobe, so
// modules the kernel would request at run time are in the sets explicitly),
// mounts configfs when present, brings up lo and eth0 (GuestIP 10.0.2.15/24,
// default route via HostIP 10.0.2.2), prints "vmtest: guest ready", runs the
// payload in /tmp with GOSAN_IN_VM=1 and Config.Env, prints a marker line
// with the exit code and powers off. On a non-zero exit the tail of dmesg
// is printed first. The host's 127.0.0.1:PORT is HostIP:PORT in the guest;
// Config.HostFwd forwards host loopback ports into the guest. The kernel's
// own request_module calls fail (no modprobe), which LIO reports as
// harmless "Unable to load target_core_*" lines. Emulation is
// TCG (about 10x slower than native): timeouts inside guest tests must allow
// for it.
//
// # Guest-test convention
//
// Guest-only tests live in files with the build tag vmguest, named
// TestGuestXxx, and begin with vmtest.RequireGuest(t):
//
//	//go:build vmguest
//
//	func TestGuestAttach(t *testing.T) {
//		vmtest.RequireGuest(t)
//		...
//	}
//
// A host-side test in an untagged file runs them:
//
//	func TestAttach(t *testing.T) {
//		vmtest.RunTestInGuest(t, ".", "^TestGuestAttach$", map[string]string{"PORTAL": ...})
//	}
//
// RunTestInGuest builds the package's test binary with CGO_ENABLED=0 and
// -tags vmguest, boots a guest with the SetISCSI modules and runs it with
// -test.run and -test.v; it fails the host test when the guest exits
// non-zero, when no guest test matched, or when the guest crashed, and logs
// the guest console on failure. So a plain `go test` on the host never
// compiles guest-only tests (they neither pass nor skip silently), and a
// guest-only test run on the host with -tags vmguest fails in RequireGuest.
//
// Background guests (a LIO target for host-side interop tests): Start or
// StartForTest with Config.HostFwd, Guest.WaitFor a line the payload prints
// when ready, dial Guest.HostAddr(guestPort), and Stop (StartForTest stops
// on test cleanup; qemu also dies with the test process).
package vmtest
