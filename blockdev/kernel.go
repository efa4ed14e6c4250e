package blockdev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/iscsinl"
	"github.com/gosan/iscsi/internal/keymutex"
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
	// netlinkOpts are passed to iscsinl.Dial (tests).
	netlinkOpts []iscsinl.Option
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
	// NewSession is true when this Attach logged in; false when it reused
	// a session that already existed.
	NewSession bool
	// LoginTime is the time from TCP connect to START_CONN (0 when the
	// session was reused), DeviceTime from the scan to the device node.
	LoginTime, DeviceTime time.Duration
}

// Kernel hands iSCSI sessions to the Linux kernel's iscsi_tcp as iscsid
// does. One per process: it owns the NETLINK_ISCSI socket. Methods are safe
// for concurrent use; calls for one (portal, target, iface) are serialized.
type Kernel struct {
	nl    *iscsinl.Conn
	sys   Sysfs
	log   *slog.Logger
	opts  Options
	tmo   Timeouts
	iname string

	mu       sync.Mutex
	sessions map[uint32]*session
	locks    keymutex.Mutex
	closed   bool
}

// session is a kernel session this process knows about (created, adopted
// by an Attach on it, or being logged out).
type session struct {
	sid, hostNo uint32
	key         string
	cfg         sessionConfig
	portal      *net.TCPAddr
	netdev      string
	chap        *iscsi.CHAP
	fd          int // our copy of the bound socket; -1 when none

	mu         sync.Mutex
	closing    bool
	recovering bool
}

// Open dials NETLINK_ISCSI and checks the host: CAP_SYS_ADMIN
// (ErrPermission), iscsi_tcp loaded (ErrModuleNotLoaded), no other
// iSCSI daemon (ErrOtherDaemon).
func Open(opts Options) (*Kernel, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	sys := Sysfs{Root: opts.SysfsRoot, Dev: opts.DevRoot}
	if ok, err := hasCapSysAdmin("/proc/self/status"); err == nil && !ok {
		return nil, ErrPermission
	}
	nlopts := append([]iscsinl.Option{iscsinl.WithLogger(log)}, opts.netlinkOpts...)
	if opts.SysfsRoot != "" {
		nlopts = append(nlopts, iscsinl.WithSysfsRoot(opts.SysfsRoot))
	}
	nl, err := iscsinl.Dial(nlopts...)
	if err != nil {
		return nil, mapOpenErr(err)
	}
	if !opts.AllowOtherDaemon {
		if others, err := otherISCSIListeners("/proc/net/netlink", nl.PortID()); err == nil && len(others) > 0 {
			nl.Close()
			return nil, fmt.Errorf("%w (netlink port ids %v)", ErrOtherDaemon, others)
		}
	}
	if opts.CmdsMax == 0 {
		opts.CmdsMax = 128
	}
	if opts.QueueDepth == 0 {
		opts.QueueDepth = 32
	}
	return &Kernel{
		nl: nl, sys: sys, log: log, opts: opts, tmo: opts.Timeouts.withDefaults(), iname: opts.initiatorName(),
		sessions: make(map[uint32]*session),
	}, nil
}

// Close closes the netlink socket and our copies of bound sockets. The
// kernel sessions stay (the kernel holds its own reference to each socket);
// a later Kernel finds them in sysfs.
func (k *Kernel) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	for _, s := range k.sessions {
		s.mu.Lock()
		s.closeFD()
		s.mu.Unlock()
	}
	k.mu.Unlock()
	return k.nl.Close()
}

// Sysfs returns the sysfs accessor the Kernel uses.
func (k *Kernel) Sysfs() Sysfs { return k.sys }

func sessionKey(portal, targetName, iface string) string {
	return normIface(iface) + "|" + portal + "|" + targetName
}

func (k *Kernel) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	closed := k.closed
	k.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return k.locks.Lock(ctx, key)
}

func (s *session) closeFD() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}

func (s *session) isRecovering() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recovering
}

// lockInfo takes the lock Attach and Detach take for the session info
// describes (its portal as the kernel shows it, target name, iface).
func (k *Kernel) lockInfo(ctx context.Context, info *SessionInfo) (func(), error) {
	portal := info.Portal
	if a, err := resolvePortal(ctx, info.Portal); err == nil {
		portal = portalString(a)
	}
	return k.lock(ctx, sessionKey(portal, info.TargetName, info.Iface))
}

// SessionDisks lists the block devices that exist now on the session for
// (portal, targetName, iface), every LUN, also of a session another process
// created. No session is not an error: it returns none.
func (k *Kernel) SessionDisks(ctx context.Context, portal, targetName, iface string) ([]Disk, error) {
	addr, err := resolvePortal(ctx, portal)
	if err != nil {
		return nil, err
	}
	p := portalString(addr)
	info, err := k.sys.FindSession(p, targetName, iface)
	if err != nil || info == nil {
		return nil, err
	}
	devs, err := k.sys.SessionDevices(info.SID)
	if errors.Is(err, ErrNoSession) {
		return nil, nil // the session went away meanwhile
	}
	if err != nil {
		return nil, err
	}
	var out []Disk
	for _, d := range devs {
		if d.Block == "" {
			continue
		}
		size, _ := k.sys.BlockSize(d.Block)
		out = append(out, Disk{Path: filepath.Join(k.sys.dev(), d.Block), Name: d.Block, SCSIAddress: d.Address(),
			LUN: d.LUN, Size: size, SessionID: info.SID, HostNo: info.HostNo, Portal: p, TargetName: targetName,
			Iface: normIface(iface)})
	}
	return out, nil
}
