package initiator

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reapAll reaps until nothing is in flight and returns the completions by
// tag.
func reapAll(t *testing.T, q *Queue) map[uint64]Completion {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[uint64]Completion{}
	out := make([]Completion, 16)
	for q.Inflight() > 0 {
		n, err := q.Reap(ctx, out, 1)
		require.NoError(t, err)
		for _, c := range out[:n] {
			_, dup := got[c.Tag]
			require.False(t, dup, "tag %d completed twice", c.Tag)
			got[c.Tag] = c
		}
	}
	return got
}

// submitAll submits ios, reaping whenever the session has no free slot.
func submitAll(t *testing.T, q *Queue, ios []IO) map[uint64]Completion {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[uint64]Completion{}
	out := make([]Completion, 16)
	for len(ios) > 0 || q.Inflight() > 0 {
		n, err := q.Submit(ctx, ios...)
		require.NoError(t, err)
		ios = ios[n:]
		if q.Inflight() == 0 {
			continue
		}
		m, err := q.Reap(ctx, out, 1)
		require.NoError(t, err)
		for _, c := range out[:m] {
			_, dup := got[c.Tag]
			require.False(t, dup, "tag %d completed twice", c.Tag)
			got[c.Tag] = c
		}
	}
	return got
}

// Random writes then reads through one Queue, more than the queue depth
// at a time: every IO completes once with its length, the LUN holds the
// writes, and the reads return them.
func TestQueueReadWrite(t *testing.T) {
	srv, s, l, done := recoveryTestServer(t, WithQueueDepth(16))
	q := l.NewQueue()
	rng := rand.New(rand.NewPCG(1, 2))
	const slots = 256 // 64 KiB each in a 16 MiB LUN
	var writes, reads []IO
	want := map[uint64][]byte{}
	for i := range 200 {
		n := (1 + rng.IntN(16)) * 4096
		off := int64(i) * 65536
		buf := make([]byte, n)
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		want[uint64(i)] = buf
		writes = append(writes, IO{Write: true, Buf: buf, Off: off, Tag: uint64(i)})
		reads = append(reads, IO{Buf: make([]byte, n), Off: off, Tag: uint64(i)})
	}
	require.Less(t, 199*65536+65536, slots*65536+1)
	for tag, c := range submitAll(t, q, writes) {
		require.NoError(t, c.Err, "write %d", tag)
		require.Equal(t, len(want[tag]), c.N)
	}
	lun, err := srv.LUNData(recTestIQN, 1)
	require.NoError(t, err)
	for _, w := range writes {
		require.Equal(t, w.Buf, lun[w.Off:w.Off+int64(len(w.Buf))], "LUN at %d", w.Off)
	}
	got := submitAll(t, q, reads)
	require.Len(t, got, len(reads))
	for _, r := range reads {
		require.NoError(t, got[r.Tag].Err)
		require.Equal(t, want[r.Tag], r.Buf, "read %d", r.Tag)
	}
	require.NoError(t, q.Close())
	assert.Equal(t, cap(s.slots.free), len(s.slots.free), "every slot is free again")
	done()
}

// Submit takes only what the session's slots allow and says so; IOs it
// refuses return an error and count as not submitted.
func TestQueueSubmitLimits(t *testing.T) {
	_, _, l, done := recoveryTestServer(t, WithQueueDepth(4))
	q := l.NewQueue()
	ctx := context.Background()
	ios := make([]IO, 10)
	for i := range ios {
		ios[i] = IO{Buf: make([]byte, 4096), Off: int64(i) * 4096, Tag: uint64(i)}
	}
	n, err := q.Submit(ctx, ios...)
	require.NoError(t, err)
	assert.Equal(t, 4, n, "one IO per free slot")
	assert.Equal(t, 4, q.Inflight())
	got := reapAll(t, q)
	assert.Len(t, got, 4)

	_, err = q.Submit(ctx, IO{Buf: make([]byte, 100), Off: 0})
	var ae *AlignmentError
	require.ErrorAs(t, err, &ae)
	_, err = q.Submit(ctx, IO{Buf: make([]byte, l.MaxIOSize()+512)})
	require.ErrorContains(t, err, "MaxIOSize")
	assert.Zero(t, q.Inflight())
	require.NoError(t, q.Close())
	_, err = q.Submit(ctx, ios[0])
	require.ErrorIs(t, err, ErrQueueClosed)
	done()
}

