package blockdev

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/iscsinl"
	"github.com/gosan/iscsi/internal/keymutex"
	"github.com/gosan/iscsi/internal/login"
	"github.com/gosan/iscsi/pdu"
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

// hasCapSysAdmin reads CapEff from /proc/self/status (bit 21).
func hasCapSysAdmin(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			c, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, err
			}
			return c&(1<<unix.CAP_SYS_ADMIN) != 0, nil
		}
	}
	return false, errors.New("no CapEff line")
}

// otherISCSIListeners lists NETLINK_ISCSI sockets other than self that
// listen to the iscsid group (/proc/net/netlink: sk Eth Pid Groups ...).
func otherISCSIListeners(path string, self uint32) ([]uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseNetlinkListeners(f, self)
}

// parseNetlinkListeners parses /proc/net/netlink.
func parseNetlinkListeners(r io.Reader, self uint32) ([]uint32, error) {
	var out []uint32
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || fs[1] != strconv.Itoa(unix.NETLINK_ISCSI) {
			continue
		}
		pid, err1 := strconv.ParseUint(fs[2], 10, 32)
		groups, err2 := strconv.ParseUint(fs[3], 16, 64)
		if err1 != nil || err2 != nil || uint32(pid) == self || pid == 0 || groups&1 == 0 {
			continue
		}
		out = append(out, uint32(pid))
	}
	return out, sc.Err()
}

// --- per-key locks ------------------------------------------------------

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

// --- portal -------------------------------------------------------------

// resolvePortal turns host[:port] into a TCP address (port 3260 default).
func resolvePortal(ctx context.Context, portal string) (*net.TCPAddr, error) {
	host, port, err := net.SplitHostPort(portal)
	if err != nil {
		host, port = strings.Trim(portal, "[]"), "3260"
	}
	if host == "" {
		return nil, fmt.Errorf("blockdev: portal %q has no host", portal)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil, fmt.Errorf("blockdev: portal %q: bad port", portal)
	}
	if ip := net.ParseIP(host); ip != nil {
		return &net.TCPAddr{IP: ip, Port: int(p)}, nil
	}
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("blockdev: resolving portal %q: %w", portal, err)
	}
	return &net.TCPAddr{IP: ips[0], Port: int(p)}, nil
}

// portalString is addr as the kernel shows it: IPv4 without the
// v4-in-v6 prefix, IPv6 in brackets.
func portalString(addr *net.TCPAddr) string {
	ip := addr.IP
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port))
}

// dialTCP connects a non-blocking TCP socket from userspace as iscsid
// does (SO_BINDTODEVICE when netdev is set, TCP_NODELAY), bounded by ctx.
// It returns the raw descriptor: it is handed to the kernel, never used by
// the Go runtime's poller.
func dialTCP(ctx context.Context, addr *net.TCPAddr, netdev string) (int, error) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip4 := addr.IP.To4(); ip4 != nil {
		s := &unix.SockaddrInet4{Port: addr.Port}
		copy(s.Addr[:], ip4)
		sa = s
	} else {
		family = unix.AF_INET6
		s := &unix.SockaddrInet6{Port: addr.Port}
		copy(s.Addr[:], addr.IP.To16())
		if addr.Zone != "" {
			if ifi, err := net.InterfaceByName(addr.Zone); err == nil {
				s.ZoneId = uint32(ifi.Index)
			}
		}
		sa = s
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if netdev != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, netdev); err != nil {
			return -1, fmt.Errorf("SO_BINDTODEVICE %s: %w", netdev, err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return -1, fmt.Errorf("TCP_NODELAY: %w", err)
	}
	err = unix.Connect(fd, sa)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return -1, fmt.Errorf("connect %s: %w", addr, err)
	}
	for err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return -1, fmt.Errorf("connect %s: %w", addr, cerr)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, perr := unix.Poll(pfd, 50)
		if perr != nil && !errors.Is(perr, unix.EINTR) {
			return -1, fmt.Errorf("poll: %w", perr)
		}
		if n <= 0 {
			continue
		}
		soerr, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if gerr != nil {
			return -1, fmt.Errorf("SO_ERROR: %w", gerr)
		}
		if soerr != 0 {
			return -1, fmt.Errorf("connect %s: %w", addr, syscall.Errno(soerr))
		}
		err = nil
	}
	ok = true
	return fd, nil
}

