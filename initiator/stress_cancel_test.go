package initiator

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stressResult sums up stressCancel.
type stressResult struct {
	runs, writes, cancelled, failed int64
	longest                         time.Duration
}

// stressCancel runs many short high-queue-depth write runs (issue 15): qd
// writers, each in its own slice of region, issue writes of 4 KiB to
// 1 MiB, most of them with a context that expires after a random 0-3 ms,
// so tasks end (aborted, or with the connection failed) at every moment of
// their life, also while a send batch forms. Each run must end within
// runBound; a run that does not fails the test with every goroutine's
// stack. A call's outcome may be success or an error, never a hang.
func stressCancel(t *testing.T, l *LUN, runs, qd int, region int64, runFor, runBound time.Duration) stressResult {
	t.Helper()
	var res stressResult
	var longest atomic.Int64
	slice := region / int64(qd)
	bs := int64(l.BlockSize())
	for run := range runs {
		var writes, cancelled, failed atomic.Int64
		stop := time.Now().Add(runFor)
		var wg sync.WaitGroup
		for w := range qd {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(run), uint64(w)))
				buf := make([]byte, 1<<20)
				for time.Now().Before(stop) {
					n := (4096 << rng.IntN(9)) // 4 KiB .. 1 MiB
					n = min(n, int(slice))
					off := int64(w)*slice + rng.Int64N(slice-int64(n)+1)/bs*bs
					ctx, cancel := context.Background(), context.CancelFunc(func() {})
					if rng.IntN(4) != 0 {
						ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(3000))*time.Microsecond)
					}
					start := time.Now()
					_, err := l.WriteAtContext(ctx, buf[:n], off)
					d := time.Since(start)
					cancel()
					for {
						cur := longest.Load()
						if int64(d) <= cur || longest.CompareAndSwap(cur, int64(d)) {
							break
						}
					}
					writes.Add(1)
					switch {
					case err == nil:
					case errors.Is(err, context.DeadlineExceeded):
						cancelled.Add(1)
					default:
						failed.Add(1)
					}
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(runBound):
			buf := make([]byte, 4<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("run %d hung: writers still waiting %v after the run ended\n%s", run, runBound, buf)
		}
		res.runs++
		res.writes += writes.Load()
		res.cancelled += cancelled.Load()
		res.failed += failed.Load()
	}
	res.longest = time.Duration(longest.Load())
	return res
}

// verifyRegion writes a fresh pattern over region and reads it back, and
// compares it with got() when given (the target's backing store).
func verifyRegion(t *testing.T, l *LUN, region int, got func() []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := make([]byte, region)
	for i := range want {
		want[i] = byte(i>>12) ^ byte(i) ^ 0x5c
	}
	_, err := l.WriteAtContext(ctx, want, 0)
	require.NoError(t, err)
	back := make([]byte, region)
	_, err = l.ReadAtContext(ctx, back, 0)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, back), "read back differs after the stress runs")
	if got != nil {
		require.True(t, bytes.Equal(want, got()), "the target's backing store differs after the stress runs")
	}
}

func TestStressCancelledWritesIscsitest(t *testing.T) {
	srv, s, l, done := recoveryTestServer(t, WithTMFTimeout(2*time.Second))
	const region = 8 << 20
	r := stressCancel(t, l, 60, 32, region, 100*time.Millisecond, 30*time.Second)
	t.Logf("iscsitest: %d runs, %d writes (%d cancelled, %d failed otherwise), longest call %v, stats %+v",
		r.runs, r.writes, r.cancelled, r.failed, r.longest.Round(time.Millisecond), s.Stats())
	require.Positive(t, r.cancelled, "no write was cancelled: the stress did not stress")
	verifyRegion(t, l, region, lunData(t, srv, region))
	done()
}
