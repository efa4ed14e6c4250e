package blockdev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/iscsinl"
	"github.com/gosan/iscsi/internal/keymutex"
)

// netlinkOptions are Options.netlinkOpts: options of iscsinl.Dial.
type netlinkOptions = []iscsinl.Option

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

// InitiatorName returns the initiator name of sessions attached without
// one (Options.InitiatorName or iscsi.DefaultInitiatorName()).
func (k *Kernel) InitiatorName() string { return k.iname }

// Sysfs returns the sysfs accessor the Kernel uses.
func (k *Kernel) Sysfs() Sysfs { return k.sys }

// sessionKey names one session: one per (portal, target, iface, initiator
// name), so volumes with their own initiator name never share a session
// (kubelet gives them their own iface clone for that).
func sessionKey(portal, targetName, iface, initiatorName string) string {
	return normIface(iface) + "|" + portal + "|" + targetName + "|" + initiatorName
}

// initiator is the initiator name of a session asked for with name ("" is
// Options.InitiatorName).
func (k *Kernel) initiator(name string) string {
	if name == "" {
		return k.iname
	}
	return name
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
	return k.lock(ctx, sessionKey(portal, info.TargetName, info.Iface, k.initiator(info.InitiatorName)))
}

// SessionDisks lists the block devices that exist now on the session for
// (portal, targetName, iface, initiatorName; "" is Options.InitiatorName),
// every LUN, also of a session another process created. No session is not
// an error: it returns none.
func (k *Kernel) SessionDisks(ctx context.Context, portal, targetName, iface, initiatorName string) ([]Disk, error) {
	addr, err := resolvePortal(ctx, portal)
	if err != nil {
		return nil, err
	}
	p := portalString(addr)
	iname := k.initiator(initiatorName)
	info, err := k.sys.FindSession(p, targetName, iface, iname)
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
			Iface: normIface(iface), InitiatorName: iname})
	}
	return out, nil
}
