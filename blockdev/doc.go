// Package blockdev is the kernel binding: it hands iSCSI sessions to the
// Linux kernel's iscsi_tcp over NETLINK_ISCSI exactly as iscsid does, scans
// one LUN through sysfs and gives the caller /dev/sdX; it detaches cleanly
// and, run as a daemon, recovers failed connections. The mount layer and
// the volume lifecycle are in blockdev/volume, which builds on this package
// (volume.KernelAttacher); this package does not import it.
//
// # Attach
//
// [Kernel.Attach] connects a TCP socket from userspace (SO_BINDTODEVICE
// when Spec.NetDev is set, TCP_NODELAY), then CREATE_SESSION,
// CREATE_CONN, BIND_CONN with the socket, SET_PARAM for the fixed
// parameters, the login (internal/login, the same engine as the userspace
// initiator) over SEND_PDU/RECV_PDU, SET_PARAM for the negotiated values
// (booleans "0"/"1", markers off, EXP_STATSN = last login StatSN + 1),
// START_CONN, writes "0 0 <lun>" to /sys/class/scsi_host/host<N>/scan
// (never a wildcard scan) and polls sysfs, bounded by ctx and
// Timeouts.Device, until the block device and its devtmpfs node exist. A
// second LUN on a target that already has a session reuses it: sessions
// are found in sysfs by target name, the connection's persistent
// address/port and the iface name, so sessions created by an earlier
// process are found too. Any failure destroys what the call created: no
// session is left in sysfs.
//
// Decisions:
//   - ISID: 00 02 3D followed by the kernel session id (iscsid's choice), so
//     it is unique per host and stable across reconnects.
//   - TSIH 0 on every (re)login, as iscsid: the same ISID makes the target
//     reinstate the session.
//   - CHAP passwords are never handed to the kernel (it only stores them to
//     show them in sysfs); CHAP user names are. A Supervisor can therefore
//     reconnect CHAP sessions only with credentials it got from an Attach
//     in this process or from Options.Credentials.
//   - The kernel holds its own reference to the bound socket
//     (sockfd_lookup in iscsi_sw_tcp_conn_bind, released when the
//     connection is released), so a session outlives the process that made
//     it; this package keeps its own descriptor until the connection is
//     stopped or the Kernel is closed.
//   - The kernel assigns ITT and CmdSN of every PDU sent with SEND_PDU;
//     responses are given back to the login engine with the ITT it used.
//
// # Detach
//
// [Kernel.DeleteDevice] flushes (BLKFLSBUF) and deletes
// (/sys/block/<sd>/device/delete) one device; [Kernel.Detach] does that and
// logs out when the session has no device left; [Kernel.LogoutSession]
// sends UNBIND_SESSION, a Logout Request over SEND_PDU (waiting up to
// Timeouts.Logout for the response), STOP_CONN(term), DESTROY_CONN,
// DESTROY_SESSION. All are idempotent and work on sessions another process
// created, and all run under the per-session lock Attach takes, so no
// sysfs scan or delete of this package races another call for the same
// session (the raw sysfs writes are not exported: [Sysfs] only reads).
//
// # Recovery
//
// [Kernel.Supervise] handles ISCSI_KEVENT_CONN_ERROR like iscsid:
// STOP_CONN(recover), a new socket bound to the same session, login again,
// START_CONN; the block device stays and queued I/O resumes. It first
// adopts the sessions an earlier process left in sysfs, so a restarted
// daemon keeps them alive. [Kernel.ConnStats] reads the kernel's counters
// of a session's connection (ISCSI_UEVENT_GET_STATS) for monitoring.
//
// # Host requirements
//
// Linux with the modules iscsi_tcp, libiscsi_tcp, libiscsi,
// scsi_transport_iscsi (modprobe iscsi_tcp), sd_mod for disks, crc32c
// (iscsi_tcp allocates a crc32c transform for each connection); the
// process needs CAP_SYS_ADMIN, must run in the initial network namespace
// (NETLINK_ISCSI is not namespaced; hostNetwork in Kubernetes) and must be
// the only iSCSI manager on the host (no iscsid: Open fails with
// ErrOtherDaemon). Device nodes come from devtmpfs; udev is not needed.
//
// The package builds on every OS so that programs using it (and the
// userspace initiator, which works everywhere) compile anywhere; off Linux
// Open and every Kernel method return ErrNotSupported.
package blockdev