func (s *session) closeFD() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}

// --- login transport ----------------------------------------------------

// kernelTransport runs the login engine over SEND_PDU/RECV_PDU. The kernel
// assigns the ITT (and CmdSN) of every PDU userspace sends
// (__iscsi_conn_send_pdu) and passes responses up unchanged, so responses
// carry the kernel's ITT: it is put back to the one the engine used.
type kernelTransport struct {
	t   *iscsinl.PDUTransport
	itt uint32
}

func (kt *kernelTransport) SendPDU(ctx context.Context, m pdu.Message) error {
	b := m.Encode(nil)
	if len(b) >= pdu.BHSLen {
		kt.itt = binary.BigEndian.Uint32(b[16:20])
	}
	return kt.t.SendRaw(ctx, b)
}

func (kt *kernelTransport) RecvPDU(ctx context.Context) ([]byte, error) {
	p, err := kt.t.RecvPDU(ctx)
	if err != nil {
		return nil, err
	}
	restoreITT(p, kt.itt)
	return p, nil
}

// restoreITT puts itt into a Login, Text or Logout Response.
func restoreITT(p []byte, itt uint32) {
	if len(p) < pdu.BHSLen {
		return
	}
	switch pdu.Opcode(p[0] & 0x3f) {
	case pdu.OpLoginResponse, pdu.OpTextResponse, pdu.OpLogoutResponse:
		binary.BigEndian.PutUint32(p[16:20], itt)
	}
}

// --- attach -------------------------------------------------------------

// Attach makes spec.LUN of spec.Target at spec.Portal a block device:
// it reuses the session for (portal, target, iface) when one exists (also
// one created by an earlier process, found in sysfs), else logs in through
// the kernel (connect, CREATE_SESSION, CREATE_CONN, BIND_CONN, SET_PARAM,
// login over SEND_PDU/RECV_PDU, SET_PARAM negotiated, START_CONN); then
// scans only that LUN and waits, bounded by ctx and Timeouts.Device, for
// /dev/sdX. If the device already exists it is returned as is. On failure
// a session this call created is destroyed again.
func (k *Kernel) Attach(ctx context.Context, spec Spec) (*Disk, error) {
	if spec.TargetName == "" || spec.Portal == "" {
		return nil, &AttachError{Step: stepValidate, Portal: spec.Portal, TargetName: spec.TargetName, Err: errors.New("portal and target are required")}
	}
	addr, err := resolvePortal(ctx, spec.Portal)
	if err != nil {
		return nil, &AttachError{Step: stepConnect, Portal: spec.Portal, TargetName: spec.TargetName, Err: err}
	}
	portal := portalString(addr)
	key := sessionKey(portal, spec.TargetName, spec.Iface)
	unlock, err := k.lock(ctx, key)
	if err != nil {
		return nil, err
	}
	defer unlock()

	s, fresh, loginTime, err := k.session(ctx, spec, addr, portal, key)
	if err != nil {
		return nil, err
	}
	disk, err := k.device(ctx, s, spec.LUN)
	if err != nil {
		if fresh {
			if lerr := k.logout(context.WithoutCancel(ctx), s); lerr != nil {
				k.log.Warn("blockdev: cleanup after failed scan", "sid", s.sid, "err", lerr)
			}
		}
		return nil, &AttachError{Step: stepScan, Portal: portal, TargetName: spec.TargetName, Err: err}
	}
	disk.NewSession = fresh
	disk.LoginTime = loginTime
	disk.Portal = portal
	disk.TargetName = spec.TargetName
	disk.Iface = normIface(spec.Iface)
	return disk, nil
}

