package initiator

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of the reader role: callers read their own responses (conn.leadUntil),
// the background reader covers idle times, and a reading caller whose
// context ends gives the role up only between PDUs.

// halfDataIn writes a Data-In PDU with status for itt carrying data, but
// only its first cut bytes (header included); the rest follows when rest is
// closed. Like a real target it sends nothing else meanwhile.
func halfDataIn(ft *fakeTarget, itt uint32, data []byte, cut int, rest <-chan struct{}) {
	h := hDataIn(itt, 0, 0, 0x81)
	ft.mu.Lock()
	putWord(h[:], 24, ft.statSN)
	ft.statSN++
	putWord(h[:], 28, ft.expCmdSN)
	putWord(h[:], 32, ft.maxCmdSN)
	ft.mu.Unlock()
	h.SetDataSegmentLength(len(data))
	wire := append(h[:], data...)
	ft.wmu.Lock()
	_, _ = ft.nc.Write(wire[:cut])
	go func() {
		<-rest
		_, _ = ft.nc.Write(wire[cut:])
		ft.wmu.Unlock()
	}()
}

func isRead10At(h *pdu.BHS, lba uint32) bool {
	if h.Opcode() != pdu.OpSCSICommand || h[32] != 0x28 {
		return false
	}
	l, _ := cdbLBA(h[32:48])
	return l == int(lba)
}

func TestLeaderCancelledBetweenPDUs(t *testing.T) {
	// The target never answers one read: the caller reading the connection
	// for it is interrupted when its context ends, the command is aborted,
	// and the session goes on.
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		return isRead10At(h, 5000) // swallow it
	}
	s, ft := newFakePair(t, testNeg, handle)
	l := fakeLUN(s, ft)
	c := s.conn.Load()
	require.True(t, c.canLead, "a TCP connection supports read deadlines")
	buf := make([]byte, 4096)
	// The first reads after login may find the background reader reading;
	// it hands over once a caller waited for it.
	for i := 0; i < 200 && c.leads.Load() == 0; i++ {
		_, err := l.ReadAt(buf, 0)
		require.NoError(t, err)
	}
	require.Positive(t, c.leads.Load(), "the caller read its own response")

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := l.ReadAtContext(ctx, buf, 5000*512)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second, "returns soon after its deadline")

	for i := range 20 {
		off := int64(i) * 4096
		_, err := l.ReadAt(buf, off)
		require.NoError(t, err)
		require.Equal(t, ft.diskBytes(int(off), 4096), buf, "read %d after the abort", i)
	}
	require.NoError(t, s.Err())
}

func TestLeaderCancelledInsidePDU(t *testing.T) {
	// The target sends half a Data-In PDU, the caller's context ends, the
	// rest comes later: the PDU is not torn, and the connection stays in
	// step for the commands that follow.
	rest := make(chan struct{})
	want := bytes.Repeat([]byte{0x5c}, 4096)
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		if !isRead10At(h, 5008) {
			return false
		}
		halfDataIn(ft, h.ITT(), want, pdu.BHSLen+1000, rest)
		return true
	}
	s, ft := newFakePair(t, testNeg, handle)
	l := fakeLUN(s, ft)
	buf := make([]byte, 4096)
	for range 3 { // so that the caller, not the background reader, reads next
		_, err := l.ReadAt(buf, 0)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
		time.Sleep(10 * watchPeriod) // several interruptions inside the PDU
		close(rest)
	}()
	_, err := l.ReadAtContext(ctx, buf, 5008*512)
	t.Logf("interrupted read: %v", err)
	if err == nil {
		require.Equal(t, want, buf, "the read completed: its data is whole")
	} else {
		require.ErrorIs(t, err, context.Canceled)
	}
	require.NoError(t, s.Err(), "the connection stayed in step")
	for i := range 20 {
		off := int64(i) * 4096
		_, err := l.ReadAt(buf, off)
		require.NoError(t, err)
		require.Equal(t, ft.diskBytes(int(off), 4096), buf, "read %d after the interrupted PDU", i)
	}
	assert.Zero(t, s.Stats().ConnectionFailures)
}

