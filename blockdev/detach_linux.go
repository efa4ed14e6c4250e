package blockdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi/internal/iscsinl"
	"github.com/gosan/iscsi/pdu"
)

// Detach: delete a device, log a session out, under the session's lock.

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
	unlock, err := k.lock(ctx, sessionKey(portal, d.TargetName, d.Iface, k.initiator(d.InitiatorName)))
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

// Logout ends the session for (portal, targetName, iface, initiatorName;
// "" is Options.InitiatorName) if there is one.
func (k *Kernel) Logout(ctx context.Context, portal, targetName, iface, initiatorName string) error {
	addr, err := resolvePortal(ctx, portal)
	if err != nil {
		return err
	}
	p := portalString(addr)
	iname := k.initiator(initiatorName)
	unlock, err := k.lock(ctx, sessionKey(p, targetName, iface, iname))
	if err != nil {
		return err
	}
	defer unlock()
	info, err := k.sys.FindSession(p, targetName, iface, iname)
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
		var resp pdu.LogoutResponse
		if resp.Decode(p) == nil {
			if resp.Response != pdu.LogoutSuccess {
				k.log.Debug("blockdev: Logout Response", "sid", sid, "response", resp.Response)
			}
			return
		}
	}
}
