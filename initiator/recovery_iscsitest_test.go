package initiator

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const recTestIQN = "iqn.2026-11.org.gosan.test:recovery"

// recoveryTestServer serves one 16 MiB LUN from memory and dials it with
// recovery on.
func recoveryTestServer(t *testing.T, opts ...Option) (*iscsitest.Server, *Session, *LUN, func()) {
	t.Helper()
	before := goroutines()
	srv, err := iscsitest.NewServer(iscsitest.Config{Targets: []iscsitest.Target{{
		Name: recTestIQN,
		LUNs: []iscsitest.LUN{{Number: 1, Blocks: 32768, BlockSize: 512}},
	}}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts = append([]Option{WithLogger(testLogger(t)), WithLoginTimeout(time.Second)}, opts...)
	s, err := Dial(ctx, srv.Addr(), recTestIQN, opts...)
	require.NoError(t, err)
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	done := func() {
		t.Helper()
		require.NoError(t, s.Close())
		require.NoError(t, srv.Close())
		checkNoLeak(t, before)
	}
	return srv, s, l, done
}

func lunData(t *testing.T, srv *iscsitest.Server, n int) func() []byte {
	return func() []byte {
		b, err := srv.LUNData(recTestIQN, 1)
		require.NoError(t, err)
		return b[:n]
	}
}

func TestRecoveryDigestErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opt     Option
		corrupt func(*iscsitest.Faults)
		count   func(Stats) uint64
	}{
		{"header", WithHeaderDigest(DigestRequireCRC32C), func(f *iscsitest.Faults) { f.CorruptNextHeaderDigest(1) },
			func(s Stats) uint64 { return s.HeaderDigestErrors }},
		{"data", WithDataDigest(DigestRequireCRC32C), func(f *iscsitest.Faults) { f.CorruptNextDataDigest(1) },
			func(s Stats) uint64 { return s.DataDigestErrors }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, s, l, done := recoveryTestServer(t, tc.opt)
			const region = 8 << 20
			w := startWorkload(t, l, 4, region, true)
			for range 2 {
				w.waitProgress(t, 50, 10*time.Second)
				tc.corrupt(srv.Faults())
				n := tc.count(s.Stats())
				require.Eventually(t, func() bool { return tc.count(s.Stats()) > n }, 10*time.Second, 5*time.Millisecond)
				w.waitProgress(t, 50, 20*time.Second)
			}
			w.finish(t, lunData(t, srv, region))
			st := s.Stats()
			t.Logf("stats: %+v", st)
			assert.GreaterOrEqual(t, st.Reconnects, uint64(2))
			done()
		})
	}
}

// TestRecoveryStallInDataIn stalls the target in the middle of a large
// read's Data-In sequence: the keepalive declares the connection dead, the
// read is issued again on a new connection and returns the right data.
func TestRecoveryStallInDataIn(t *testing.T) {
	srv, s, l, done := recoveryTestServer(t, WithNOP(200*time.Millisecond, 500*time.Millisecond), WithMaxRecvDataSegmentLength(8192))
	const n = 4 << 20
	want := randBytes(n)
	require.NoError(t, srv.WriteLUN(recTestIQN, 1, 0, want))
	var armed atomic.Bool
	armed.Store(true)
	srv.Faults().MutateOutgoing(func(hdr, data []byte) []byte {
		if pdu.Opcode(hdr[0]&0x3f) == pdu.OpDataIn && binary.BigEndian.Uint32(hdr[40:44]) >= 64<<10 && armed.CompareAndSwap(true, false) {
			go srv.Faults().Stall(2 * time.Second)
		}
		return data
	})
	got := make([]byte, n)
	start := time.Now()
	_, err := l.ReadAt(got, 0)
	require.NoError(t, err)
	t.Logf("read of %d bytes with a 2 s stall inside its Data-In: %v", n, time.Since(start).Round(time.Millisecond))
	require.Equal(t, want, got)
	st := s.Stats()
	assert.False(t, armed.Load(), "the stall was injected")
	assert.GreaterOrEqual(t, st.NOPTimeouts, uint64(1))
	assert.GreaterOrEqual(t, st.Reconnects, uint64(1))
	assert.GreaterOrEqual(t, st.RetriedCommands, uint64(1))
	srv.Faults().MutateOutgoing(nil)
	done()
}

// TestRecoveryAsyncLogout: the target asks for a logout (Async Message
// event 1) during writes; the session logs out, logs in again and
// re-issues what the logout ended.
func TestRecoveryAsyncLogout(t *testing.T) {
	srv, s, l, done := recoveryTestServer(t)
	const region = 8 << 20
	w := startWorkload(t, l, 4, region, false)
	w.waitProgress(t, 50, 10*time.Second)
	require.Equal(t, 1, srv.SendAsync(pdu.AsyncLogoutRequest, 0, 0, 2))
	require.Eventually(t, func() bool { return s.Stats().Reconnects >= 1 }, 10*time.Second, 5*time.Millisecond)
	w.waitProgress(t, 50, 10*time.Second)
	w.finish(t, lunData(t, srv, region))
	logouts := 0
	for _, r := range srv.Records() {
		logouts += len(r.Filter(iscsitest.Received, pdu.OpLogoutRequest))
	}
	assert.Equal(t, 1, logouts, "the initiator logged out when asked")
	t.Logf("stats: %+v", s.Stats())
	done()
}

// TestRecoveryZeroWindow closes the command window for longer than a
// caller's deadline: that caller gets its context error, the session stays
// usable and works again once the window opens.
func TestRecoveryZeroWindow(t *testing.T) {
	srv, s, l, done := recoveryTestServer(t)
	data := randBytes(65536)
	srv.SetCmdWindow(0)
	time.Sleep(50 * time.Millisecond) // the NOP-In announcing it arrives
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	start := time.Now()
	_, err := l.WriteAtContext(ctx, data, 0)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second)
	require.NoError(t, s.Err())
	assert.Equal(t, StateConnected, s.State())
	srv.SetCmdWindow(128)
	_, err = l.WriteAt(data, 0)
	require.NoError(t, err)
	assert.Equal(t, data, lunData(t, srv, len(data))())
	assert.Zero(t, s.Stats().Reconnects)
	done()
}
