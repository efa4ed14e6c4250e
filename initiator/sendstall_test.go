package initiator

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const stallIQN = "iqn.2026-12.org.gosan.test:stall"

// maxBurst is the largest MaxBurstLength (2^24-1) rounded down to blocks.
const maxBurst = 1<<24 - 512

// stallServer serves a 48 MiB LUN with 16 MiB bursts and four outstanding
// R2Ts, so one write puts tens of MiB in flight: more than the socket
// buffers hold, so a writev blocks when the target stops reading.
func stallServer(t *testing.T) *iscsitest.Server {
	t.Helper()
	srv, err := iscsitest.NewServer(iscsitest.Config{
		Targets: []iscsitest.Target{{Name: stallIQN, LUNs: []iscsitest.LUN{{Number: 1, Blocks: 98304, BlockSize: 512}}}},
		Negotiation: iscsitest.Negotiation{
			MaxRecvDataSegmentLength: 262144, DeclareMaxRecvDataSegmentLength: true,
			MaxBurstLength: maxBurst, MaxOutstandingR2T: 4,
		},
		NoUnitAttention: true,
	})
	require.NoError(t, err)
	return srv
}

// causeLog records the cause of every StateRecovering.
type causeLog struct {
	mu     sync.Mutex
	causes []error
	at     []time.Time
}

func (l *causeLog) fn(st State, cause error) {
	if st != StateRecovering {
		return
	}
	l.mu.Lock()
	l.causes = append(l.causes, cause)
	l.at = append(l.at, time.Now())
	l.mu.Unlock()
}

func (l *causeLog) first() (error, time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.causes) == 0 {
		return nil, time.Time{}, false
	}
	return l.causes[0], l.at[0], true
}

func dialStall(t *testing.T, srv *iscsitest.Server, sendTimeout time.Duration, cl *causeLog, opts ...Option) (*Session, *LUN) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts = append([]Option{WithLogger(testLogger(t)), WithNOP(0, 0),
		WithBurstLengths(262144, maxBurst), WithSendTimeout(sendTimeout), WithStateFunc(cl.fn)}, opts...)
	s, err := Dial(ctx, srv.Addr(), stallIQN, opts...)
	require.NoError(t, err)
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	return s, l
}

// A target that stops reading while a large write's Data-Out is being
// sent (issue 15): the send fails the connection within the send timeout,
// recovery re-issues the write on a new connection, and the write
// completes with its data on the LUN.
func TestSendStallFailsConnectionAndWriteIsReissued(t *testing.T) {
	before := goroutines()
	srv := stallServer(t)
	defer srv.Close()
	var cl causeLog
	const sendTimeout = time.Second
	s, l := dialStall(t, srv, sendTimeout, &cl)

	data := make([]byte, 32<<20)
	for i := range data {
		data[i] = byte(i>>9) ^ byte(i)
	}
	srv.Faults().StopReadingAfter(1, pdu.OpSCSICommand)
	start := time.Now()
	n, err := l.WriteAt(data, 0)
	took := time.Since(start)
	require.NoError(t, err)
	require.Equal(t, len(data), n)

	cause, at, ok := cl.first()
	require.True(t, ok, "the connection was never declared dead")
	require.ErrorIs(t, cause, ErrSendStalled)
	var ce *ConnectionError
	require.ErrorAs(t, cause, &ce)
	assert.Equal(t, "send", ce.Op)
	// The deadline is armed between sendTimeout/2 and sendTimeout ahead.
	assert.Less(t, at.Sub(start), sendTimeout+2*time.Second, "stall detected too late")
	st := s.Stats()
	assert.Equal(t, uint64(1), st.SendTimeouts, "a send that made progress was taken for a stall")
	assert.GreaterOrEqual(t, st.Reconnects, uint64(1))
	assert.GreaterOrEqual(t, st.RetriedCommands, uint64(1))
	t.Logf("write of 32 MiB took %v, stall detected after %v, stats %+v", took, at.Sub(start), st)

	got, err := srv.LUNData(stallIQN, 1)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got[:len(data)]), "LUN content differs from the write")
	require.NoError(t, s.Close())
	require.NoError(t, srv.Close())
	checkNoLeak(t, before)
}