// session finds or creates the session for key.
func (k *Kernel) session(ctx context.Context, spec Spec, addr *net.TCPAddr, portal, key string) (*session, bool, time.Duration, error) {
	info, err := k.sys.FindSession(portal, spec.TargetName, spec.Iface)
	if err != nil {
		return nil, false, 0, err
	}
	if info != nil {
		s := k.known(info, spec, addr)
		if info.State != "" && info.State != "LOGGED_IN" && !s.isRecovering() {
			// Nobody recovers it (its creator is gone): reconnect now.
			k.log.Info("blockdev: session not logged in, reconnecting", "sid", s.sid, "state", info.State)
			if err := k.reconnect(ctx, s); err != nil {
				return nil, false, 0, &AttachError{Step: stepLogin, Portal: portal, TargetName: spec.TargetName, Err: err}
			}
		}
		return s, false, 0, nil
	}
	start := time.Now()
	s, err := k.create(ctx, spec, addr, portal, key)
	if err != nil {
		return nil, false, 0, err
	}
	return s, true, time.Since(start), nil
}

// known registers (or refreshes) a session found in sysfs, adopting it on
// the netlink socket and taking the spec's credentials for reconnects.
func (k *Kernel) known(info *SessionInfo, spec Spec, addr *net.TCPAddr) *session {
	s, _ := k.register(info, spec, addr, false)
	return s
}

// register is known; with onlyNew it leaves a session k already knows
// alone (an Attach may have given it credentials or a NetDev meanwhile)
// and reports false.
func (k *Kernel) register(info *SessionInfo, spec Spec, addr *net.TCPAddr, onlyNew bool) (*session, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s, ok := k.sessions[info.SID]
	if ok && onlyNew {
		return s, false
	}
	if !ok {
		s = &session{sid: info.SID, hostNo: info.HostNo, fd: -1,
			key: sessionKey(portalString(addr), spec.TargetName, spec.Iface)}
		k.sessions[info.SID] = s
		k.nl.Adopt(info.SID)
	}
	s.mu.Lock()
	s.portal = addr
	s.netdev = spec.NetDev
	s.chap = spec.CHAP
	s.cfg = k.sessionConfig(spec, addr, info.SID)
	if info.InitiatorName != "" {
		s.cfg.InitiatorName = info.InitiatorName
	}
	if isid, ok := parseISID(info.ISID); ok {
		s.cfg.ISID = isid // log in again as the same session, whoever created it
	}
	s.mu.Unlock()
	return s, true
}

// parseISID parses sysfs's isid attribute (12 hex digits).
func parseISID(v string) ([6]byte, bool) {
	var isid [6]byte
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != len(isid) {
		return isid, false
	}
	copy(isid[:], b)
	return isid, true
}

func (s *session) isRecovering() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recovering
}

func (k *Kernel) sessionConfig(spec Spec, addr *net.TCPAddr, sid uint32) sessionConfig {
	iname := spec.InitiatorName
	if iname == "" {
		iname = k.iname
	}
	c := sessionConfig{
		InitiatorName: iname, TargetName: spec.TargetName, Addr: addr.IP.String(), Port: addr.Port,
		Iface: normIface(spec.Iface), ISID: isidFor(sid), Timeouts: k.tmo,
	}
	if spec.CHAP != nil {
		c.User = spec.CHAP.User
		c.UserIn = spec.CHAP.TargetUser
	}
	return c
}

// create logs in a new session through the kernel.
func (k *Kernel) create(ctx context.Context, spec Spec, addr *net.TCPAddr, portal, key string) (*session, error) {
	fail := func(step string, err error) error {
		return &AttachError{Step: step, Portal: portal, TargetName: spec.TargetName, Err: err}
	}
	cctx, cancel := context.WithTimeout(ctx, k.tmo.Connect)
	fd, err := dialTCP(cctx, addr, spec.NetDev)
	cancel()
	if err != nil {
		return nil, fail(stepConnect, err)
	}
	sr, err := k.nl.CreateSession(ctx, iscsinl.CreateSession{InitialCmdSN: 1, CmdsMax: k.opts.CmdsMax, QueueDepth: k.opts.QueueDepth})
	if err != nil {
		unix.Close(fd)
		return nil, fail(stepCreate, err)
	}
	s := &session{sid: sr.SID, hostNo: sr.HostNo, key: key, portal: addr, netdev: spec.NetDev, chap: spec.CHAP, fd: fd}
	s.cfg = k.sessionConfig(spec, addr, sr.SID)
	s.recovering = true // not yet a candidate for the Supervisor
	connCreated := false
	undo := func() {
		bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if connCreated {
			if err := k.nl.StopConn(bg, s.sid, 0, iscsinl.StopConnTerm); err != nil {
				k.log.Debug("blockdev: cleanup STOP_CONN", "sid", s.sid, "err", err)
			}
			if err := k.nl.DestroyConn(bg, s.sid, 0); err != nil {
				k.log.Warn("blockdev: cleanup DESTROY_CONN", "sid", s.sid, "err", err)
			}
		}
		if err := k.nl.DestroySession(bg, s.sid); err != nil {
			k.log.Warn("blockdev: cleanup DESTROY_SESSION", "sid", s.sid, "err", err)
		}
		s.closeFD()
	}
	if _, err := k.nl.CreateConn(ctx, s.sid, 0); err != nil {
		undo()
		return nil, fail(stepCreate, err)
	}
	connCreated = true
	if step, err := k.bindAndLogin(ctx, s); err != nil {
		undo()
		return nil, fail(step, err)
	}
	s.recovering = false
	k.mu.Lock()
	k.sessions[s.sid] = s
	k.mu.Unlock()
	k.log.Info("blockdev: session logged in", "sid", s.sid, "host", s.hostNo, "portal", portal, "target", spec.TargetName)
	return s, nil
}

