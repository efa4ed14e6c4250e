//go:build linux

package initiator

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The recovery fault tests run one at a time (no t.Parallel): each checks
// that no goroutine is left behind, which needs a quiet process.

const recRegion = 16 << 20

// recoverySession dials the plain fixture target of srv with recovery on
// and opens LUN 1.
func recoverySession(t *testing.T, f *tgtd.Fixture, states *stateLog, opts ...Option) (*Session, *LUN) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts = append([]Option{WithLogger(testLogger(t)), WithStateFunc(states.fn)}, opts...)
	s, err := Dial(ctx, f.Portal, f.Plain.IQN, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	return s, l
}

func backing(t *testing.T, f *tgtd.Fixture) func() []byte {
	return func() []byte { return fileBytes(t, f.Plain.LUNs[0].Path, 0, recRegion) }
}

// TestRecoveryTargetKilled kills tgtd with SIGKILL in the middle of a write
// workload and restarts it with the same configuration, twice; the callers
// see no error and the backing file holds every acknowledged write.
func TestRecoveryTargetKilled(t *testing.T) {
	fixture(t)
	srv, f := tgtd.StartFixture(t)
	before := goroutines()
	states := &stateLog{}
	s, l := recoverySession(t, f, states)
	w := startWorkload(t, l, 8, recRegion, false)
	ctx := context.Background()
	for round := range 2 {
		w.waitProgress(t, 200, 20*time.Second)
		require.NoError(t, srv.Kill())
		killed := time.Now()
		time.Sleep(500 * time.Millisecond)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		require.NoError(t, srv.Restart(rctx))
		cancel()
		restarted := time.Now()
		w.waitProgress(t, 200, 60*time.Second)
		first, ok := w.firstAfter(restarted)
		require.True(t, ok)
		t.Logf("round %d: SIGKILL -> tgtd restarted %v -> first command completed after the restart: %v after the kill",
			round+1, restarted.Sub(killed).Round(time.Millisecond), first.Sub(killed).Round(time.Millisecond))
	}
	w.finish(t, backing(t, f))
	st := s.Stats()
	t.Logf("stats: %+v", st)
	assert.GreaterOrEqual(t, st.Reconnects, uint64(2))
	assert.GreaterOrEqual(t, st.ConnectionFailures, uint64(2))
	assert.Greater(t, st.RetriedCommands, uint64(0), "commands in flight at the kill were re-issued")
	assert.Contains(t, states.list(), StateRecovering)
	assert.Equal(t, StateConnected, s.State())
	require.NoError(t, s.Close())
	assert.Equal(t, StateClosed, s.State())
	checkNoLeak(t, before)
}

// TestRecoveryConnectionDeleted drops the connection on the target
// (tgtadm --mode conn --op delete) during writes and during a large read.
func TestRecoveryConnectionDeleted(t *testing.T) {
	fixture(t)
	srv, f := tgtd.StartFixture(t)
	before := goroutines()
	states := &stateLog{}
	s, l := recoverySession(t, f, states)
	ctx := context.Background()
	drop := func() {
		t.Helper()
		sess, err := srv.Sessions(ctx, f.Plain.TID)
		require.NoError(t, err)
		require.Len(t, sess, 1, "one session: the reinstatement replaced the old one")
		require.NotEmpty(t, sess[0].Connections)
		require.NoError(t, srv.DeleteConnection(ctx, f.Plain.TID, sess[0].SID, sess[0].Connections[0].CID))
	}

	t.Run("writes", func(t *testing.T) {
		w := startWorkload(t, l, 8, recRegion, true)
		for range 2 {
			w.waitProgress(t, 100, 20*time.Second)
			drop()
			w.waitProgress(t, 100, 30*time.Second)
		}
		w.finish(t, backing(t, f))
	})

	t.Run("large read", func(t *testing.T) {
		const n = 32 << 20
		want := randBytes(n)
		_, err := l.WriteAt(want, recRegion)
		require.NoError(t, err)
		reconnects := s.Stats().Reconnects
		for s.Stats().Reconnects == reconnects {
			got := make([]byte, n)
			done := make(chan error, 1)
			go func() {
				_, err := l.ReadAt(got, recRegion)
				done <- err
			}()
			time.Sleep(30 * time.Millisecond)
			drop()
			require.NoError(t, <-done)
			require.True(t, bytes.Equal(want, got), "the large read returned other data")
		}
		assert.Equal(t, want, fileBytes(t, f.Plain.LUNs[0].Path, recRegion, n))
	})
	t.Logf("stats: %+v", s.Stats())
	require.NoError(t, s.Close())
	checkNoLeak(t, before)
}

