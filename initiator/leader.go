package initiator

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/gosan/iscsi/pdu"
)

// The reader role: whoever holds it reads and dispatches PDUs (dispatch.go).
// A caller waiting for its command takes the role when it is free and
// reads until its own command completes (at queue depth 1 it reads its own
// response: no goroutine hand-off); the background reader (readLoop) holds
// it while no caller does, for PDUs nobody waits for, and gives it up at a
// PDU boundary as soon as a caller asks. So there is never more than one
// reader of a connection at a time, but it is not always the same
// goroutine.

// Reader role states.
const (
	roleFree int32 = iota
	roleHeld
	roleGone // the connection is dead and the background reader has exited
)

// watchPeriod is how often the background reader, while a caller holds the
// reader role, checks whether that caller's context ended (it then
// interrupts the caller's read, see sockReader), and whether the role has
// been free and unused for a whole period (it then takes it). It bounds how
// late a cancelled reading caller returns.
const watchPeriod = 4 * time.Millisecond

// tryLead takes the reader role for a caller if it is free.
func (c *conn) tryLead() bool {
	if c.role.CompareAndSwap(roleFree, roleHeld) {
		c.leads.Add(1)
		return true
	}
	return false
}

// unlead gives the reader role back and wakes a goroutine waiting for it.
func (c *conn) unlead() {
	c.role.Store(roleFree)
	if c.waiters.Load() > 0 {
		select {
		case c.roleCh <- struct{}{}:
		default:
		}
	}
}

// step reads and dispatches one PDU; the caller holds the reader role. It
// reports false when the connection failed (the failure is recorded).
func (c *conn) step(mine bool) bool {
	if c.sr != nil {
		c.sr.boundary = c.r.Buffered() == 0
		// A caller waiting for the only command in flight (its own) waits
		// for it in poll(2) first (see sockReader).
		c.sr.pollWait = mine && len(c.s.slots.free) == cap(c.s.slots.free)-1
	}
	err := c.readPDU()
	if err == nil {
		return true
	}
	if c.sr != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.isDead() {
		// Interrupted between two PDUs (see watch): nothing was consumed.
		if c.nc.SetReadDeadline(time.Time{}) == nil {
			return true
		}
	}
	c.readFailed(err)
	return false
}

// readFailed ends the connection after a receive error: recovery (or the
// session's failure) follows, as for any connection failure.
func (c *conn) readFailed(err error) {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		select {
		case <-c.dead:
			err = c.deadErr
		default:
		}
	}
	if err == nil {
		err = io.EOF
	}
	var de *pdu.DigestError
	if errors.As(err, &de) {
		if de.Header {
			c.s.stats.headerDigestErrors.Add(1)
		} else {
			c.s.stats.dataDigestErrors.Add(1)
		}
	}
	var ce *ConnectionError
	if !errors.As(err, &ce) {
		err = &ConnectionError{Op: "receive", Err: err}
	}
	c.fail(err)
}

// leadUntil reads PDUs, holding the reader role, until *ev has a token
// (which it takes: true; a slot's task completed, or a Queue got a post),
// ctx ends (checked between PDUs; watch interrupts a read that blocks), or
// the connection fails. With batch, after the token it goes on with the
// PDUs already buffered whole (a Queue then reaps their completions in the
// same batch and resubmits them in one writev). It gives the role back
// before returning. A caller never leaves the role in the middle of a PDU.
func (c *conn) leadUntil(ctx context.Context, ev *chan struct{}, batch bool) bool {
	c.leadEv.Store(ev)
	done := ctx.Done()
	if done != nil {
		c.leadMu.Lock()
		c.leadDone = done
		c.leadMu.Unlock()
	}
	ok := false
	for {
		select {
		case <-*ev:
			ok = true
		default:
		}
		if ok {
			for batch && c.r.NextBuffered() && c.step(true) {
			}
			break
		}
		if done != nil {
			select {
			case <-done:
			default:
				if c.step(true) {
					continue
				}
			}
			break
		}
		if !c.step(true) {
			break
		}
	}
	if done != nil {
		c.leadMu.Lock()
		c.leadDone = nil
		c.leadMu.Unlock()
	}
	c.leadEv.Store(nil)
	c.unlead()
	return ok
}

// watch interrupts the read of a caller holding the reader role whose
// context ended or whose event came from elsewhere (a command timeout):
// its blocked read returns at the next PDU boundary. It
// reports whether such a caller holds the role.
func (c *conn) watch() bool {
	if ev := c.leadEv.Load(); ev != nil && len(*ev) > 0 {
		// Someone else woke the reading caller: the watchdog expired its
		// command (timeout.go), or posted to its Queue.
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
		return true
	}
	c.leadMu.Lock()
	d := c.leadDone
	c.leadMu.Unlock()
	if d == nil {
		return false
	}
	select {
	case <-d:
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
		return true
	default:
		return false
	}
}

// readLoop is the background reader. It holds the reader role while no
// caller does (an idle connection still answers target pings, async
// messages and notices a failure), gives it up at a PDU boundary as soon
// as a caller waits for it, and meanwhile watches the reading callers.
// When the connection is dead it takes the role for good and exits: after
// readerDone no PDU is read from this connection any more.
func (c *conn) readLoop() {
	defer close(c.readerDone)
	var t *time.Timer
	for !c.isDead() {
		if c.role.CompareAndSwap(roleFree, roleHeld) {
			// Read until a caller has waited for the role (it may have
			// been served meanwhile: the next one would wait too).
			asks := c.asks.Load()
			for c.step(false) && (!c.canLead || c.asks.Load() == asks) {
			}
			if c.isDead() {
				c.role.Store(roleGone) // keep the role
				return
			}
			c.unlead()
		}
		// A caller reads. Take the role back once it has been free and
		// unused for a whole period.
		if t == nil {
			t = time.NewTimer(watchPeriod)
			defer t.Stop()
		} else {
			t.Reset(watchPeriod)
		}
		last := c.leads.Load()
		var stuck time.Time // since when a cancelled caller holds the role
		for {
			select {
			case <-c.dead:
			case <-t.C:
				now := c.leads.Load()
				if !c.watch() || now != last {
					stuck = time.Time{}
				} else if stuck.IsZero() {
					stuck = time.Now()
				} else if time.Since(stuck) > c.s.cfg.tmfTimeout {
					// Its context ended and the target stopped in the middle
					// of a PDU for as long as an ABORT TASK may take: the
					// connection can no longer be trusted (as when an abort
					// goes unanswered).
					c.fail(&ConnectionError{Op: "abort task", Err: errors.New("iscsi: target stalled inside a PDU after the reading caller gave up")})
					continue
				}
				if now != last || c.role.Load() != roleFree {
					last = now
					t.Reset(watchPeriod)
					continue
				}
			}
			break
		}
	}
	c.leadForever()
}

// leadForever takes the reader role from whoever holds it (a reading
// caller gives it up when its read fails on the closed socket) and keeps it.
func (c *conn) leadForever() {
	for {
		if c.role.CompareAndSwap(roleFree, roleGone) {
			return
		}
		c.waiters.Add(1)
		if c.role.CompareAndSwap(roleFree, roleGone) {
			c.waiters.Add(-1)
			return
		}
		t := time.NewTimer(time.Millisecond)
		select {
		case <-c.roleCh:
		case <-t.C:
		}
		t.Stop()
		c.waiters.Add(-1)
	}
}