// bindAndLogin binds s.fd to connection 0 of s, sets the parameters, logs
// in over netlink and starts the connection. It returns the failing step.
func (k *Kernel) bindAndLogin(ctx context.Context, s *session) (string, error) {
	if err := k.nl.BindConn(ctx, s.sid, 0, s.fd, true); err != nil {
		return stepBind, err
	}
	if err := k.setParams(ctx, s.sid, sessionParams(s.cfg)); err != nil {
		return stepParam, err
	}
	lctx, cancel := context.WithTimeout(ctx, k.tmo.Login)
	defer cancel()
	res, err := login.Login(lctx, &kernelTransport{t: k.nl.PDUTransport(s.sid, 0)}, k.loginConfig(s))
	if err != nil {
		return stepLogin, err
	}
	if err := k.setParams(ctx, s.sid, negotiatedParams(res.Negotiated, res.StatSN)); err != nil {
		return stepParam, err
	}
	if err := k.nl.StartConn(ctx, s.sid, 0); err != nil {
		return stepStart, err
	}
	return "", nil
}

// loginConfig is what the kernel path logs in with.
func (k *Kernel) loginConfig(s *session) login.Config {
	return login.Config{
		InitiatorName: s.cfg.InitiatorName,
		TargetName:    s.cfg.TargetName,
		ISID:          s.cfg.ISID,
		TSIH:          0, // as iscsid: every (re)login asks for a new session; same ISID reinstates
		CID:           0,
		ITT:           0,
		InitialCmdSN:  1, // the kernel overwrites CmdSN with its own session CmdSN
		CHAP:          s.chap,
		Logger:        k.log,
	}
}

func (k *Kernel) setParams(ctx context.Context, sid uint32, ps []paramValue) error {
	for _, p := range ps {
		err := k.nl.SetParam(ctx, sid, 0, p.Param, p.Value)
		if err == nil {
			continue
		}
		if p.Optional || errors.Is(err, syscall.ENOSYS) {
			k.log.Debug("blockdev: kernel refused optional parameter", "param", p.Param, "err", err)
			continue
		}
		return fmt.Errorf("%v: %w", p.Param, err)
	}
	return nil
}

