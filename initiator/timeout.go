package initiator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gosan/iscsi/pdu"
)

// Command timeouts. Every SCSI command has a timeout (WithCommandTimeout,
// or ContextWithCommandTimeout for one call), also those issued by ReadAt
// and WriteAt without a context. A watchdog goroutine per session looks for
// commands past their deadline (the hot path only stores a deadline taken
// from the watchdog's coarse clock: no timer, no allocation, no clock
// read per command) and wakes their callers, which escalate as the Linux
// SCSI error handler does, each step bounded by the TMF timeout: ABORT
// TASK; if that is not answered or fails, LOGICAL UNIT RESET; if that is
// not answered or fails, the connection is dropped and recovery reinstates
// the session. Once the task is settled (no PDU of it can reach the
// caller's buffer any more) the command is issued once more; if that times
// out too, the call fails with *CommandTimeoutError. While the session
// recovers, commands do not time out: the replacement timeout bounds that.

// cmdTimeoutKey is the context key of ContextWithCommandTimeout.
type cmdTimeoutKey struct{}

// ContextWithCommandTimeout returns a context under which the SCSI commands
// that a call issues time out after d instead of the session's
// WithCommandTimeout (0: no timeout). The context's own deadline, if any,
// still ends the call as a cancellation does.
func ContextWithCommandTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, cmdTimeoutKey{}, d)
}

// commandTimeout is the timeout of a command issued under ctx.
func (s *Session) commandTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Value(cmdTimeoutKey{}).(time.Duration); ok {
		return d
	}
	return s.cfg.cmdTimeout
}

// RecoveryStep is a step of the escalation after a command timeout.
type RecoveryStep int

// The steps, in the order they are tried.
const (
	StepAbortTask RecoveryStep = iota + 1 // ABORT TASK settled the task
	StepLUNReset                          // LOGICAL UNIT RESET settled it
	StepReconnect                         // the connection was dropped (recovery reinstates the session)
)

func (st RecoveryStep) String() string {
	switch st {
	case StepAbortTask:
		return "abort task"
	case StepLUNReset:
		return "logical unit reset"
	case StepReconnect:
		return "session reinstatement"
	}
	return fmt.Sprintf("RecoveryStep(%d)", int(st))
}

// ErrCommandTimeout is the errors.Is target of *CommandTimeoutError.
var ErrCommandTimeout = errors.New("iscsi: command timed out")

// CommandTimeoutError reports a command that timed out on each attempt
// (or that could not be sent within its timeout because the target kept
// its command window closed). A write that fails this way may or may not
// have reached the medium; it was never acknowledged.
type CommandTimeoutError struct {
	Timeout  time.Duration // the timeout of each attempt
	Attempts int           // how many times it was sent and timed out
	// Steps is what settled the task after each timeout, in order.
	Steps []RecoveryStep
	// WindowClosed: the command timed out before it could be sent.
	WindowClosed bool
}

func (e *CommandTimeoutError) Error() string {
	if e.WindowClosed && e.Attempts == 0 {
		return fmt.Sprintf("iscsi: command not sent within %v: the target's command window stayed closed", e.Timeout)
	}
	steps := make([]string, len(e.Steps))
	for i, st := range e.Steps {
		steps[i] = st.String()
	}
	return fmt.Sprintf("iscsi: command timed out after %v, %d times (recovered by: %s)", e.Timeout, e.Attempts, strings.Join(steps, ", "))
}

// Is makes errors.Is(err, ErrCommandTimeout) true.
func (e *CommandTimeoutError) Is(target error) bool { return target == ErrCommandTimeout }

// timeoutTick is the watchdog's period: a tenth of the session's command
// timeout, between 10 ms and 1 s. A command times out between its timeout
// and its timeout plus one tick.
func (s *Session) timeoutTick() time.Duration {
	return min(max(s.cfg.cmdTimeout/10, 10*time.Millisecond), time.Second)
}

// armTimeout sets the deadline of a command about to be sent.
func (s *Session) armTimeout(sl *slot) {
	sl.expired.Store(idleITT)
	if sl.timeout <= 0 {
		sl.deadline.Store(0)
		return
	}
	sl.deadline.Store(s.clock.Load() + int64(sl.timeout) + int64(s.timeoutTick()))
}

// watchTimeouts is the session's watchdog: it advances the coarse clock and
// expires the commands past their deadline.
func (s *Session) watchTimeouts() {
	defer s.wg.Done()
	t := time.NewTicker(s.timeoutTick())
	defer t.Stop()
	for {
		select {
		case <-s.life.Done():
			return
		case <-s.term:
			return
		case now := <-t.C:
			n := now.UnixNano()
			s.clock.Store(n)
			s.expireOverdue(n)
		}
	}
}

