package initiator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gosan/iscsi/internal/login"
	"github.com/gosan/iscsi/pdu"
)

// State is the life-cycle state of a Session, reported to the function set
// with WithStateFunc.
type State int

const (
	// StateConnected: the session has a connection in full feature phase.
	StateConnected State = iota
	// StateRecovering: the connection failed; the session is reconnecting.
	// Commands wait (within their context) and are re-issued afterwards.
	StateRecovering
	// StateFailed: no replacement connection within the replacement
	// timeout. Every command fails with a *SessionFailedError.
	StateFailed
	// StateClosed: Close was called.
	StateClosed
)

func (st State) String() string {
	switch st {
	case StateConnected:
		return "connected"
	case StateRecovering:
		return "recovering"
	case StateFailed:
		return "failed"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(st))
}

// StateFunc receives every state change with its cause: the connection
// failure for StateRecovering, the *SessionFailedError for StateFailed,
// nil otherwise. It is called from the session's recovery goroutine, one
// call at a time in order; it must return promptly and must not call Close.
type StateFunc func(st State, cause error)

// Stats are a session's counters since Dial.
type Stats struct {
	// ConnectionFailures counts connections lost (for any reason but Close).
	ConnectionFailures uint64
	// Reconnects counts replacement connections logged in (session
	// reinstatements).
	Reconnects uint64
	// ReconnectAttempts counts login attempts made to replace a connection.
	ReconnectAttempts uint64
	// RetriedCommands counts SCSI commands re-issued on a replacement
	// connection.
	RetriedCommands uint64
	// HeaderDigestErrors and DataDigestErrors count CRC32C mismatches on
	// received PDUs (each one ends the connection at error recovery level 0).
	HeaderDigestErrors uint64
	DataDigestErrors   uint64
	// NOPTimeouts counts connections declared dead because a keepalive
	// NOP-Out was not answered (WithNOP).
	NOPTimeouts uint64
	// SendTimeouts counts connections declared dead because a send did
	// not complete within the send timeout (WithSendTimeout).
	SendTimeouts uint64
	// CommandTimeouts counts SCSI commands that outlived their command
	// timeout (WithCommandTimeout), each attempt once.
	CommandTimeouts uint64
	// AbortTasks and LUNResets count the ABORT TASK and LOGICAL UNIT RESET
	// requests sent, for a command timeout, a cancelled context or a call.
	AbortTasks uint64
	LUNResets  uint64
}

type stats struct {
	connFailures       atomic.Uint64
	reconnects         atomic.Uint64
	attempts           atomic.Uint64
	retried            atomic.Uint64
	headerDigestErrors atomic.Uint64
	dataDigestErrors   atomic.Uint64
	nopTimeouts        atomic.Uint64
	sendTimeouts       atomic.Uint64
	cmdTimeouts        atomic.Uint64
	abortTasks         atomic.Uint64
	lunResets          atomic.Uint64
}

// Stats returns the session's counters.
func (s *Session) Stats() Stats {
	return Stats{
		ConnectionFailures: s.stats.connFailures.Load(),
		Reconnects:         s.stats.reconnects.Load(),
		ReconnectAttempts:  s.stats.attempts.Load(),
		RetriedCommands:    s.stats.retried.Load(),
		HeaderDigestErrors: s.stats.headerDigestErrors.Load(),
		DataDigestErrors:   s.stats.dataDigestErrors.Load(),
		NOPTimeouts:        s.stats.nopTimeouts.Load(),
		SendTimeouts:       s.stats.sendTimeouts.Load(),
		CommandTimeouts:    s.stats.cmdTimeouts.Load(),
		AbortTasks:         s.stats.abortTasks.Load(),
		LUNResets:          s.stats.lunResets.Load(),
	}
}

// State returns the session's current state.
func (s *Session) State() State {
	s.stMu.Lock()
	defer s.stMu.Unlock()
	return s.state
}

