//go:build linux

package iscsinl

import (
	"errors"
	"fmt"
	"syscall"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrPermission: the kernel refused with EPERM. NETLINK_ISCSI requires
	// CAP_SYS_ADMIN (netlink_capable in iscsi_if_recv_msg).
	ErrPermission = errors.New("iscsinl: permission denied: need CAP_SYS_ADMIN")
	// ErrKernelUnsupported: socket(AF_NETLINK, ..., NETLINK_ISCSI) failed
	// with EPROTONOSUPPORT, i.e. scsi_transport_iscsi is not in the kernel.
	ErrKernelUnsupported = errors.New("iscsinl: kernel lacks scsi_transport_iscsi (no NETLINK_ISCSI): load it with modprobe iscsi_tcp, or use a kernel with CONFIG_SCSI_ISCSI_ATTRS and CONFIG_ISCSI_TCP")
	// ErrTransportNotLoaded: /sys/class/iscsi_transport/<name>/handle is
	// missing. The error returned is a *TransportNotLoadedError.
	ErrTransportNotLoaded = errors.New("iscsinl: iSCSI transport not loaded")
	// ErrNetNamespace: the kernel's NETLINK_ISCSI socket only exists in the
	// initial network namespace; sending from another one fails with
	// ECONNREFUSED.
	ErrNetNamespace = errors.New("iscsinl: NETLINK_ISCSI is only served in the initial network namespace (run in the host network namespace, e.g. hostNetwork: true)")
	// ErrClosed: the Conn was closed.
	ErrClosed = errors.New("iscsinl: connection closed")
	// ErrEventsLost: the socket receive queue overflowed (ENOBUFS) or a
	// per-connection PDU queue filled up; kernel messages were dropped.
	ErrEventsLost = errors.New("iscsinl: netlink messages were lost (receive queue overflow)")
	// ErrNotOwned: RecvPDU for a session this Conn neither created nor adopted.
	ErrNotOwned = errors.New("iscsinl: session not owned by this connection (create it or call Adopt)")
	// ErrProtocol is matched by every *ProtocolError.
	ErrProtocol = errors.New("iscsinl: protocol error")
)

// TransportNotLoadedError says which transport is missing and which kernel
// module provides it. errors.Is(err, ErrTransportNotLoaded) is true.
type TransportNotLoadedError struct {
	Name   string // transport name, e.g. "tcp"
	Module string // kernel module, e.g. "iscsi_tcp"
	Path   string // the sysfs file that was missing
}

func (e *TransportNotLoadedError) Error() string {
	return fmt.Sprintf("iscsinl: iSCSI transport %q not loaded (%s missing): load kernel module %s (modprobe %s)", e.Name, e.Path, e.Module, e.Module)
}

// Is makes errors.Is(err, ErrTransportNotLoaded) true.
func (e *TransportNotLoadedError) Is(target error) bool { return target == ErrTransportNotLoaded }

// KernelError is a request the kernel refused: either an ISCSI_KEVENT_IF_ERROR
// reply (negative errno in iferror) or a non-zero r.retcode (BIND_CONN,
// START_CONN, SEND_PDU). It unwraps to the syscall.Errno, so
// errors.Is(err, syscall.EINVAL) works; EPERM also matches ErrPermission.
type KernelError struct {
	Op      MsgType
	Errno   syscall.Errno
	Retcode bool // the errno came from r.retcode rather than an IF_ERROR reply
}

func (e *KernelError) Error() string {
	src := "IF_ERROR"
	if e.Retcode {
		src = "retcode"
	}
	s := fmt.Sprintf("iscsinl: %v: kernel %s: %v", e.Op, src, e.Errno)
	if e.Errno == syscall.EPERM {
		s += " (need CAP_SYS_ADMIN)"
	}
	return s
}

// Unwrap returns the errno.
func (e *KernelError) Unwrap() error { return e.Errno }

// Is matches ErrPermission for EPERM.
func (e *KernelError) Is(target error) bool {
	return target == ErrPermission && e.Errno == syscall.EPERM
}

// errnoFromKernel turns a kernel "negative errno" int into an Errno.
func errnoFromKernel(v int32) syscall.Errno {
	if v < 0 {
		return syscall.Errno(-int64(v))
	}
	return syscall.Errno(v)
}

// ProtocolError is a malformed or unexpected message from the kernel.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "iscsinl: protocol error: " + e.Msg }

// Is matches ErrProtocol.
func (e *ProtocolError) Is(target error) bool { return target == ErrProtocol }

func protoErr(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// ConnError is returned by RecvPDU when the kernel reported
// ISCSI_KEVENT_CONN_ERROR for the connection being waited on.
type ConnError struct {
	SID, CID uint32
	Code     ErrCode
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("iscsinl: connection %d:%d failed: %v", e.SID, e.CID, e.Code)
}
