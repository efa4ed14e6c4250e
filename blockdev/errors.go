package blockdev

import (
	"errors"
	"fmt"
)

// Sentinel errors; match with errors.Is.
var (
	// ErrPermission: the process lacks CAP_SYS_ADMIN (the kernel's
	// NETLINK_ISCSI handler and the sysfs scan/delete files need it).
	ErrPermission = errors.New("blockdev: need CAP_SYS_ADMIN (run as root)")
	// ErrModuleNotLoaded: iscsi_tcp (and with it scsi_transport_iscsi) is
	// not loaded: run `modprobe iscsi_tcp`.
	ErrModuleNotLoaded = errors.New("blockdev: kernel module iscsi_tcp not loaded (modprobe iscsi_tcp)")
	// ErrOtherDaemon: another process (usually iscsid) listens to the
	// kernel's iSCSI netlink group. Two managers of the same sessions
	// fight over recovery and logout; stop iscsid (systemctl stop
	// iscsid.socket iscsid) or set Options.AllowOtherDaemon.
	ErrOtherDaemon = errors.New("blockdev: another iSCSI daemon (iscsid?) listens to NETLINK_ISCSI")
	// ErrUnreachable: the TCP connection to the portal failed.
	ErrUnreachable = errors.New("blockdev: portal unreachable")
	// ErrLogin: any other login failure (see the wrapped error).
	ErrLogin = errors.New("blockdev: login failed")
	// ErrNoDevice: the LUN's block device did not appear before the
	// deadline (no such LUN, or the target did not answer the scan).
	ErrNoDevice = errors.New("blockdev: block device did not appear")
	// ErrNoSession: no such session in sysfs.
	ErrNoSession = errors.New("blockdev: no such iSCSI session")
	// ErrNotSupported is returned by every operation of this package on an
	// operating system other than Linux: the kernel binding drives Linux's
	// iscsi_tcp over NETLINK_ISCSI and sysfs. (The userspace initiator,
	// package initiator, works everywhere.)
	ErrNotSupported = errors.New("blockdev: the kernel iSCSI binding is not supported on this OS (Linux only)")
	// ErrClosed: the Kernel was closed.
	ErrClosed = errors.New("blockdev: closed")
)

// AttachError says which step of Attach failed. errors.Is matches the
// sentinels above (ErrUnreachable, ErrLogin, ErrNoDevice, ErrPermission,
// ErrModuleNotLoaded) and, through the wrapped error, the login failures
// of package iscsi (iscsi.ErrAuthentication, iscsi.ErrAuthorization,
// iscsi.ErrTargetNotFound, iscsi.ErrMutualAuth, *iscsi.LoginError, ...),
// the same values the userspace initiator returns.
type AttachError struct {
	Step       string // "connect", "create session", "bind", "set param", "login", "start", "scan"
	Portal     string
	TargetName string
	Err        error
}

func (e *AttachError) Error() string {
	return fmt.Sprintf("blockdev: attach %s at %s: %s: %v", e.TargetName, e.Portal, e.Step, e.Err)
}

func (e *AttachError) Unwrap() error { return e.Err }

// Is maps login and kernel failures onto the package's sentinels.
func (e *AttachError) Is(target error) bool {
	switch target {
	case ErrUnreachable:
		return e.Step == stepConnect
	case ErrLogin:
		return e.Step == stepLogin
	case ErrPermission:
		return isPermission(e.Err)
	case ErrModuleNotLoaded:
		return isModuleMissing(e.Err)
	}
	return false
}

// Attach steps.
const (
	stepConnect  = "connect"
	stepCreate   = "create session"
	stepBind     = "bind"
	stepParam    = "set param"
	stepLogin    = "login"
	stepStart    = "start"
	stepScan     = "scan"
	stepValidate = "validate"
)
