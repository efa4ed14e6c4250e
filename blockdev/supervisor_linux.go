package blockdev

import (
	"context"
	"errors"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi/internal/iscsinl"
)

// Supervise is the recovery loop a long-running process (a CSI node
// plugin, a daemon) runs for as long as it wants its sessions kept alive.
// On ISCSI_KEVENT_CONN_ERROR for a session this Kernel knows (created or
// attached through it) it does what iscsid does: STOP_CONN with
// STOP_CONN_RECOVER (the kernel keeps the SCSI devices and queues I/O for
// up to Timeouts.Recovery), then, after DefaultTime2Wait, a new TCP
// connection bound to the same session, login again (same ISID, TSIH 0:
// the target reinstates the session), the negotiated parameters and
// START_CONN; the kernel then resumes the queued I/O. It retries with
// backoff until it succeeds, the session is logged out, or ctx ends.
//
// Without Supervise the kernel's recovery timeout applies: I/O fails after
// Timeouts.Recovery and the session stays FAILED until a later Attach on
// it reconnects it or it is logged out.
//
// Supervise first adopts every session in sysfs this Kernel does not know
// yet (sessions an earlier process created: a restarted daemon keeps its
// sessions alive), unless Options.AllowOtherDaemon says another daemon may
// own them. A session that logged in with CHAP is adopted only when
// Options.Credentials has its credentials.
//
// Supervise returns ctx.Err() when ctx ends, ErrClosed when the Kernel is
// closed. Call it at most once per Kernel.
func (k *Kernel) Supervise(ctx context.Context) error {
	if !k.opts.AllowOtherDaemon {
		k.adoptAll(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-k.nl.Events():
			if !ok {
				return ErrClosed
			}
			k.handleEvent(ctx, ev)
		}
	}
}

func (k *Kernel) handleEvent(ctx context.Context, ev iscsinl.Event) {
	switch e := ev.(type) {
	case *iscsinl.ConnErrorEvent:
		k.mu.Lock()
		s := k.sessions[e.SID]
		k.mu.Unlock()
		if s == nil {
			k.log.Debug("blockdev: connection error on an unknown session", "sid", e.SID, "err", e.Error)
			return
		}
		s.mu.Lock()
		busy := s.closing || s.recovering || s.portal == nil
		if !busy {
			s.recovering = true
		}
		s.mu.Unlock()
		if busy {
			k.log.Debug("blockdev: connection error ignored (session busy)", "sid", e.SID, "err", e.Error)
			return
		}
		k.log.Warn("blockdev: connection failed, recovering", "sid", e.SID, "err", e.Error)
		go k.recoverLoop(ctx, s)
	default:
		if k.log.Enabled(ctx, -4) {
			sid, _ := ev.SessionID()
			k.log.Debug("blockdev: kernel event", "type", ev.EventType(), "sid", sid)
		}
	}
}

// recoverLoop reconnects s until it works, s is closed, or ctx ends.
func (k *Kernel) recoverLoop(ctx context.Context, s *session) {
	start := time.Now()
	if err := k.nl.StopConn(ctx, s.sid, 0, iscsinl.StopConnRecover); err != nil {
		k.log.Debug("blockdev: STOP_CONN(recover)", "sid", s.sid, "err", err)
	}
	s.mu.Lock()
	s.closeFD()
	s.mu.Unlock()
	wait := 2 * time.Second // DefaultTime2Wait
	for attempt := 1; ; attempt++ {
		select {
		case <-ctx.Done():
			k.doneRecovering(s)
			return
		case <-time.After(wait):
		}
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if closing {
			k.doneRecovering(s)
			return
		}
		err := k.reconnectOnce(ctx, s)
		if err == nil {
			k.log.Info("blockdev: session recovered", "sid", s.sid, "attempt", attempt, "after", time.Since(start).Round(time.Millisecond))
			k.doneRecovering(s)
			return
		}
		k.log.Warn("blockdev: reconnect failed", "sid", s.sid, "attempt", attempt, "err", err)
		if wait < 16*time.Second {
			wait *= 2
		}
	}
}

func (k *Kernel) doneRecovering(s *session) {
	s.mu.Lock()
	s.recovering = false
	s.mu.Unlock()
}