// expireOverdue marks the commands past their deadline expired and wakes
// their callers (a caller reading PDUs itself is interrupted by the
// background reader's watch). Nothing expires while the connection is
// down: recovery re-arms the deadlines when it re-issues the commands.
func (s *Session) expireOverdue(now int64) {
	c := s.conn.Load()
	if c == nil || c.isDead() {
		return
	}
	for i := range cap(s.slots.free) {
		sl := &s.slots.slots[i]
		itt := sl.itt.Load()
		if itt == idleITT {
			continue
		}
		d := sl.deadline.Load()
		if d == 0 || now < d || sl.itt.Load() != itt {
			continue
		}
		if sl.expired.CompareAndSwap(idleITT, itt) {
			sl.wake()
		}
	}
}

// expiredNow reports whether the owner's task (its current ITT) expired.
func (sl *slot) expiredNow() bool {
	e := sl.expired.Load()
	return e != idleITT && e == sl.ittFor()
}

// escalate settles a command whose caller's wait timed out: ABORT TASK,
// then LOGICAL UNIT RESET, then dropping the connection, each step only
// when the one before it was not answered or failed. It returns the step
// that settled the task and releases the slot, or completed when the task
// finished meanwhile (the slot is then left for complete).
func (s *Session) escalate(sl *slot) (step RecoveryStep, completed bool) {
	s.stats.cmdTimeouts.Add(1)
	s.win.mu.Lock() // recovery collects and re-issues tasks under it
	sl.mu.Lock()
	c, done, cmdSN := sl.conn, sl.done, sl.cmdSN
	if !done {
		sl.cancelled = true // recovery no longer re-issues it: we do
	}
	sl.mu.Unlock()
	s.win.mu.Unlock()
	if done {
		return 0, true
	}
	itt := sl.ittFor()
	s.log.Warn("iscsi: command timed out", "target", s.target, "lun", sl.lun, "itt", itt,
		"opcode", fmt.Sprintf("%#02x", sl.cdb[0]), "timeout", sl.timeout)
	switch {
	case c.isDead():
		<-c.readerDone
		step = StepReconnect
	case s.settleTMF(c, pdu.TMFAbortTask, sl.lun, itt, cmdSN):
		step = StepAbortTask
	case s.settleTMF(c, pdu.TMFLogicalUnitReset, sl.lun, idleITT, 0):
		step = StepLUNReset
	default:
		c.fail(&ConnectionError{Op: "command timeout", Err: fmt.Errorf("%w: neither ABORT TASK nor LOGICAL UNIT RESET settled the task", ErrCommandTimeout)})
		<-c.readerDone
		step = StepReconnect
	}
	sl.mu.Lock()
	done, err := sl.done, sl.err
	sl.mu.Unlock()
	if done && err == nil {
		// The response came before the abort reached the target.
		return 0, true
	}
	// No PDU of the task can reach its buffer any more: the TMF response
	// retired its ITT, or the reset concluded it, or the reader has exited.
	if sl.out != nil {
		if errors.Is(err, ErrTaskAborted) {
			c.drain(itt) // the R2Ts answered before the reset's response
		} else {
			c.forget(itt)
		}
	}
	sl.itt.Store(idleITT)
	select { // a wake-up of the finish that concluded it
	case <-sl.ev:
	default:
	}
	sl.in, sl.out = nil, nil
	s.slots.release(sl)
	s.log.Info("iscsi: timed-out command settled", "target", s.target, "itt", itt, "by", step)
	return step, false
}

// settleTMF sends a task management request for a timed-out command and
// reports whether it settled the task. A request the target does not
// answer within the TMF timeout does not fail the connection here (the
// next step decides): its slot is left to a late answer, or to the
// connection's end.
func (s *Session) settleTMF(c *conn, fn pdu.TMFunction, lun uint64, refITT, refCmdSN uint32) bool {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.tmfTimeout)
	defer cancel()
	err := s.tmfKeep(ctx, c, fn, lun, refITT, refCmdSN)
	var te *TMFError
	if err == nil || (fn == pdu.TMFAbortTask && errors.As(err, &te) && te.Response == pdu.TMFTaskDoesNotExist) {
		return true
	}
	s.log.Warn("iscsi: task management for a timed-out command failed", "target", s.target, "function", fn, "err", err)
	return false
}
