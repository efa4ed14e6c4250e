//go:build linux

// Package iscsinl talks to the Linux kernel's iSCSI transport class
// (scsi_transport_iscsi) over NETLINK_ISCSI, the interface iscsid uses:
// create sessions and connections, bind a connected TCP socket to a
// connection, run login over SEND_PDU / RECV_PDU, set negotiated
// parameters, start, stop and destroy.
//
// Wire format: a netlink message is a 16-byte nlmsghdr followed by the
// 56-byte struct iscsi_uevent (type @0, iferror @4, transport_handle @8,
// union u @16 for requests, union r @40 for replies and events) and an
// optional payload. All integers are in host byte order. The kernel answers
// every request with a unicast copy of the uevent under the request's
// nlmsg_type (seq and pid are 0); on failure ev.type is ISCSI_KEVENT_IF_ERROR
// and iferror a negative errno. Events (RECV_PDU, CONN_ERROR,
// DESTROY_SESSION, ...) are multicast to group ISCSI_NL_GRP_ISCSID with
// nlmsg_type 0.
//
// Requirements: CAP_SYS_ADMIN, the initial network namespace, and the
// modules scsi_transport_iscsi and iscsi_tcp (modprobe iscsi_tcp). Only one
// process per host should manage iSCSI sessions: a running iscsid sees the
// same events and the sessions in sysfs.
//
// Conn is modelled on github.com/mdlayher/netlink's Conn but written with
// golang.org/x/sys/unix only; it never fails on events for sessions it does
// not own (they go to an optional handler or are dropped).
package iscsinl