// The same stall with the write's context cancelled while its Data-Out is
// stuck in the send: the abort cannot be sent either, so the caller must
// not wait for the blocked send beyond the send timeout, and the session
// is usable again afterwards.
func TestSendStallWithAbortedWrite(t *testing.T) {
	before := goroutines()
	srv := stallServer(t)
	defer srv.Close()
	var cl causeLog
	const sendTimeout = 600 * time.Millisecond
	s, l := dialStall(t, srv, sendTimeout, &cl)

	data := bytes.Repeat([]byte{0x5a}, 32<<20)
	srv.Faults().StopReadingAfter(1, pdu.OpSCSICommand)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := l.WriteAtContext(ctx, data, 0)
	took := time.Since(start)
	require.Error(t, err)
	var ce *ConnectionError
	require.True(t, errors.Is(err, context.Canceled) || errors.As(err, &ce), "untyped error: %v", err)
	assert.Less(t, took, 100*time.Millisecond+sendTimeout+3*time.Second, "the cancelled write waited too long")
	t.Logf("cancelled write returned after %v: %v", took, err)

	require.Eventually(t, func() bool { _, _, ok := cl.first(); return ok }, 5*time.Second, time.Millisecond,
		"the connection was never declared dead")
	cause, _, _ := cl.first()
	require.ErrorIs(t, cause, ErrSendStalled)

	// The session recovered: a write and a read through the new connection.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	small := bytes.Repeat([]byte{0xa5}, 4096)
	_, err = l.WriteAtContext(ctx2, small, 1<<20)
	require.NoError(t, err)
	back := make([]byte, 4096)
	_, err = l.ReadAtContext(ctx2, back, 1<<20)
	require.NoError(t, err)
	require.Equal(t, small, back)
	require.NoError(t, s.Close())
	require.NoError(t, srv.Close())
	checkNoLeak(t, before)
}

// With the send bound turned off, the keepalive still notices a target
// that stopped reading: it runs apart from the goroutine stuck in writev
// (before, it shared one with the flusher of the reader's Data-Out and
// never ran again), so its unanswered NOP-Out fails the connection.
func TestKeepaliveNoticesStuckSend(t *testing.T) {
	before := goroutines()
	srv := stallServer(t)
	defer srv.Close()
	var cl causeLog
	const interval, timeout = 200 * time.Millisecond, 300 * time.Millisecond
	s, l := dialStall(t, srv, 0, &cl, WithNOP(interval, timeout))

	// One command (one burst): its Data-Out, queued by the reader when the
	// R2T comes, is written by the aux goroutine, which blocks: 16 MiB is
	// more than the socket buffers take while the target does not read.
	data := bytes.Repeat([]byte{0x3c}, maxBurst)
	srv.Faults().StopReadingAfter(1, pdu.OpSCSICommand)
	start := time.Now()
	_, err := l.WriteAt(data, 0)
	require.NoError(t, err)
	cause, at, ok := cl.first()
	require.True(t, ok, "the connection was never declared dead")
	var ce *ConnectionError
	require.ErrorAs(t, cause, &ce)
	assert.Equal(t, "keepalive", ce.Op)
	assert.Less(t, at.Sub(start), 2*(interval+timeout)+2*time.Second, "keepalive too late")
	st := s.Stats()
	t.Logf("keepalive declared the connection dead after %v; stats %+v", at.Sub(start), st)
	assert.Equal(t, uint64(1), st.NOPTimeouts)
	assert.Zero(t, st.SendTimeouts)
	got, err := srv.LUNData(stallIQN, 1)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got[:len(data)]), "LUN content differs from the write")
	require.NoError(t, s.Close())
	require.NoError(t, srv.Close())
	checkNoLeak(t, before)
}
