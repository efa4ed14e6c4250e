package blockdev

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/gosan/iscsi"
)

// DefaultIface is the iface name of sessions attached without one (the
// name open-iscsi gives iscsi_tcp's default iface); blockdev/volume uses
// it for volumes that name none.
const DefaultIface = "default"

// Timeouts of the kernel session and of the steps of Attach/Detach. Zero
// fields take the defaults (DefaultTimeouts).
type Timeouts struct {
	// Recovery is SESS_RECOVERY_TMO (iscsid's replacement_timeout): how
	// long the kernel queues I/O while the connection is down before it
	// fails it.
	Recovery time.Duration
	// NOPInterval (RECV_TMO) and NOPTimeout (PING_TMO): the kernel sends
	// a NOP-Out after NOPInterval without traffic and declares the
	// connection dead NOPTimeout later.
	NOPInterval, NOPTimeout time.Duration
	// SCSI error handling: abort, LUN reset and target reset timeouts.
	Abort, LUReset, TgtReset time.Duration
	// Connect bounds the TCP connect, Login the login exchange, Logout the
	// wait for the Logout Response, Device the wait for the block device
	// after the scan (each also bounded by the caller's ctx).
	Connect, Login, Logout, Device time.Duration
}

// DefaultTimeouts are iscsid's defaults (iscsid.conf), with 30 s for the
// device to appear.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		Recovery:    120 * time.Second,
		NOPInterval: 5 * time.Second,
		NOPTimeout:  5 * time.Second,
		Abort:       15 * time.Second,
		LUReset:     30 * time.Second,
		TgtReset:    30 * time.Second,
		Connect:     15 * time.Second,
		Login:       15 * time.Second,
		Logout:      15 * time.Second,
		Device:      30 * time.Second,
	}
}

func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts()
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.Recovery, &d.Recovery}, {&t.NOPInterval, &d.NOPInterval}, {&t.NOPTimeout, &d.NOPTimeout},
		{&t.Abort, &d.Abort}, {&t.LUReset, &d.LUReset}, {&t.TgtReset, &d.TgtReset},
		{&t.Connect, &d.Connect}, {&t.Login, &d.Login}, {&t.Logout, &d.Logout}, {&t.Device, &d.Device},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return t
}

// Options configure Open.
type Options struct {
	// InitiatorName is the default for Specs without one. Empty:
	// iscsi.DefaultInitiatorName(), the name the userspace initiator uses.
	InitiatorName string
	Timeouts      Timeouts
	// CmdsMax and QueueDepth of new sessions (iscsid: 128 and 32).
	CmdsMax, QueueDepth uint16
	// AllowOtherDaemon skips the check for another NETLINK_ISCSI listener
	// (iscsid). Only for hosts where the other listener provably leaves
	// these sessions alone.
	AllowOtherDaemon bool
	// SysfsRoot and DevRoot default to /sys and /dev (tests).
	SysfsRoot, DevRoot string
	Logger             *slog.Logger
	// Credentials gives Supervise the CHAP credentials of a session it
	// adopts from sysfs (one an earlier process created: a restarted node
	// plugin). The kernel never holds CHAP secrets, so without them such a
	// session cannot be logged in again: Supervise leaves it to the
	// kernel's recovery timeout and says so in the log. It is called with
	// the session's target name and portal (host:port) and returns nil
	// when it has none.
	Credentials func(targetName, portal string) *iscsi.CHAP
	// netlinkOpts are passed to iscsinl.Dial (tests; Linux only).
	netlinkOpts netlinkOptions
}

// initiatorName is the name of sessions whose Spec names none.
func (o Options) initiatorName() string {
	if o.InitiatorName != "" {
		return o.InitiatorName
	}
	return iscsi.DefaultInitiatorName()
}

// Spec is one Attach request.
type Spec struct {
	Portal     string // host:port (IPv6 in brackets); port 3260 when absent
	TargetName string // target IQN
	LUN        uint64
	// Iface names the session for reuse (sysfs ifacename); "" is
	// "default". NetDev, when set, binds the TCP socket to that network
	// interface (SO_BINDTODEVICE).
	Iface, NetDev string
	InitiatorName string      // "" => Options.InitiatorName
	CHAP          *iscsi.CHAP // nil: no authentication
}

// String hides secrets.
func (s Spec) String() string {
	return fmt.Sprintf("%s/%s/%s lun %d (%v)", normIface(s.Iface), s.Portal, s.TargetName, s.LUN, s.CHAP)
}

// Disk is an attached LUN.
type Disk struct {
	Path        string // /dev/sdX
	Name        string // sdX
	SCSIAddress string // H:C:T:L
	LUN         uint64
	Size        int64 // bytes
	SessionID   uint32
	HostNo      uint32
	Portal      string // as the kernel shows it (IP:port)
	TargetName  string // target IQN
	Iface       string
	// InitiatorName is the session's initiator name: a session is found
	// and reused only under the same name.
	InitiatorName string
	// NewSession is true when this Attach logged in; false when it reused
	// a session that already existed.
	NewSession bool
	// LoginTime is the time from TCP connect to START_CONN (0 when the
	// session was reused), DeviceTime from the scan to the device node.
	LoginTime, DeviceTime time.Duration
}