// TestRecoveryTargetFrozen stops tgtd with SIGSTOP: the keepalive NOP-Out
// goes unanswered, the connection is declared dead and recovery starts; it
// completes once tgtd runs again.
func TestRecoveryTargetFrozen(t *testing.T) {
	fixture(t)
	srv, f := tgtd.StartFixture(t)
	before := goroutines()
	states := &stateLog{}
	s, l := recoverySession(t, f, states, WithNOP(300*time.Millisecond, 700*time.Millisecond), WithLoginTimeout(2*time.Second))
	w := startWorkload(t, l, 4, recRegion, false)
	w.waitProgress(t, 100, 20*time.Second)
	require.NoError(t, srv.Stop())
	stopped := time.Now()
	require.Eventually(t, func() bool { return s.Stats().NOPTimeouts > 0 }, 5*time.Second, 10*time.Millisecond,
		"the keepalive did not declare the frozen target dead")
	// The state follows once the connection's goroutines have ended.
	require.Eventually(t, func() bool { _, ok := states.firstAfter(StateRecovering, stopped); return ok }, 5*time.Second, 10*time.Millisecond)
	rec, _ := states.firstAfter(StateRecovering, stopped)
	t.Logf("SIGSTOP -> recovering after %v", rec.Sub(stopped).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	require.NoError(t, srv.Cont())
	resumed := time.Now()
	w.waitProgress(t, 100, 60*time.Second)
	first, ok := w.firstAfter(resumed)
	require.True(t, ok)
	t.Logf("SIGCONT -> first command completed after %v", first.Sub(resumed).Round(time.Millisecond))
	w.finish(t, backing(t, f))
	t.Logf("stats: %+v", s.Stats())
	require.NoError(t, s.Close())
	checkNoLeak(t, before)
}

// TestRecoveryNetworkCut runs tgtd in its own network namespace and cuts
// the veth link: 5 s down, and the session recovers; then longer than the
// replacement timeout, and commands fail with the typed error in time
// while the process stays healthy.
func TestRecoveryNetworkCut(t *testing.T) {
	fixture(t)
	srv := tgtd.StartInNetns(t)
	ctx := context.Background()
	f, err := srv.SetupFixture(ctx, "")
	require.NoError(t, err)
	nop := WithNOP(300*time.Millisecond, 700*time.Millisecond)

	t.Run("5s", func(t *testing.T) {
		before := goroutines()
		states := &stateLog{}
		s, l := recoverySession(t, f, states, nop, WithLoginTimeout(2*time.Second))
		w := startWorkload(t, l, 8, recRegion, false)
		w.waitProgress(t, 100, 20*time.Second)
		require.NoError(t, srv.LinkDown(ctx))
		down := time.Now()
		time.Sleep(5 * time.Second)
		require.NoError(t, srv.LinkUp(ctx))
		up := time.Now()
		w.waitProgress(t, 100, 60*time.Second)
		rec, ok := states.firstAfter(StateConnected, up)
		require.True(t, ok, "states: %v", states.list())
		first, _ := w.firstAfter(up)
		t.Logf("link down %v; link up -> session recovered after %v, first command completed after %v",
			up.Sub(down).Round(time.Millisecond), rec.Sub(up).Round(time.Millisecond), first.Sub(up).Round(time.Millisecond))
		w.finish(t, backing(t, f))
		t.Logf("stats: %+v", s.Stats())
		require.NoError(t, s.Close())
		checkNoLeak(t, before)
	})

	t.Run("beyond the replacement timeout", func(t *testing.T) {
		before := goroutines()
		states := &stateLog{}
		const timeout = 4 * time.Second
		s, l := recoverySession(t, f, states, nop, WithLoginTimeout(time.Second), WithReplacementTimeout(timeout))
		_, err := l.WriteAt(make([]byte, 4096), 0)
		require.NoError(t, err)
		require.NoError(t, srv.LinkDown(ctx))
		down := time.Now()
		t.Cleanup(func() { _ = srv.LinkUp(ctx) })
		errs := make(chan error, 4)
		for i := range 4 {
			go func() {
				_, err := l.WriteAt(randBytes(65536), int64(i)*65536)
				errs <- err
			}()
		}
		for range 4 {
			err := <-errs
			require.ErrorIs(t, err, ErrSessionFailed)
			var sf *SessionFailedError
			require.ErrorAs(t, err, &sf)
		}
		elapsed := time.Since(down)
		t.Logf("link down -> commands failed with %T after %v (NOP detection ~1 s + replacement timeout %v)", &SessionFailedError{}, elapsed.Round(time.Millisecond), timeout)
		assert.Less(t, elapsed, timeout+4*time.Second)
		assert.Equal(t, StateFailed, s.State())
		require.ErrorIs(t, s.Err(), ErrSessionFailed)
		_, err = l.WriteAt(make([]byte, 4096), 0)
		require.ErrorIs(t, err, ErrSessionFailed, "new commands fail at once")
		start := time.Now()
		_ = s.Close()
		assert.Less(t, time.Since(start), time.Second, "Close of a failed session")
		checkNoLeak(t, before)
		// The process is fine: with the link back, a new session works.
		require.NoError(t, srv.LinkUp(ctx))
		s2, l2 := recoverySession(t, f, &stateLog{})
		_, err = l2.WriteAt(make([]byte, 4096), 0)
		require.NoError(t, err)
		require.NoError(t, s2.Close())
		assert.False(t, errors.Is(s2.Err(), ErrSessionFailed))
	})
}