// device returns the block device of lun on s, scanning for it if needed.
func (k *Kernel) device(ctx context.Context, s *session, lun uint64) (*Disk, error) {
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, k.tmo.Device)
	defer cancel()
	scanned := false
	var dev *SCSIDevice
	err := waitFor(dctx, 20*time.Millisecond, func() (bool, error) {
		d, err := k.sys.DeviceForLUN(s.sid, lun)
		if err != nil {
			return false, err
		}
		if d == nil || d.Block == "" {
			if !scanned && d == nil {
				scanned = true
				if err := k.sys.scanLUN(s.hostNo, lun); err != nil {
					return false, err
				}
			}
			return false, nil
		}
		if _, err := os.Stat(filepath.Join(k.sys.dev(), d.Block)); err != nil {
			return false, nil // devtmpfs has not created the node yet
		}
		// sd registers the disk before its capacity is read (seen as
		// size 0 for a few ms): ready means a known size.
		if n, err := k.sys.BlockSize(d.Block); err != nil || n == 0 {
			return false, nil
		}
		// device_add_disk creates the node and the sysfs entry before it
		// registers the block device: opening it fails with ENXIO for a
		// moment (seen when a second LUN is scanned on a busy session).
		// Ready means it opens.
		if f, err := os.OpenFile(filepath.Join(k.sys.dev(), d.Block), os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err != nil {
			if errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) {
				return false, nil
			}
			return false, fmt.Errorf("open %s: %w", d.Block, err)
		} else {
			f.Close()
		}
		dev = d
		return true, nil
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("%w: LUN %d on host%d (session %d): %w", ErrNoDevice, lun, s.hostNo, s.sid, err)
		}
		return nil, err
	}
	size, _ := k.sys.BlockSize(dev.Block)
	return &Disk{
		Path: filepath.Join(k.sys.dev(), dev.Block), Name: dev.Block, SCSIAddress: dev.Address(),
		LUN: lun, Size: size, SessionID: s.sid, HostNo: s.hostNo, DeviceTime: time.Since(start),
	}, nil
}

// --- detach -------------------------------------------------------------

// DeleteDevice flushes the block device (BLKFLSBUF) and removes its SCSI
// device (/sys/block/<sd>/device/delete), waiting for it to go, under the
// lock Attach and Detach take for the device's session. A device that does
// not exist is not an error; a block device that belongs to no iSCSI
// session is refused (ErrNoSession).
func (k *Kernel) DeleteDevice(ctx context.Context, path string) error {
	name, err := blockName(path)
	if err != nil {
		return err
	}
	if !k.sys.BlockExists(name) {
		return nil
	}
	info, err := k.sys.sessionOfBlock(name)
	if err != nil {
		return err
	}
	if info == nil {
		if !k.sys.BlockExists(name) {
			return nil // gone meanwhile
		}
		return fmt.Errorf("blockdev: %s is not a disk of an iSCSI session: %w", name, ErrNoSession)
	}
	unlock, err := k.lockInfo(ctx, info)
	if err != nil {
		return err
	}
	defer unlock()
	return k.deleteDevice(ctx, name)
}

func blockName(path string) (string, error) {
	name := filepath.Base(path)
	if name == "." || name == "/" || name == "" {
		return "", fmt.Errorf("blockdev: bad device path %q", path)
	}
	return name, nil
}

// deleteDevice is DeleteDevice under the session's lock, held by the caller.
func (k *Kernel) deleteDevice(ctx context.Context, name string) error {
	if !k.sys.BlockExists(name) {
		return nil
	}
	if f, err := os.OpenFile(filepath.Join(k.sys.dev(), name), os.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKFLSBUF, 0); e != 0 {
			k.log.Debug("blockdev: BLKFLSBUF", "dev", name, "err", e)
		}
		f.Close()
	}
	if err := k.sys.deleteBlock(name); err != nil {
		return err
	}
	return waitFor(ctx, 20*time.Millisecond, func() (bool, error) { return !k.sys.BlockExists(name), nil })
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

