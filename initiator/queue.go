package initiator

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gosan/iscsi/scsi"
)

// Queue submits reads and writes on a LUN without a goroutine for each and
// reaps their completions in batches, in the spirit of io_uring or
// libiscsi's asynchronous calls: copy tools, block servers and benchmarks
// keep many commands in flight from one goroutine.
//
// The rules are ReadAt's and WriteAt's: a buffer belongs to the Queue from
// Submit until its Completion is reaped; a write is complete only with a
// nil Err (GOOD status); commands in flight when the connection fails are
// re-issued on the replacement; a command past its timeout is settled and
// issued once more (see WithCommandTimeout); a UNIT ATTENTION is absorbed
// by issuing the command once more. A Queue is used by one goroutine at a
// time; a session may have many Queues and synchronous callers besides.
type Queue struct {
	l *LUN

	mu    sync.Mutex
	ready []*slot // commands whose completion (or timeout) was posted
	sig   chan struct{}

	// reaper side
	spare    []*slot
	inflight int
	closed   bool
	// held is the connection on which Submit queued commands without
	// flushing them; flushFn is flushHeld, bound once (no allocation per
	// Submit).
	held    *conn
	flushFn func()
}

// IO is one read or write for Queue.Submit.
type IO struct {
	Write bool
	// Buf is the data to write or the buffer to read into; its length and
	// Off are multiples of the block size, and it is at most MaxIOSize.
	Buf []byte
	Off int64
	// Tag is returned in the IO's Completion.
	Tag uint64
}

// Completion is the outcome of one IO.
type Completion struct {
	Tag uint64
	N   int   // bytes transferred: len(Buf) on success
	Err error // nil only when the whole IO completed with GOOD status
}

// queuedIO is what the reaper needs of a queued command, kept in its slot
// (and carried to the slot of a re-issue).
type queuedIO struct {
	tag      uint64
	write    bool
	buf      []byte
	off      int64
	ua       bool                 // a UNIT ATTENTION was absorbed already
	timedOut *CommandTimeoutError // its timeouts so far
}

// ErrQueueClosed is returned by Submit and Reap after Close.
var ErrQueueClosed = errors.New("iscsi: queue closed")

// NewQueue returns a Queue for the LUN.
func (l *LUN) NewQueue() *Queue {
	n := len(l.s.slots.slots)
	q := &Queue{l: l, sig: make(chan struct{}, 1), ready: make([]*slot, 0, n), spare: make([]*slot, 0, n)}
	q.flushFn = q.flushHeld
	return q
}

// flushHeld writes the commands Submit queued (in one writev with
// whatever else is queued on the connection).
func (q *Queue) flushHeld() {
	if c := q.held; c != nil {
		q.held = nil
		c.qmu.Lock()
		c.flushLocked(false)
	}
}

// MaxIOSize is the largest IO a Queue takes: one SCSI command (the
// negotiated MaxBurstLength, or the LUN's MAXIMUM TRANSFER LENGTH when
// smaller).
func (l *LUN) MaxIOSize() int { return l.maxChunk }

// Inflight returns how many submitted IOs have not been reaped.
func (q *Queue) Inflight() int { return q.inflight }

// Submit sends the IOs in order and returns how many it sent. It stops
// early, without an error, when every command slot of the session is busy
// (reap, then submit the rest); with an error for an IO it refuses (bad
// alignment or size) or when the session fails or ctx ends while it waits
// for the command window or a recovery. The commands of one Submit go out
// together: as few writev calls as the connection's batching allows, so
// submit what is ready in one call.
func (q *Queue) Submit(ctx context.Context, ios ...IO) (int, error) {
	if q.closed {
		return 0, ErrQueueClosed
	}
	defer q.flushHeld()
	l := q.l
	for i := range ios {
		io := &ios[i]
		if err := l.check(io.Off, len(io.Buf)); err != nil {
			return i, err
		}
		if len(io.Buf) == 0 || len(io.Buf) > l.maxChunk {
			return i, fmt.Errorf("iscsi: queued IO of %d bytes: want 1 block to MaxIOSize (%d)", len(io.Buf), l.maxChunk)
		}
		if err := q.start(ctx, queuedIO{tag: io.Tag, write: io.Write, buf: io.Buf, off: io.Off}, false); err != nil {
			if errors.Is(err, errNoSlot) {
				return i, nil
			}
			return i, err
		}
		q.inflight++
	}
	return len(ios), nil
}

// start issues one command of q (a submission, or with block a re-issue).
func (q *Queue) start(ctx context.Context, qio queuedIO, block bool) error {
	l := q.l
	buf, off := qio.buf, qio.off
	bs := int64(l.blockSize)
	plan := scsi.PlanRW(uint64(off/bs), uint32(int64(len(buf))/bs), uint32(l.maxChunk/int(bs)))
	ch, _ := plan.Next()
	var cdbBuf [16]byte
	var sl *slot
	var err error
	if qio.write {
		sl, err = l.s.startFor(ctx, q, block, l.raw, ch.AppendWriteCDB(cdbBuf[:0], 0), nil, buf)
	} else {
		sl, err = l.s.startFor(ctx, q, block, l.raw, ch.AppendReadCDB(cdbBuf[:0], 0), buf, nil)
	}
	if err != nil {
		return err
	}
	sl.qio = qio // read by the reaper only, after a post that follows this
	return nil
}

