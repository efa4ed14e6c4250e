//go:build linux

package initiator

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// blocksOldOrNew checks that every 512-byte block of got equals the same
// block of old or of new: a write that failed may have reached some
// blocks, never a mix inside one, and never other data.
func blocksOldOrNew(t *testing.T, got, old, new []byte) (fresh int) {
	t.Helper()
	for off := 0; off < len(got); off += 512 {
		g := got[off : off+512]
		switch {
		case bytes.Equal(g, new[off:off+512]):
			fresh++
		case bytes.Equal(g, old[off:off+512]):
		default:
			t.Fatalf("block at %d holds neither the old nor the new data", off)
		}
	}
	return fresh
}

// TestCommandTimeoutTargetFrozen freezes tgtd (SIGSTOP) for longer than the
// command timeout while a write is in flight, with the keepalive off so
// the command timeout alone has to notice. The write completes once tgtd
// runs again (SIGCONT) or fails typed; the backing file holds the old or
// the new data of every block, and all new data if the write succeeded.
func TestCommandTimeoutTargetFrozen(t *testing.T) {
	fixture(t)
	srv, f := tgtd.StartFixture(t)
	before := goroutines()
	states := &stateLog{}
	s, l := recoverySession(t, f, states, WithNOP(0, 0), WithCommandTimeout(time.Second),
		WithTMFTimeout(700*time.Millisecond), WithLoginTimeout(2*time.Second))
	const n = 4 << 20
	old, fresh := randBytes(n), randBytes(n)
	_, err := l.WriteAt(old, 0)
	require.NoError(t, err)

	require.NoError(t, srv.Stop())
	type result struct {
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		_, err := l.WriteAt(fresh, 0)
		done <- result{err, time.Since(start)}
	}()
	time.Sleep(5 * time.Second)
	require.NoError(t, srv.Cont())
	var r result
	select {
	case r = <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("the write did not end 90 s after SIGCONT")
	}
	got := fileBytes(t, f.Plain.LUNs[0].Path, 0, n)
	st := s.Stats()
	t.Logf("write ended after %v: err=%v; stats %+v; states %v", r.took.Round(time.Millisecond), r.err, st, states.list())
	assert.Positive(t, st.CommandTimeouts, "the frozen target was not noticed by the command timeout")
	if r.err == nil {
		require.True(t, bytes.Equal(fresh, got), "the write was acknowledged but the backing file differs")
	} else {
		var se *SessionFailedError
		require.True(t, errors.Is(r.err, ErrCommandTimeout) || errors.As(r.err, &se), "untyped error: %v", r.err)
		t.Logf("%d of %d blocks hold the new data", blocksOldOrNew(t, got, old, fresh), n/512)
	}
	require.NoError(t, s.Close())
	checkNoLeak(t, before)
}

// TestSoakTargetKilled writes fresh random data 30 times, each time killing
// tgtd (SIGKILL) at a random moment and starting it again; every write must
// succeed and its region of the backing file must equal its input.
func TestSoakTargetKilled(t *testing.T) {
	fixture(t)
	srv, f := tgtd.StartFixture(t)
	before := goroutines()
	states := &stateLog{}
	s, l := recoverySession(t, f, states, WithNOP(500*time.Millisecond, time.Second), WithLoginTimeout(2*time.Second))
	const cycles, n = 30, 4 << 20
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 12))
	var times []time.Duration
	landed, lost := 0, 0
	for cycle := range cycles {
		data := randBytes(n)
		off := int64(cycle%3) * n
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := l.WriteAt(data, off)
			done <- err
		}()
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		require.NoError(t, srv.Kill())
		select {
		case err := <-done: // finished before the kill
			require.NoError(t, err)
			done <- nil
		default:
			landed++
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		require.NoError(t, srv.Restart(ctx))
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err, "cycle %d", cycle)
		case <-time.After(90 * time.Second):
			t.Fatalf("cycle %d: the write did not end 90 s after the restart", cycle)
		}
		times = append(times, time.Since(start))
		if !bytes.Equal(data, fileBytes(t, f.Plain.LUNs[0].Path, off, n)) {
			lost++
		}
	}
	slices.Sort(times)
	st := s.Stats()
	t.Logf("soak: %d cycles, kills landed during a write %d, lost writes %d, write time median %v worst %v; stats %+v",
		cycles, landed, lost, times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), st)
	require.Zero(t, lost, "acknowledged writes missing from the backing file")
	assert.Positive(t, landed, "no kill landed during a write")
	require.NoError(t, s.Close())
	checkNoLeak(t, before)
}
