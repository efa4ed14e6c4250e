package initiator

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/require"
)

// withGatherHook runs f where the flusher has released the send queue lock
// to let others queue behind it, before it takes a batch.
func withGatherHook(f func(*conn)) Option {
	return func(c *config) { c.gatherHook = f }
}

// queueDataOut queues an unsolicited Data-Out for itt on c and flushes.
func queueDataOut(t *testing.T, c *conn, itt uint32) {
	t.Helper()
	m := pdu.DataOut{Final: true, ITT: itt, TTT: pdu.ReservedTag, Data: make([]byte, 512)}
	var hdr pdu.BHS
	copy(hdr[:], m.AppendHeader(nil))
	c.qmu.Lock()
	c.enqueueLocked(&hdr, m.Data)
	c.kickLocked()
}

// waitUntil polls cond (under c.qmu) until it holds or done is closed.
func waitUntil(t *testing.T, c *conn, done <-chan struct{}, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return
		default:
		}
		c.qmu.Lock()
		ok := cond()
		c.qmu.Unlock()
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("condition not reached")
}

// closedWithin reports whether ch closes within d.
func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// noDataOutFor checks that the target never received a Data-Out for itt.
func noDataOutFor(t *testing.T, ft *fakeTarget, itt uint32) {
	t.Helper()
	time.Sleep(50 * time.Millisecond) // anything sent has arrived by now on loopback
	for _, h := range ft.received() {
		require.False(t, h.Opcode() == pdu.OpDataOut && h.ITT() == itt, "the forgotten Data-Out was sent")
	}
}

// A task that ends while the flusher gathers a batch (issue 15): forget
// removes the task's queued Data-Out, so the flusher finds nothing to write
// and ends without writing a batch. forget must not wait for a batch that
// will never be written; before the fix it slept on the condition forever.
func TestForgetWhileBatchForms(t *testing.T) {
	const itt = 0x7777
	var fired atomic.Bool
	forgot := make(chan struct{})
	hook := func(c *conn) {
		if !fired.CompareAndSwap(false, true) {
			return
		}
		go func() { c.forget(itt); close(forgot) }()
		waitUntil(t, c, forgot, func() bool { return len(c.pend) == 0 && c.batchWaiters > 0 })
	}
	s, ft := newFakePair(t, testNeg, nil, withGatherHook(hook))
	c := s.conn.Load()
	queueDataOut(t, c, itt)
	require.True(t, fired.Load())
	require.True(t, closedWithin(forgot, 5*time.Second), "forget hung after the batch it waited for was dropped")
	c.qmu.Lock()
	require.False(t, c.flushing)
	require.Zero(t, c.batchWaiters)
	c.qmu.Unlock()
	noDataOutFor(t, ft, itt)
}

// drain waits while a batch forms; when another task's forget empties the
// queue the flush ends with no batch written, and drain must be woken to
// see that nothing of its task is queued any more.
func TestDrainWokenWhenFlushEndsEmpty(t *testing.T) {
	const itt = 0x7778
	var fired atomic.Bool
	drained, forgot := make(chan struct{}), make(chan struct{})
	hook := func(c *conn) {
		if !fired.CompareAndSwap(false, true) {
			return
		}
		go func() { c.drain(itt); close(drained) }()
		waitUntil(t, c, drained, func() bool { return c.batchWaiters == 1 })
		go func() { c.forget(itt); close(forgot) }()
		waitUntil(t, c, forgot, func() bool { return len(c.pend) == 0 })
	}
	s, ft := newFakePair(t, testNeg, nil, withGatherHook(hook))
	c := s.conn.Load()
	queueDataOut(t, c, itt)
	require.True(t, closedWithin(forgot, 5*time.Second), "forget hung")
	require.True(t, closedWithin(drained, 5*time.Second), "drain was not woken when the flush ended without a batch")
	noDataOutFor(t, ft, itt)
}