// Detach deletes the disk's device and, when its session has no other
// device left, logs the session out, all under the session's lock.
// Detaching what is already gone succeeds.
func (k *Kernel) Detach(ctx context.Context, d *Disk) error {
	name, err := blockName(d.Path)
	if err != nil {
		return err
	}
	portal := d.Portal
	if a, err := resolvePortal(ctx, d.Portal); err == nil {
		portal = portalString(a)
	}
	unlock, err := k.lock(ctx, sessionKey(portal, d.TargetName, d.Iface))
	if err != nil {
		return err
	}
	defer unlock()
	if err := k.deleteDevice(ctx, name); err != nil {
		return err
	}
	devs, err := k.sys.SessionDevices(d.SessionID)
	if errors.Is(err, ErrNoSession) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(devs) > 0 {
		return nil
	}
	return k.logoutSID(ctx, d.SessionID)
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

// Logout ends the session for (portal, targetName, iface) if there is one.
func (k *Kernel) Logout(ctx context.Context, portal, targetName, iface string) error {
	addr, err := resolvePortal(ctx, portal)
	if err != nil {
		return err
	}
	p := portalString(addr)
	unlock, err := k.lock(ctx, sessionKey(p, targetName, iface))
	if err != nil {
		return err
	}
	defer unlock()
	info, err := k.sys.FindSession(p, targetName, iface)
	if err != nil || info == nil {
		return err
	}
	return k.logoutSID(ctx, info.SID)
}

// LogoutSession ends kernel session sid, also one created by another
// process: UNBIND_SESSION (the kernel removes its SCSI devices), a Logout
// Request over SEND_PDU and the wait for the Logout Response (bounded by
// Timeouts.Logout), STOP_CONN(term), DESTROY_CONN, DESTROY_SESSION, under
// the lock Attach and Detach take for the session. A session that does
// not exist is not an error.
func (k *Kernel) LogoutSession(ctx context.Context, sid uint32) error {
	info, err := k.sys.Session(sid)
	if err != nil && !errors.Is(err, ErrNoSession) {
		return err
	}
	if info != nil {
		unlock, err := k.lockInfo(ctx, info)
		if err != nil {
			return err
		}
		defer unlock()
	}
	return k.logoutSID(ctx, sid)
}

// logoutSID is LogoutSession under the session's lock, held by the caller.
func (k *Kernel) logoutSID(ctx context.Context, sid uint32) error {
	k.mu.Lock()
	s, ok := k.sessions[sid]
	if !ok {
		s = &session{sid: sid, fd: -1}
		k.sessions[sid] = s
		k.nl.Adopt(sid)
	}
	k.mu.Unlock()
	return k.logout(ctx, s)
}

func (k *Kernel) logout(ctx context.Context, s *session) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	defer func() {
		k.mu.Lock()
		if k.sessions[s.sid] == s {
			delete(k.sessions, s.sid)
		}
		k.mu.Unlock()
		s.mu.Lock()
		s.closeFD()
		s.mu.Unlock()
	}()
	gone := func() bool {
		_, err := k.sys.Session(s.sid)
		return errors.Is(err, ErrNoSession)
	}
	if gone() {
		k.nl.Release(s.sid)
		return nil
	}
	if err := k.nl.UnbindSession(ctx, s.sid); err != nil {
		k.log.Debug("blockdev: UNBIND_SESSION", "sid", s.sid, "err", err)
	}
	k.sendLogout(ctx, s.sid)
	if err := k.nl.StopConn(ctx, s.sid, 0, iscsinl.StopConnTerm); err != nil {
		k.log.Debug("blockdev: STOP_CONN", "sid", s.sid, "err", err)
	}
	if err := k.nl.DestroyConn(ctx, s.sid, 0); err != nil {
		k.log.Debug("blockdev: DESTROY_CONN", "sid", s.sid, "err", err)
	}
	if err := k.nl.DestroySession(ctx, s.sid); err != nil {
		if gone() {
			return nil
		}
		return fmt.Errorf("blockdev: destroying session %d: %w", s.sid, err)
	}
	k.log.Info("blockdev: session logged out", "sid", s.sid)
	return nil
}

// sendLogout sends a Logout Request (close session) and waits for the
// response; failures only delay teardown, they do not stop it.
func (k *Kernel) sendLogout(ctx context.Context, sid uint32) {
	lctx, cancel := context.WithTimeout(ctx, k.tmo.Logout)
	defer cancel()
	t := &kernelTransport{t: k.nl.PDUTransport(sid, 0)}
	// The kernel fills in ITT, CmdSN and ExpStatSN.
	if err := t.SendPDU(lctx, &pdu.LogoutRequest{Immediate: true, Reason: pdu.LogoutCloseSession, ITT: 1}); err != nil {
		k.log.Debug("blockdev: Logout Request not sent", "sid", sid, "err", err)
		return
	}
	for {
		p, err := t.RecvPDU(lctx)
		if err != nil {
			k.log.Debug("blockdev: no Logout Response", "sid", sid, "err", err)
			return
		}
		if len(p) >= pdu.BHSLen && pdu.Opcode(p[0]&0x3f) == pdu.OpLogoutResponse {
			if p[2] != 0 {
				k.log.Debug("blockdev: Logout Response", "sid", sid, "response", p[2])
			}
			return
		}
	}
}