// reconnectOnce binds a new socket to the stopped connection of s and logs
// in again. On failure the connection is stopped again for the next try.
func (k *Kernel) reconnectOnce(ctx context.Context, s *session) error {
	s.mu.Lock()
	addr, netdev := s.portal, s.netdev
	s.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, k.tmo.Connect)
	fd, err := dialTCP(cctx, addr, netdev)
	cancel()
	if err != nil {
		return &AttachError{Step: stepConnect, Portal: addr.String(), TargetName: s.cfg.TargetName, Err: err}
	}
	s.mu.Lock()
	s.closeFD()
	s.fd = fd
	s.mu.Unlock()
	k.drainPDUs(s.sid)
	step, err := k.bindAndLogin(ctx, s)
	if err != nil {
		if serr := k.nl.StopConn(context.WithoutCancel(ctx), s.sid, 0, iscsinl.StopConnRecover); serr != nil {
			k.log.Debug("blockdev: STOP_CONN(recover) after failed reconnect", "sid", s.sid, "err", serr)
		}
		s.mu.Lock()
		if s.fd == fd {
			unix.Close(fd)
			s.fd = -1
		}
		s.mu.Unlock()
		return &AttachError{Step: step, Portal: addr.String(), TargetName: s.cfg.TargetName, Err: err}
	}
	return nil
}

// drainPDUs drops what the netlink layer still holds for the old
// connection: PDUs and the sticky CONN_ERROR, which would otherwise end
// the next login's first receive.
func (k *Kernel) drainPDUs(sid uint32) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 1024; i++ {
		if _, err := k.nl.RecvPDU(done, sid, 0); err != nil && errors.Is(err, context.Canceled) {
			return
		}
	}
}

// reconnect brings back a session found FAILED in sysfs (its creator is
// gone or gave up), synchronously, bounded by ctx.
func (k *Kernel) reconnect(ctx context.Context, s *session) error {
	s.mu.Lock()
	if s.recovering || s.closing {
		s.mu.Unlock()
		return errors.New("blockdev: session busy")
	}
	s.recovering = true
	s.mu.Unlock()
	defer k.doneRecovering(s)
	if err := k.nl.StopConn(ctx, s.sid, 0, iscsinl.StopConnRecover); err != nil {
		k.log.Debug("blockdev: STOP_CONN(recover)", "sid", s.sid, "err", err)
	}
	return k.reconnectOnce(ctx, s)
}

// adoptAll registers the sessions in sysfs that k does not know, with what
// a reconnect needs: portal, target, iface, initiator name and ISID from
// sysfs, CHAP credentials from Options.Credentials. A session already
// FAILED when found is recovered at once.
func (k *Kernel) adoptAll(ctx context.Context) {
	infos, err := k.sys.Sessions()
	if err != nil {
		k.log.Warn("blockdev: listing sessions to supervise", "err", err)
		return
	}
	for i := range infos {
		info := &infos[i]
		k.mu.Lock()
		_, ok := k.sessions[info.SID]
		k.mu.Unlock()
		if ok || info.Portal == "" || info.TargetName == "" {
			continue
		}
		addr, err := net.ResolveTCPAddr("tcp", info.Portal)
		if err != nil {
			k.log.Warn("blockdev: session not supervised: bad portal in sysfs", "sid", info.SID, "portal", info.Portal, "err", err)
			continue
		}
		spec := Spec{Portal: info.Portal, TargetName: info.TargetName, Iface: info.Iface, InitiatorName: info.InitiatorName}
		if k.opts.Credentials != nil {
			spec.CHAP = k.opts.Credentials(info.TargetName, info.Portal)
		}
		if info.Username != "" && spec.CHAP == nil {
			k.log.Warn("blockdev: session not supervised: it uses CHAP and Options.Credentials has no credentials for it",
				"sid", info.SID, "target", info.TargetName, "portal", info.Portal)
			continue
		}
		s, ok := k.register(info, spec, addr, true)
		if !ok {
			continue
		}
		k.log.Info("blockdev: supervising a session found in sysfs", "sid", info.SID, "target", info.TargetName,
			"portal", info.Portal, "state", info.State)
		if info.State == "FAILED" {
			k.handleEvent(ctx, &iscsinl.ConnErrorEvent{SID: s.sid})
		}
	}
}
