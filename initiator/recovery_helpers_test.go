package initiator

import (
	"context"
	crand "crypto/rand"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// workload writes random data at random block-aligned places of the first
// region bytes of a LUN from several writers at once; each writer owns a
// slice of the region, so the last acknowledged write of every byte is
// known: shadow holds it. Reads, when asked for, check what they get
// against shadow (a read of a range no write is pending on).
type workload struct {
	l       *LUN
	region  int64
	writers int

	mu      sync.Mutex
	shadow  []byte
	doneAt  []time.Time // completion time of every acknowledged command
	errs    []error
	stop    chan struct{}
	wg      sync.WaitGroup
	ctxDone context.CancelFunc
}

func startWorkload(t *testing.T, l *LUN, writers int, region int64, withReads bool) *workload {
	t.Helper()
	w := &workload{l: l, region: region, writers: writers, shadow: make([]byte, region), stop: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	w.ctxDone = cancel
	part := region / int64(writers)
	for i := range writers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			rng := rand.New(rand.NewChaCha8([32]byte{byte(i), byte(time.Now().UnixNano())}))
			base := int64(i) * part
			for n := 0; ; n++ {
				select {
				case <-w.stop:
					return
				default:
				}
				size := int64(4096 * (1 + rng.IntN(32)))
				off := base + 4096*rng.Int64N((part-size)/4096+1)
				if withReads && n%3 == 2 {
					buf := make([]byte, size)
					_, err := l.ReadAtContext(ctx, buf, off)
					w.mu.Lock()
					if err != nil {
						w.errs = append(w.errs, err)
					} else {
						w.doneAt = append(w.doneAt, time.Now())
						if string(buf) != string(w.shadow[off:off+size]) {
							w.errs = append(w.errs, &mismatchError{off: off, n: size})
						}
					}
					w.mu.Unlock()
					continue
				}
				buf := make([]byte, size)
				for j := range buf {
					buf[j] = byte(rng.Uint32())
				}
				_, err := l.WriteAtContext(ctx, buf, off)
				w.mu.Lock()
				if err != nil {
					w.errs = append(w.errs, err)
				} else {
					copy(w.shadow[off:], buf)
					w.doneAt = append(w.doneAt, time.Now())
				}
				w.mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	t.Cleanup(w.halt)
	return w
}

type mismatchError struct{ off, n int64 }

func (e *mismatchError) Error() string { return "read back data differs from what was written" }

// halt stops the writers and waits for them.
func (w *workload) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
	w.ctxDone()
}

// completed returns how many commands were acknowledged so far.
func (w *workload) completed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.doneAt)
}

// waitProgress waits until n more commands than now completed.
func (w *workload) waitProgress(t *testing.T, n int, within time.Duration) {
	t.Helper()
	base := w.completed()
	require.Eventually(t, func() bool { return w.completed() >= base+n }, within, 5*time.Millisecond,
		"the workload made no progress (errors: %v)", w.errors())
}

// firstAfter returns when the first command completed after t0.
func (w *workload) firstAfter(t0 time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range w.doneAt {
		if d.After(t0) {
			return d, true
		}
	}
	return time.Time{}, false
}

func (w *workload) errors() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]error(nil), w.errs...)
}

// finish stops the workload and checks that no caller saw an error and
// that got (the target's copy of the region) holds every acknowledged
// write, byte for byte.
func (w *workload) finish(t *testing.T, got func() []byte) {
	t.Helper()
	w.halt()
	require.Empty(t, w.errors(), "errors returned to the workload's callers")
	data := got()
	require.Len(t, data, int(w.region))
	for i := range data {
		if data[i] != w.shadow[i] {
			end := min(i+16, len(data))
			require.Failf(t, "backing store differs from the acknowledged writes",
				"first difference at byte %d: have % x, want % x", i, data[i:end], w.shadow[i:end])
		}
	}
	assert.Greater(t, len(w.doneAt), 0)
	t.Logf("workload: %d commands acknowledged, %d bytes verified", len(w.doneAt), len(data))
}

// stateLog records the states a session went through.
type stateLog struct {
	mu     sync.Mutex
	states []State
	at     []time.Time
}

func (sl *stateLog) fn(st State, _ error) {
	sl.mu.Lock()
	sl.states = append(sl.states, st)
	sl.at = append(sl.at, time.Now())
	sl.mu.Unlock()
}

// firstAfter returns when the session first entered st after t0.
func (sl *stateLog) firstAfter(st State, t0 time.Time) (time.Time, bool) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	for i, s := range sl.states {
		if s == st && sl.at[i].After(t0) {
			return sl.at[i], true
		}
	}
	return time.Time{}, false
}

func (sl *stateLog) list() []State {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return append([]State(nil), sl.states...)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return b
}
