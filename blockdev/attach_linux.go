package blockdev

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi/internal/iscsinl"
	"github.com/gosan/iscsi/internal/login"
)

// Attach: find or create the session, log in through the kernel, scan
// one LUN and wait for its block device.

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
	spec.InitiatorName = k.initiator(spec.InitiatorName)
	key := sessionKey(portal, spec.TargetName, spec.Iface, spec.InitiatorName)
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
	disk.InitiatorName = spec.InitiatorName
	return disk, nil
}

// session finds or creates the session for key.
func (k *Kernel) session(ctx context.Context, spec Spec, addr *net.TCPAddr, portal, key string) (*session, bool, time.Duration, error) {
	info, err := k.sys.FindSession(portal, spec.TargetName, spec.Iface, spec.InitiatorName)
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
			key: sessionKey(portalString(addr), spec.TargetName, spec.Iface, k.initiator(info.InitiatorName))}
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
