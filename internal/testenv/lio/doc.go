//go:build linux

// Package lio is the integration-test harness around LIO, the Linux kernel's
// iSCSI target, running in a throw-away qemu guest with Debian's stock kernel
// (package internal/testenv/vmtest). It is the second, independent target the
// initiator is tested against, next to tgtd (package internal/testenv/tgtd).
//
// Start boots ONE guest that loads the LIO modules, configures every fixture
// target at once through configfs (busybox alone, no targetcli), and forwards
// two free loopback ports into the guest: one to LIO's portal (3260) and one to
// a tiny control service the guest runs, through which Fixture.Checksum asks
// the guest for the SHA-256 of a byte range of a LUN's backing file (the bytes
// LIO actually stored: the ground truth of a write). The guest is ready 4-6 s
// after qemu starts; Close (or the test cleanup of StartFixture) kills qemu
// for sure, and qemu also dies with the test process.
//
// The fixture mirrors tgtd's (internal/testenv/tgtd.Fixture): Plain, MultiLUN (512- and
// 4096-byte blocks), CHAP, MutualCHAP and ACL targets with the same names,
// users and secrets. What differs, because LIO differs:
//
//   - LUNs are numbered from 0 (LUN 0 is a disk; tgtd's LUN 0 is a controller).
//   - CHAP is configured per node ACL (generate_node_acls=0, authentication=1),
//     so the CHAP targets admit one initiator name, Fixture.Initiator; logins
//     with another name fail with an authorization error.
//   - SendTargets lists every target to every initiator and advertises the
//     guest's own address (AdvertisedPortal, 10.0.2.15:3260), which the host
//     cannot reach through the port forward: dial Fixture.Portal instead.
//
// Facts measured on this machine: /work/shared/reference/lio-in-vm.md.
// LIO under TCG emulation manages about 2k IOPS at 4 KiB: fine for
// functional tests, not for performance.
package lio
