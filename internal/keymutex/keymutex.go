// Package keymutex provides mutual exclusion by key (a target IQN, a
// session) whose Lock honours a context, so a caller stuck behind a slow
// login or logout can give up. Entries exist only while someone holds or
// waits for them, so the set does not grow with every key ever used.
package keymutex

import (
	"context"
	"sync"
)

// Mutex is a set of mutexes by key. The zero value is ready to use; it must
// not be copied after first use.
type Mutex struct {
	mu    sync.Mutex
	locks map[string]*entry
}

type entry struct {
	ch   chan struct{} // capacity 1: a token in it means locked
	refs int           // holders and waiters
}

// Lock waits until key is free or ctx is done. On success it returns the
// function that unlocks; on ctx's end, ctx.Err().
func (m *Mutex) Lock(ctx context.Context, key string) (unlock func(), err error) {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = map[string]*entry{}
	}
	e := m.locks[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		m.locks[key] = e
	}
	e.refs++
	m.mu.Unlock()

	release := func() {
		m.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(m.locks, key)
		}
		m.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// Len returns how many keys are held or waited for (for tests).
func (m *Mutex) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.locks)
}