// post is wake for a queued command: the reader (or the watchdog) hands
// the slot to the reaper.
func (q *Queue) post(sl *slot) {
	q.mu.Lock()
	if sl.q.Load() != q || sl.qReady { // detached by the reaper, or posted already
		q.mu.Unlock()
		return
	}
	sl.qReady = true
	q.ready = append(q.ready, sl)
	q.mu.Unlock()
	select {
	case q.sig <- struct{}{}:
	default:
	}
}

// detach takes the slot from q before the reaper settles and releases it:
// later wake-ups of it go to its event channel (dropped by the next arm).
func (q *Queue) detach(sl *slot) {
	q.mu.Lock()
	sl.q.Store(nil)
	if sl.qReady {
		sl.qReady = false
		q.ready = deleteSlot(q.ready, sl)
	}
	q.mu.Unlock()
}

func deleteSlot(list []*slot, sl *slot) []*slot {
	for i, x := range list {
		if x == sl {
			copy(list[i:], list[i+1:])
			list[len(list)-1] = nil
			return list[:len(list)-1]
		}
	}
	return list
}

// Reap waits until at least min IOs have completed (fewer when fewer are
// in flight) or ctx ends, and fills out with up to len(out) completions;
// it returns how many it filled. Waiting for completions, it may also
// settle timed-out commands and re-issue commands (see Queue).
func (q *Queue) Reap(ctx context.Context, out []Completion, min int) (int, error) {
	if q.closed {
		return 0, ErrQueueClosed
	}
	n := 0
	for {
		q.mu.Lock()
		batch := q.ready
		q.ready = q.spare[:0]
		for _, sl := range batch {
			sl.qReady = false
		}
		q.mu.Unlock()
		for i, sl := range batch {
			if n == len(out) {
				q.mu.Lock()
				for _, rest := range batch[i:] {
					if !rest.qReady && rest.q.Load() == q {
						rest.qReady = true
						q.ready = append(q.ready, rest)
					}
				}
				q.mu.Unlock()
				break
			}
			if c, ok := q.handle(ctx, sl); ok {
				out[n] = c
				n++
			}
		}
		clear(batch)
		q.spare = batch[:0]
		if n == len(out) || n >= min || q.inflight == 0 {
			return n, nil
		}
		if err := q.wait(ctx); err != nil {
			return n, err
		}
	}
}

// wait waits for a post. Like a caller waiting for its command, it reads
// PDUs itself when it can take the connection's reader role (awaitOn), so
// a completion needs no hand-off between goroutines.
func (q *Queue) wait(ctx context.Context) error {
	if q.l.s.awaitOn(ctx, q, nil) == waitCtx {
		return ctx.Err()
	}
	return nil
}

// A Queue is a waitee: any post is news.
func (q *Queue) event() *chan struct{} { return &q.sig }
func (q *Queue) woken() int            { return waitDone }
func (q *Queue) stopped() int          { return -1 }
func (q *Queue) batches() bool         { return true } // reaps many completions at once

// handle settles one posted command; ok when its IO is over (its
// completion is c), not when it was re-issued or the post was stale.
func (q *Queue) handle(ctx context.Context, sl *slot) (c Completion, ok bool) {
	s := q.l.s
	r := sl.evState()
	if r < 0 {
		return c, false
	}
	q.detach(sl)
	qio := sl.qio
	sl.qio = queuedIO{}
	if r == waitTimeout {
		timeout := sl.timeout
		step, completed := s.escalate(sl)
		if !completed {
			if qio.timedOut == nil {
				qio.timedOut = &CommandTimeoutError{Timeout: timeout}
			}
			qio.timedOut.Attempts++
			qio.timedOut.Steps = append(qio.timedOut.Steps, step)
			if qio.timedOut.Attempts > 1 {
				return q.done(qio.tag, 0, qio.timedOut), true
			}
			return q.reissue(ctx, qio)
		}
	}
	var res Result
	_, err := s.complete(sl, &res)
	if err == nil && res.Status != scsi.StatusGood {
		err = res.Err()
		if err != nil && !qio.ua && errors.Is(err, scsi.ErrUnitAttention) {
			qio.ua = true
			return q.reissue(ctx, qio)
		}
	}
	if err != nil {
		return q.done(qio.tag, 0, err), true
	}
	if v, short := shortTransfer(&res, len(qio.buf), qio.write); short {
		return q.done(qio.tag, v, fmt.Errorf("iscsi: short transfer: %d of %d bytes", v, len(qio.buf))), true
	}
	return q.done(qio.tag, len(qio.buf), nil), true
}

// reissue sends a queued IO again; a failure to send it is its
// completion. The slot it had was just released; should another caller
// of the session take it meanwhile, this waits (within ctx) for one.
func (q *Queue) reissue(ctx context.Context, qio queuedIO) (Completion, bool) {
	if err := q.start(ctx, qio, true); err != nil {
		return q.done(qio.tag, 0, err), true
	}
	return Completion{}, false
}

func (q *Queue) done(tag uint64, n int, err error) Completion {
	q.inflight--
	return Completion{Tag: tag, N: n, Err: err}
}

// Close aborts the IOs still in flight (ABORT TASK, as a cancelled
// context does) and waits until their buffers are no longer used; their
// completions are dropped. The Queue cannot be used afterwards.
func (q *Queue) Close() error {
	if q.closed {
		return nil
	}
	q.closed = true
	s := q.l.s
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range cap(s.slots.free) {
		sl := &s.slots.slots[i]
		if sl.q.Load() != q {
			continue
		}
		q.detach(sl)
		_, _ = s.abort(cancelled, sl, nil)
		q.inflight--
	}
	return nil
}
