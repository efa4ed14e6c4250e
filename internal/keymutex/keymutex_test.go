package keymutex

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExclusionPerKey(t *testing.T) {
	var m Mutex
	var inA, maxA atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := m.Lock(context.Background(), "a")
			require.NoError(t, err)
			n := inA.Add(1)
			for {
				old := maxA.Load()
				if n <= old || maxA.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			inA.Add(-1)
			unlock()
		}()
	}
	// Another key is not blocked by "a".
	unlockB, err := m.Lock(context.Background(), "b")
	require.NoError(t, err)
	unlockB()
	wg.Wait()
	assert.Equal(t, int32(1), maxA.Load(), "one holder of a key at a time")
	assert.Zero(t, m.Len(), "entries are dropped when unused")
}

func TestLockHonoursContext(t *testing.T) {
	var m Mutex
	unlock, err := m.Lock(context.Background(), "k")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = m.Lock(ctx, "k")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second)
	assert.Equal(t, 1, m.Len(), "the holder's entry stays, the waiter's reference is gone")
	unlock()
	assert.Zero(t, m.Len())
}
