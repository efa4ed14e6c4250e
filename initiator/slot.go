package initiator

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosan/iscsi/pdu"
)

const (
	maxSlots      = 1024 + reservedSlots
	reservedSlots = 8               // for NOP-Out, task management and logout (immediate PDUs)
	maxR2TQueue   = 16              // MaxOutstandingR2T we offer, and the slot's R2T queue size
	idleITT       = pdu.ReservedTag // a slot without a task
	senseBufLen   = 2 + 252         // SenseLength + the largest sense data
)

// slot kinds
const (
	kindSCSI uint8 = iota
	kindTMF
	kindNOP
	kindLogout
	kindText
)

// slot is a preallocated task: the Initiator Task Tag is index | gen<<16, so
// a response for a finished task (stale generation) finds no slot.
//
// Ownership: the goroutine that armed the slot (the "owner") writes the
// request fields and publishes them with itt.Store. From then on the
// connection's reader goroutine alone writes the response fields, and the
// reader alone retires the ITT (itt.Store(idleITT)) when the task completes;
// it then signals ev. The owner reads the response fields after receiving
// from ev (or after the reader has exited) and puts the index back on the
// free list. mu guards done and orphan.
type slot struct {
	idx  uint16
	gen  uint16
	itt  atomic.Uint32
	ev   chan struct{} // cap 1, allocated once
	home chan uint16   // the free list the slot belongs to

	// request (owner, before arming)
	kind   uint8
	lun    uint64
	in     []byte         // Data-In buffer; its length is the expected read length
	out    []byte         // Data-Out buffer
	refITT uint32         // for ABORT TASK: the task being aborted
	tmfFn  pdu.TMFunction // for task management: the function
	cmdSN  uint32
	cdb    [16]byte // SCSI: the CDB, kept for a replay after reconnection

	// timeout (SCSI): timeout is the owner's per-attempt command timeout;
	// deadline (unix ns, 0: none) is when the watchdog expires the task,
	// and expired holds the ITT it expired (idleITT: none), so a late
	// mark for an earlier task of the slot is recognised as stale.
	timeout  time.Duration
	deadline atomic.Int64
	expired  atomic.Uint32

	// q is the Queue that reaps this command (nil: its caller waits for it);
	// wake posts to it instead of signalling ev. The q* fields belong to
	// the Queue's reaper (qReady to q.mu).
	q      atomic.Pointer[Queue]
	qReady bool
	qio    queuedIO

	// immConn is the connection an immediate request was sent on, so an
	// abandoned request that is never answered is reclaimed when that
	// connection ends.
	immConn *conn

	// reader state
	nextOff   uint32
	expDataSN uint32
	r2tSN     uint32

	// response (reader)
	mu     sync.Mutex
	done   bool
	orphan bool
	// conn is the connection a SCSI command belongs to (nil when the slot
	// is not a SCSI command in flight); recovery moves it to the
	// replacement connection. cancelled marks a command whose owner gave
	// up (its context ended): recovery no longer replays it. replayed
	// counts the times recovery re-issued it. All three are guarded by mu.
	conn      *conn
	cancelled bool
	replayed  int
	err       error
	status    uint8               // SCSI status
	service   pdu.ServiceResponse // SCSI Response's Response field
	overflow  bool                // residual overflow (O)
	underflow bool                // residual underflow (U)
	residual  uint32
	senseLen  int
	sense     [senseBufLen]byte
	// answers to immediate requests
	tmfResp    pdu.TMFResponse
	logoutResp pdu.LogoutResponseCode
	textFinal  bool   // Text Response: F
	textTTT    uint32 // Text Response: TTT to continue with
}

func (s *slot) ittFor() uint32 { return uint32(s.idx) | uint32(s.gen)<<16 }

// arm prepares the slot for a new task; the caller fills the request fields
// first and then calls publish.
func (s *slot) arm() {
	s.gen++
	if uint32(s.idx)|uint32(s.gen)<<16 == idleITT {
		s.gen++
	}
	s.mu.Lock()
	s.done = false
	s.orphan = false
	s.cancelled = false
	s.replayed = 0
	s.conn = nil
	s.resetProgress()
	s.mu.Unlock()
	s.refITT = idleITT
	s.immConn = nil
	s.q.Store(nil)
	s.deadline.Store(0)
	s.expired.Store(idleITT)
	select { // drop a stale wake-up
	case <-s.ev:
	default:
	}
}