func TestLeaderCancelledTargetStallsInsidePDU(t *testing.T) {
	// Half a PDU and then nothing: the cancelled caller cannot leave the
	// PDU, so after the TMF timeout the connection is dropped (as for an
	// unanswered ABORT TASK) and the caller returns; nothing writes its
	// buffer afterwards.
	rest := make(chan struct{})
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		if !isRead10At(h, 5016) {
			return false
		}
		halfDataIn(ft, h.ITT(), bytes.Repeat([]byte{0x77}, 4096), pdu.BHSLen+2000, rest)
		return true
	}
	s, ft := newFakePair(t, testNeg, handle, WithTMFTimeout(200*time.Millisecond))
	t.Cleanup(func() { close(rest) }) // before the fake pair's own cleanup
	l := fakeLUN(s, ft)
	c := s.conn.Load()
	for range 3 { // so that the caller, not the background reader, reads next
		_, err := l.ReadAt(make([]byte, 512), 0)
		require.NoError(t, err)
	}
	backing, p := sentinelBuf(4096)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := l.ReadAtContext(ctx, p, 5016*512)
	el := time.Since(start)
	// The caller's deadline and the connection drop race to end the call:
	// either is a correct answer; what matters is that it ends, in time, and
	// that nothing writes the buffer afterwards.
	var ce0 *ConnectionError
	if !errors.Is(err, context.DeadlineExceeded) && !errors.As(err, &ce0) {
		t.Fatalf("read ended with %v, want the deadline or the connection failure", err)
	}
	assert.Less(t, el, 2*time.Second)
	assert.GreaterOrEqual(t, el, 250*time.Millisecond, "waited for the TMF timeout inside the PDU")
	select {
	case <-c.readerDone:
	default:
		t.Fatal("the connection is still read after the caller returned")
	}
	requireGuards(t, backing, len(p))
	snap := append([]byte(nil), p...)
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, snap, p, "the buffer is not written after the caller returned")
	var ce *ConnectionError
	require.ErrorAs(t, c.deadErr, &ce)
	// Dropped either by the unanswered ABORT TASK's timeout or by the reader
	// that found the target stalled inside the PDU: both after the TMF timeout.
	assert.Contains(t, []string{"abort task", "waiting for a response"}, ce.Op)
}

func TestLeaderIdleConnectionAnswersPing(t *testing.T) {
	// With no command in flight the background reader reads: a target
	// ping is answered.
	s, ft := newFakePair(t, testNeg, nil)
	l := fakeLUN(s, ft)
	buf := make([]byte, 4096)
	for range 5 {
		_, err := l.ReadAt(buf, 0)
		require.NoError(t, err)
	}
	time.Sleep(5 * watchPeriod) // the background reader takes the role back
	var h pdu.BHS
	h[0] = byte(pdu.OpNOPIn)
	h[1] = 0x80
	h.SetITT(idleITT)
	putWord(h[:], 20, 0x1234)
	ft.send(&h, nil, false)
	require.Eventually(t, func() bool {
		for _, g := range ft.received() {
			if g.Opcode() == pdu.OpNOPOut && g.TTT() == 0x1234 {
				return true
			}
		}
		return false
	}, 2*time.Second, 5*time.Millisecond, "NOP-Out answering the target's ping")
}

func TestLeaderConcurrentCancellations(t *testing.T) {
	// Many callers, some giving up at random moments, share the reader
	// role: every completed read holds the right data, every error is the
	// caller's own deadline, and the session stays healthy.
	s, ft := newFakePair(t, testNeg, nil, WithQueueDepth(8))
	l := fakeLUN(s, ft)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			buf := make([]byte, 8192)
			for i := range 200 {
				off := int64(rng.IntN(256)) * 4096
				n := 512 * (1 + rng.IntN(16))
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(400))*time.Microsecond)
				if i%3 == 0 {
					cancel()
					ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
				}
				_, err := l.ReadAtContext(ctx, buf[:n], off)
				cancel()
				mu.Lock()
				switch {
				case err == nil && !bytes.Equal(buf[:n], ft.diskBytes(int(off), n)):
					bad = append(bad, "wrong data")
				case err != nil && !errors.Is(err, context.DeadlineExceeded):
					bad = append(bad, err.Error())
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Empty(t, bad)
	require.NoError(t, s.Err())
	buf := make([]byte, 4096)
	_, err := l.ReadAt(buf, 4096)
	require.NoError(t, err)
	require.Equal(t, ft.diskBytes(4096, 4096), buf)
}
