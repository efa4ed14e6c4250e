//go:build linux

package initiator

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// benchQueue keeps qd 4 KiB I/Os in flight through one Queue from one
// goroutine: the asynchronous interface's counterpart of benchIO.
func benchQueue(b *testing.B, l *LUN, qd int, write bool) {
	const size = 4096
	span := min(l.Size(), 64<<20) / size
	q := l.NewQueue()
	defer q.Close()
	ios := make([]IO, qd)
	for i := range ios {
		ios[i] = IO{Write: write, Buf: make([]byte, size), Tag: uint64(i)}
	}
	out := make([]Completion, qd)
	ctx := context.Background()
	pid := shared.srv.PID()
	x := uint64(0x9e3779b97f4a7c15)
	next := func(io *IO) {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		io.Off = int64(x%uint64(span)) * size
	}
	b.ReportAllocs()
	b.ResetTimer()
	c0, t0, w0 := cpuTime(), procCPU(pid), time.Now()
	submitted, completed := 0, 0
	for i := range ios {
		if submitted == b.N {
			break
		}
		next(&ios[i])
		if _, err := q.Submit(ctx, ios[i]); err != nil {
			b.Fatal(err)
		}
		submitted++
	}
	for completed < b.N {
		n, err := q.Reap(ctx, out, 1)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range out[:n] {
			if c.Err != nil {
				b.Fatal(c.Err)
			}
			completed++
			if submitted < b.N {
				io := &ios[c.Tag]
				next(io)
				if _, err := q.Submit(ctx, *io); err != nil {
					b.Fatal(err)
				}
				submitted++
			}
		}
	}
	b.StopTimer()
	el := time.Since(w0)
	b.ReportMetric(float64(b.N)/el.Seconds(), "IOPS")
	b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64((procCPU(pid)-t0).Microseconds())/float64(b.N), "tgtd-us/op")
}

func BenchmarkQueueRead4K(b *testing.B) {
	f := fixture(b)
	l := benchLUN(b, f.Null)
	for _, qd := range []int{1, 32} {
		b.Run("null/QD"+strconv.Itoa(qd), func(b *testing.B) { benchQueue(b, l, qd, false) })
	}
}

func BenchmarkQueueWrite4K(b *testing.B) {
	f := fixture(b)
	l := benchLUN(b, f.Null)
	for _, qd := range []int{1, 32} {
		b.Run("null/QD"+strconv.Itoa(qd), func(b *testing.B) { benchQueue(b, l, qd, true) })
	}
}

// A steady-state Submit and Reap of a 4 KiB read allocates nothing.
func TestQueueZeroAllocs(t *testing.T) {
	f := fixture(t)
	ctx := context.Background()
	s := dialT(t, ctx, f.Null.IQN)
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	q := l.NewQueue()
	defer q.Close()
	io := IO{Buf: make([]byte, 4096)}
	out := make([]Completion, 1)
	cycle := func() {
		io.Off = (io.Off + 4096) % (1 << 30)
		if _, err := q.Submit(ctx, io); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Reap(ctx, out, 1); err != nil || out[0].Err != nil {
			t.Fatal(err, out[0].Err)
		}
	}
	cycle()
	reads := testing.AllocsPerRun(500, cycle)
	io.Write = true
	writes := testing.AllocsPerRun(500, cycle)
	assert.Zero(t, reads, "allocations per queued 4 KiB read")
	assert.Zero(t, writes, "allocations per queued 4 KiB write")
}
