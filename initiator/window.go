package initiator

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gosan/iscsi/pdu"
)

// window is the session's command window (RFC 7143 section 4.2.2.1).
// cmdSN is the next CmdSN to assign; a non-immediate command may be sent
// while cmdSN <= maxCmdSN (serial arithmetic).
//
// The same mutex orders the hand-off of PDUs to the connection's send queue,
// so CmdSNs leave in increasing order.
type window struct {
	mu       sync.Mutex
	cmdSN    uint32
	expCmdSN uint32
	maxCmdSN uint32
	waitCh   chan struct{} // non-nil while someone waits for the window to open
}

func (w *window) reset(cmdSN, expCmdSN, maxCmdSN uint32) {
	w.mu.Lock()
	w.cmdSN, w.expCmdSN, w.maxCmdSN = cmdSN, expCmdSN, maxCmdSN
	w.wakeLocked()
	w.mu.Unlock()
}

// openLocked reports whether a non-immediate command may be sent now.
func (w *window) openLocked() bool { return pdu.SerialLessEq(w.cmdSN, w.maxCmdSN) }

// update applies ExpCmdSN/MaxCmdSN from a target PDU.
func (w *window) update(exp, max uint32) {
	w.mu.Lock()
	// A MaxCmdSN below ExpCmdSN-1 is invalid and ignored (RFC 7143 4.2.2.1).
	if pdu.SerialLess(max, exp-1) {
		w.mu.Unlock()
		return
	}
	if pdu.SerialGreater(exp, w.expCmdSN) {
		w.expCmdSN = exp
	}
	if pdu.SerialGreater(max, w.maxCmdSN) {
		w.maxCmdSN = max
	}
	if w.waitCh != nil && w.openLocked() {
		w.wakeLocked()
	}
	w.mu.Unlock()
}

func (w *window) wakeLocked() {
	if w.waitCh != nil {
		close(w.waitCh)
		w.waitCh = nil
	}
}

// errWindowTimeout: the window stayed closed for the command's timeout.
var errWindowTimeout = errors.New("iscsi: command window closed")

// lockOpen returns with w.mu held and the window open, or with w.mu not
// held and an error (ctx done, dead closed, or errWindowTimeout after
// timeout when it is positive). Only a wait for a closed window pays for a
// timer. beforeWait (may be nil) runs before each wait: a Queue flushes the
// commands it holds back, which the target needs to open the window.
func (w *window) lockOpen(ctx context.Context, dead <-chan struct{}, deadErr func() error, timeout time.Duration, beforeWait func()) error {
	var expired <-chan time.Time
	for {
		w.mu.Lock()
		if w.openLocked() {
			return nil
		}
		ch := w.waitCh
		if ch == nil {
			ch = make(chan struct{})
			w.waitCh = ch
		}
		w.mu.Unlock()
		if beforeWait != nil {
			beforeWait()
		}
		if expired == nil && timeout > 0 {
			t := time.NewTimer(timeout)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-dead:
			return deadErr()
		case <-expired:
			return errWindowTimeout
		}
	}
}