// Reconnection back-off: 1 s doubling to 30 s between rounds over the
// portals (as libiscsi), always within the replacement timeout.
const (
	firstBackoff = time.Second
	maxBackoff   = 30 * time.Second
	// maxTime2Wait caps the target's DefaultTime2Wait (RFC 7143 allows up
	// to 3600 s; waiting that long is never useful to a caller).
	maxTime2Wait = 30 * time.Second
	// maxReplays bounds how often one command is re-issued: a command that
	// brings the connection down every time fails instead of looping.
	maxReplays = 8
)

// notify records a state change, wakes waiters and calls the StateFunc.
func (s *Session) notify(st State, cause error) {
	s.stMu.Lock()
	s.state = st
	if st == StateFailed || st == StateClosed {
		if !s.termSet {
			s.termSet = true
			close(s.term)
		}
		s.stErr = nil
		if st == StateFailed {
			s.stErr = cause
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.stMu.Unlock()
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("iscsi: session state", "state", st.String(), "cause", cause)
	}
	if s.cfg.stateFunc != nil {
		s.cfg.stateFunc(st, cause)
	}
}

// broadcast wakes goroutines waiting for a connection change.
func (s *Session) broadcast() {
	s.stMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.stMu.Unlock()
}

// supervise is the session's recovery goroutine: it waits for the current
// connection to fail, then replaces it (or fails the session) and
// re-issues the commands that had not completed.
func (s *Session) supervise() {
	defer s.wg.Done()
	closeErr := &ConnectionError{Op: "close", Err: ErrSessionClosed}
	for {
		c := s.conn.Load()
		select {
		case <-c.dead:
		case <-s.life.Done():
			c.fail(closeErr)
		}
		<-c.readerDone
		<-c.auxDone
		c.quiesce()
		s.slots.reclaim(c)
		if s.closed.Load() {
			s.failPending(c, closeErr)
			s.notify(StateClosed, nil)
			return
		}
		cause := c.deadErr
		s.stats.connFailures.Add(1)
		if s.cfg.replacementTimeout <= 0 {
			ferr := &SessionFailedError{Cause: cause}
			s.notify(StateFailed, ferr)
			s.failPending(c, ferr)
			return
		}
		failedAt := time.Now()
		s.notify(StateRecovering, cause)
		nc, res, err := s.reconnect(c, cause)
		if err != nil {
			if s.closed.Load() {
				s.failPending(c, closeErr)
				s.notify(StateClosed, nil)
				return
			}
			ferr := &SessionFailedError{Cause: err}
			s.notify(StateFailed, ferr)
			s.failPending(c, ferr)
			return
		}
		s.stats.reconnects.Add(1)
		n := s.replay(c, nc, res)
		s.log.Info("iscsi: session recovered", "target", s.target, "portal", nc.portal,
			"tsih", nc.tsih, "after", time.Since(failedAt).Round(time.Millisecond), "reissued", n, "cause", cause)
	}
}

// reconnect logs in again with the session's ISID and TSIH 0, so the target
// reinstates the session (and drops the old one's tasks): after the target's
// DefaultTime2Wait, trying every portal in order, rounds separated by a
// growing back-off, all within the replacement timeout.
func (s *Session) reconnect(old *conn, cause error) (*conn, *login.Result, error) {
	timeout := s.cfg.replacementTimeout
	ctx, cancel := context.WithTimeout(s.life, timeout)
	defer cancel()
	wait := min(time.Duration(old.neg.DefaultTime2Wait)*time.Second, maxTime2Wait)
	if t := old.time2Wait.Load(); t > 0 {
		// The target said when to come back (Async event 2 or 3).
		wait = min(time.Duration(t-1)*time.Second, maxTime2Wait)
	}
	last := cause
	fail := func() (*conn, *login.Result, error) {
		if s.closed.Load() {
			return nil, nil, ErrSessionClosed
		}
		return nil, nil, fmt.Errorf("iscsi: no replacement connection within %v: %w", timeout, last)
	}
	if !sleepCtx(ctx, wait) {
		return fail()
	}
	backoff := firstBackoff
	for {
		for _, p := range s.portals {
			s.stats.attempts.Add(1)
			lctx, lcancel := context.WithTimeout(ctx, s.cfg.loginTimeout)
			c, res, err := s.connect(lctx, p, s.target)
			lcancel()
			if err == nil {
				c.gen = old.gen + 1
				return c, res, nil
			}
			s.log.Debug("iscsi: reconnection attempt failed", "portal", p, "err", err)
			if ctx.Err() != nil {
				if last == cause || !errors.Is(err, context.DeadlineExceeded) {
					last = err
				}
				return fail()
			}
			last = err
		}
		if !sleepCtx(ctx, backoff) {
			return fail()
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pendingOn returns, in CmdSN order, the SCSI commands that belong to c and
// have not completed (nor been given up by their caller). The caller holds
// s.win.mu, so no command is being handed to c meanwhile.
func (s *Session) pendingOn(c *conn) []*slot {
	var out []*slot
	for i := range s.slots.slots {
		sl := &s.slots.slots[i]
		sl.mu.Lock()
		if sl.conn == c && !sl.done && !sl.cancelled {
			out = append(out, sl)
		}
		sl.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b *slot) int { return int(pdu.SerialDiff(a.cmdSN, b.cmdSN)) })
	return out
}

// failPending fails every command still pending on the dead connection c.
func (s *Session) failPending(c *conn, err error) {
	s.win.mu.Lock()
	pending := s.pendingOn(c)
	s.win.mu.Unlock()
	for _, sl := range pending {
		sl.finish(err)
	}
}

// replay makes nc the session's connection and re-issues the commands
// pending on old, in their original CmdSN order with new CmdSNs and all
// their data; partially received Data-In is read again. It returns how
// many it re-issued.
func (s *Session) replay(old, nc *conn, res *login.Result) int {
	s.win.mu.Lock()
	pending := s.pendingOn(old)
	keep := pending[:0]
	for _, sl := range pending {
		sl.itt.Store(idleITT) // no PDU reaches it until it is re-issued
		sl.mu.Lock()
		over := sl.replayed >= maxReplays
		if !over {
			sl.conn = nc // if nc fails before the re-issue, the next recovery finds it
		}
		sl.mu.Unlock()
		if over {
			sl.finish(&ConnectionError{Op: "re-issue",
				Err: fmt.Errorf("connection lost %d times while the command was in flight: %w", maxReplays, old.deadErr)})
			continue
		}
		keep = append(keep, sl)
	}
	s.win.cmdSN, s.win.expCmdSN, s.win.maxCmdSN = res.CmdSN, res.ExpCmdSN, res.MaxCmdSN
	s.win.wakeLocked()
	s.conn.Store(nc)
	nc.start()
	s.win.mu.Unlock()
	s.broadcast()
	// Connected before any re-issued command can complete on nc, so a
	// caller whose command finishes sees the state (and the counters)
	// that explain it.
	s.notify(StateConnected, nil)

	n := 0
	for _, sl := range keep {
		if err := s.win.lockOpen(s.life, nc.dead, nc.err, 0, nil); err != nil {
			break // the rest stays pending on nc: the next recovery (or Close) handles it
		}
		sl.mu.Lock()
		skip := sl.cancelled || sl.done
		if !skip {
			sl.replayed++
			sl.resetProgress()
		}
		sl.mu.Unlock()
		if skip || nc.isDead() {
			s.win.mu.Unlock()
			continue
		}
		var hdr pdu.BHS
		imm, unsol := nc.buildCommand(sl, &hdr)
		sn := s.win.cmdSN
		s.win.cmdSN++
		sl.cmdSN = sn
		s.stats.retried.Add(1)
		s.armTimeout(sl) // a full timeout on the new connection
		nc.sendCommandLocked(sl, &hdr, sn, imm, unsol, nil)
		n++
	}
	return n
}