// resetProgress clears what the reader recorded about the task, for a new
// task or for a replay on a replacement connection (partially received
// Data-In is read again from the start).
func (s *slot) resetProgress() {
	s.err = nil
	s.status, s.service, s.residual, s.senseLen = 0, 0, 0, 0
	s.overflow, s.underflow = false, false
	s.tmfResp, s.logoutResp, s.textFinal, s.textTTT = 0, 0, false, 0
	s.nextOff, s.expDataSN, s.r2tSN = 0, 0, 0
}

func (s *slot) publish() uint32 {
	itt := s.ittFor()
	s.itt.Store(itt)
	return itt
}

// finish is called by the reader: it retires the ITT, marks the slot done
// and wakes the owner.
func (s *slot) finish(err error) {
	s.itt.Store(idleITT)
	s.mu.Lock()
	s.err = err
	s.done = true
	orphan := s.orphan
	s.mu.Unlock()
	if orphan {
		s.home <- s.idx // the owner gave up waiting; the slot is free now
		return
	}
	s.wake()
}

// abandon is called by an owner that stops waiting for a task whose late
// answer is harmless (a NOP-Out ping). The reader frees the slot when the
// answer comes, or the owner frees it now if it already came.
func (s *slot) abandon() {
	s.mu.Lock()
	done := s.done
	s.orphan = !done
	s.mu.Unlock()
	if done {
		s.home <- s.idx
	}
}

func (s *slot) wake() {
	if q := s.q.Load(); q != nil {
		q.post(s)
		return
	}
	select {
	case s.ev <- struct{}{}:
	default:
	}
}

type slotTable struct {
	slots []slot
	free  chan uint16 // SCSI command slots
	ifree chan uint16 // reserved slots for immediate PDUs
}

func newSlotTable(queueDepth int) *slotTable {
	n := queueDepth + reservedSlots
	t := &slotTable{
		slots: make([]slot, n),
		free:  make(chan uint16, queueDepth),
		ifree: make(chan uint16, reservedSlots),
	}
	for i := range t.slots {
		s := &t.slots[i]
		s.idx = uint16(i)
		s.ev = make(chan struct{}, 1)
		s.itt.Store(idleITT)
		s.expired.Store(idleITT)
		s.home = t.ifree
		if i < queueDepth {
			s.home = t.free
		}
		s.home <- uint16(i)
	}
	return t
}

// reclaim frees the immediate requests sent on c that their owners
// abandoned and that are still unanswered. It runs where no answer can be
// dispatched meanwhile: in the goroutine holding c's reader role, or after
// c's reader has exited. A late answer then finds no task.
func (t *slotTable) reclaim(c *conn) {
	for i := cap(t.free); i < len(t.slots); i++ {
		s := &t.slots[i]
		s.mu.Lock()
		lost := s.orphan && !s.done && s.immConn == c
		if lost {
			s.done, s.orphan = true, false
			s.itt.Store(idleITT)
		}
		s.mu.Unlock()
		if lost {
			s.home <- s.idx
		}
	}
}

// evState tells the owner, after a wake-up from ev, how its wait ended:
// waitDone when the task finished, waitTimeout when the watchdog expired
// it, -1 for a stale wake-up.
func (s *slot) evState() int {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	switch {
	case done:
		return waitDone
	case s.kind == kindSCSI && s.expiredNow():
		return waitTimeout
	}
	return -1
}

// lookup returns the active slot for itt, or nil.
func (t *slotTable) lookup(itt uint32) *slot {
	idx := itt & 0xffff
	if itt == idleITT || int(idx) >= len(t.slots) {
		return nil
	}
	s := &t.slots[idx]
	if s.itt.Load() != itt {
		return nil
	}
	return s
}

func (t *slotTable) release(s *slot) { s.home <- s.idx }