// A queued command the target swallows is settled by ABORT TASK after its
// timeout and issued again; one swallowed every time completes with the
// typed timeout. The other IOs are not held up by the reaper's wait.
func TestQueueTimeout(t *testing.T) {
	srv, s, l, done := timeoutPair(t)
	q := l.NewQueue()
	srv.Faults().SwallowCommands(1, iscsitest.MatchLBARange(toLBA, toLBA))
	ios := []IO{
		{Buf: make([]byte, 512), Off: toLBA * 512, Tag: 1},
		{Buf: make([]byte, 4096), Off: 1 << 20, Tag: 2},
	}
	got := submitAll(t, q, ios)
	require.NoError(t, got[1].Err)
	require.NoError(t, got[2].Err)
	assert.Equal(t, uint64(1), s.Stats().CommandTimeouts)
	assert.Equal(t, []string{"cmd", "ABORT TASK", "cmd"}, shape(wireSteps(srv, 0x28)))

	srv.Faults().SwallowCommands(-1, iscsitest.MatchLBARange(toLBA, toLBA))
	got = submitAll(t, q, ios[:1])
	var te *CommandTimeoutError
	require.ErrorAs(t, got[1].Err, &te)
	assert.Equal(t, 2, te.Attempts)
	srv.Faults().SwallowCommands(0, nil)
	require.NoError(t, q.Close())
	done()
}

// Commands in flight when the connection drops are re-issued on the new
// one; every write completes and is on the LUN.
func TestQueueRecovery(t *testing.T) {
	srv, s, l, done := recoveryTestServer(t, WithQueueDepth(32))
	q := l.NewQueue()
	var ios []IO
	for i := range 64 {
		ios = append(ios, IO{Write: true, Buf: bytes.Repeat([]byte{byte(i + 1)}, 65536), Off: int64(i) * 65536, Tag: uint64(i)})
	}
	srv.Faults().DropOnCommand(20)
	for tag, c := range submitAll(t, q, ios) {
		require.NoError(t, c.Err, "write %d", tag)
	}
	lun, err := srv.LUNData(recTestIQN, 1)
	require.NoError(t, err)
	for _, w := range ios {
		require.Equal(t, w.Buf, lun[w.Off:w.Off+65536])
	}
	assert.Positive(t, s.Stats().RetriedCommands)
	require.NoError(t, q.Close())
	done()
}

// Close aborts what is in flight and returns; the session stays usable.
func TestQueueCloseAborts(t *testing.T) {
	srv, s, l, done := timeoutPair(t, WithCommandTimeout(0))
	q := l.NewQueue()
	srv.Faults().SwallowCommands(-1, nil)
	n, err := q.Submit(context.Background(), IO{Buf: make([]byte, 4096), Tag: 1}, IO{Write: true, Buf: make([]byte, 4096), Off: 8192, Tag: 2})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	m, err := q.Reap(ctx, make([]Completion, 2), 1)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Zero(t, m)
	start := time.Now()
	require.NoError(t, q.Close())
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.Equal(t, uint64(2), s.Stats().AbortTasks)
	srv.Faults().SwallowCommands(0, nil)
	_, err = readBlock(t, srv, l)
	require.NoError(t, err)
	assert.Equal(t, cap(s.slots.free), len(s.slots.free))
	done()
}

// The IOs of one Submit leave in one writev; when the target's command
// window closes midway, Submit first sends what it holds back (without it
// the window would never open again) and then goes on.
func TestQueueSubmitBatch(t *testing.T) {
	srv, s, l, done := recoveryTestServer(t, WithQueueDepth(32), WithCommandTimeout(0))
	q := l.NewQueue()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ios := make([]IO, 16)
	for i := range ios {
		ios[i] = IO{Buf: make([]byte, 4096), Off: int64(i) * 4096, Tag: uint64(i)}
	}
	c := s.conn.Load()
	before := c.flushes.Load()
	n, err := q.Submit(ctx, ios...)
	require.NoError(t, err)
	require.Equal(t, len(ios), n)
	assert.Equal(t, uint64(1), c.flushes.Load()-before, "16 commands in one writev")
	assert.Len(t, reapAll(t, q), len(ios))

	// The window only shrinks as the target's ExpCmdSN catches up with
	// the MaxCmdSN it granted before.
	srv.SetCmdWindow(4)
	buf := make([]byte, 4096)
	for range 140 {
		_, err := l.ReadAt(buf, 0)
		require.NoError(t, err)
	}
	s.win.mu.Lock()
	room := s.win.maxCmdSN - s.win.cmdSN + 1
	s.win.mu.Unlock()
	require.Equal(t, uint32(4), room, "the window did not shrink to 4")
	start := time.Now()
	n, err = q.Submit(ctx, ios...)
	require.NoError(t, err)
	require.Equal(t, len(ios), n)
	got := reapAll(t, q)
	assert.Len(t, got, len(ios))
	for _, c := range got {
		require.NoError(t, c.Err)
	}
	assert.Less(t, time.Since(start), 5*time.Second)
	srv.SetCmdWindow(128)
	require.NoError(t, q.Close())
	done()
}
