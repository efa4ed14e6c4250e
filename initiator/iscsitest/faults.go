package iscsitest

import (
	"sync"
	"time"

	"github.com/gosan/iscsi/pdu"
	"github.com/gosan/iscsi/scsi"
)

// Faults scripts misbehaviour. Every method is safe to call from any
// goroutine while the server runs; each takes effect for PDUs handled
// after it returns. Counts are server-wide (across connections).
type Faults struct {
	mu sync.Mutex

	dropAfterPDUs int // >0: drop the conn that receives the Nth PDU from now
	dropOnCommand int // >0: drop the conn that receives the Nth SCSI command from now

	swallow    []swallowRule
	tmfSwallow map[pdu.TMFunction]int // TMF requests of a function to leave unanswered

	stopReadingOp pdu.Opcode
	stopReadingN  int // >0: the conn that receives the Nth stopReadingOp PDU stops reading

	stallUntil time.Time
	stallCh    chan struct{} // non-nil while stalled until Release

	corruptHeader int // next n sent PDUs get a bad header digest
	corruptData   int // next n sent PDUs with data get a bad data digest

	rejects []rejectRule
	checks  []checkRule

	pingEvery time.Duration

	window    int
	windowSet bool

	mutate func(hdr []byte, data []byte) []byte
}

type rejectRule struct {
	n      int
	match  func(cdb []byte) bool
	reason pdu.RejectReason
}

type swallowRule struct {
	n     int // <0: every match
	match func(cdb []byte) bool
}

type checkRule struct {
	n     int
	match func(cdb []byte) bool
	sense Sense
}

// Sense is fixed-format sense data to return with CHECK CONDITION.
type Sense struct {
	Key  scsi.SenseKey
	ASC  uint8
	ASCQ uint8
}

func newFaults() *Faults { return &Faults{} }

// DropAfterPDUs makes the server close the connection on which it
// receives the nth PDU (counted over all connections from now, login
// PDUs excluded). n <= 0 cancels.
func (f *Faults) DropAfterPDUs(n int) {
	f.mu.Lock()
	f.dropAfterPDUs = max(n, 0)
	f.mu.Unlock()
}

// DropOnCommand makes the server close the connection on which it
// receives the nth SCSI Command from now, without answering it.
func (f *Faults) DropOnCommand(n int) {
	f.mu.Lock()
	f.dropOnCommand = max(n, 0)
	f.mu.Unlock()
}

// StopReadingAfter makes the connection that receives the nth PDU of
// opcode op (counted over all connections from now) handle it, answers and
// R2Ts included, and then never read again, holding the connection open
// until the server closes it: a target that stops reading while the
// initiator still has data to send (gotgt does this after an ABORT TASK of
// a write whose Data-Out is arriving). n <= 0 cancels.
func (f *Faults) StopReadingAfter(n int, op pdu.Opcode) {
	f.mu.Lock()
	f.stopReadingN, f.stopReadingOp = max(n, 0), op
	f.mu.Unlock()
}

// stopReading is called for each PDU handled in full feature phase; it
// reports whether the connection must stop reading now.
func (f *Faults) stopReading(op pdu.Opcode) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopReadingN == 0 || op != f.stopReadingOp {
		return false
	}
	f.stopReadingN--
	return f.stopReadingN == 0
}

// Stall makes every connection stop reading and answering for d.
func (f *Faults) Stall(d time.Duration) {
	f.mu.Lock()
	f.stallUntil = time.Now().Add(d)
	f.mu.Unlock()
}

// StallUntilReleased makes every connection stop reading and answering
// until Release (or Server.Close).
func (f *Faults) StallUntilReleased() {
	f.mu.Lock()
	if f.stallCh == nil {
		f.stallCh = make(chan struct{})
	}
	f.mu.Unlock()
}

// Release ends a stall.
func (f *Faults) Release() {
	f.mu.Lock()
	if f.stallCh != nil {
		close(f.stallCh)
		f.stallCh = nil
	}
	f.stallUntil = time.Time{}
	f.mu.Unlock()
}

// stall returns what to wait for before handling the next PDU.
func (f *Faults) stall() (until time.Time, ch chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stallUntil, f.stallCh
}

// CorruptNextHeaderDigest sends the next n PDUs (on connections with
// header digests) with a wrong header digest.
func (f *Faults) CorruptNextHeaderDigest(n int) {
	f.mu.Lock()
	f.corruptHeader = max(n, 0)
	f.mu.Unlock()
}

// CorruptNextDataDigest sends the next n PDUs that carry data (on
// connections with data digests) with a wrong data digest.
func (f *Faults) CorruptNextDataDigest(n int) {
	f.mu.Lock()
	f.corruptData = max(n, 0)
	f.mu.Unlock()
}

// corrupt reports which digests of the PDU being sent to spoil.
func (f *Faults) corrupt(hdrDigest, dataDigest, hasData bool) (h, d bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if hdrDigest && f.corruptHeader > 0 {
		f.corruptHeader--
		h = true
	}
	if dataDigest && hasData && f.corruptData > 0 {
		f.corruptData--
		d = true
	}
	return h, d
}

// RejectCommands answers the next n SCSI Commands whose CDB matches
// (nil matches all) with a Reject PDU of the given reason instead of
// executing them.
func (f *Faults) RejectCommands(n int, match func(cdb []byte) bool, reason pdu.RejectReason) {
	f.mu.Lock()
	f.rejects = append(f.rejects, rejectRule{n: n, match: match, reason: reason})
	f.mu.Unlock()
}

// CheckCondition answers the next n SCSI Commands whose CDB matches (nil
// matches all) with CHECK CONDITION and the given sense, without
// executing them.
func (f *Faults) CheckCondition(n int, match func(cdb []byte) bool, s Sense) {
	f.mu.Lock()
	f.checks = append(f.checks, checkRule{n: n, match: match, sense: s})
	f.mu.Unlock()
}

func (f *Faults) takeReject(cdb []byte) (pdu.RejectReason, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.rejects {
		r := &f.rejects[i]
		if r.n > 0 && (r.match == nil || r.match(cdb)) {
			r.n--
			return r.reason, true
		}
	}
	return 0, false
}

func (f *Faults) takeCheck(cdb []byte) (Sense, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.checks {
		r := &f.checks[i]
		if r.n > 0 && (r.match == nil || r.match(cdb)) {
			r.n--
			return r.sense, true
		}
	}
	return Sense{}, false
}

// SwallowCommands makes the server accept the next n SCSI commands whose
// CDB matches (nil matches all; n < 0: every match until cancelled with
// n == 0) and never answer them: no R2T, no data, no status. It still
// reads their unsolicited data and answers NOP-Outs and task management;
// ABORT TASK, ABORT TASK SET and LOGICAL UNIT RESET end such a task like
// any other. A target that lost or wedged a command.
func (f *Faults) SwallowCommands(n int, match func(cdb []byte) bool) {
	f.mu.Lock()
	if n == 0 {
		f.swallow = nil
	} else {
		f.swallow = append(f.swallow, swallowRule{n: n, match: match})
	}
	f.mu.Unlock()
}

// SwallowTMF makes the server leave the next n task management requests
// of function fn unanswered (n < 0: all of them; 0 cancels). The request
// has no effect: the tasks it names stay as they are.
func (f *Faults) SwallowTMF(fn pdu.TMFunction, n int) {
	f.mu.Lock()
	if f.tmfSwallow == nil {
		f.tmfSwallow = map[pdu.TMFunction]int{}
	}
	f.tmfSwallow[fn] = n
	f.mu.Unlock()
}

func (f *Faults) takeSwallow(cdb []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.swallow {
		r := &f.swallow[i]
		if r.n != 0 && (r.match == nil || r.match(cdb)) {
			if r.n > 0 {
				r.n--
			}
			return true
		}
	}
	return false
}

func (f *Faults) takeTMFSwallow(fn pdu.TMFunction) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.tmfSwallow[fn]
	if n > 0 {
		f.tmfSwallow[fn] = n - 1
	}
	return n != 0
}

// MatchLBARange matches READ and WRITE (10 and 16) commands that touch a
// block in [first, last].
func MatchLBARange(first, last uint64) func(cdb []byte) bool {
	return func(cdb []byte) bool {
		lba, blocks, ok := rwArgs(cdb)
		return ok && blocks > 0 && lba <= last && lba+blocks-1 >= first
	}
}

// MatchOpcode returns a CDB predicate matching one operation code.
func MatchOpcode(op byte) func(cdb []byte) bool {
	return func(cdb []byte) bool { return len(cdb) > 0 && cdb[0] == op }
}

// PingEvery makes every connection in full feature phase (including ones
// opened later) send a NOP-In ping with a fresh Target Transfer Tag every
// interval; answers are recorded in ConnRecord.Pings. 0 stops.
func (f *Faults) PingEvery(interval time.Duration) {
	f.mu.Lock()
	f.pingEvery = max(interval, 0)
	f.mu.Unlock()
}

func (f *Faults) pingInterval() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pingEvery
}

func (f *Faults) setWindow(n int) {
	f.mu.Lock()
	f.window, f.windowSet = n, true
	f.mu.Unlock()
}

func (f *Faults) windowOverride() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.window, f.windowSet
}

// MutateOutgoing installs a hook called for every PDU the server sends in
// full feature phase, with the encoded BHS+AHS (modifiable in place) and
// the data segment; it returns the data segment to send. The header is
// sent as modified, with DataSegmentLength as the hook left it (so a hook
// can lie about it), and digests computed over what is sent. nil removes
// the hook.
func (f *Faults) MutateOutgoing(hook func(hdr []byte, data []byte) []byte) {
	f.mu.Lock()
	f.mutate = hook
	f.mu.Unlock()
}

func (f *Faults) mutator() func(hdr []byte, data []byte) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mutate
}

// countPDU is called for each PDU received in full feature phase; it
// reports whether the connection must be dropped.
func (f *Faults) countPDU(isCommand bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	drop := false
	if f.dropAfterPDUs > 0 {
		f.dropAfterPDUs--
		if f.dropAfterPDUs == 0 {
			drop = true
		}
	}
	if isCommand && f.dropOnCommand > 0 {
		f.dropOnCommand--
		if f.dropOnCommand == 0 {
			drop = true
		}
	}
	return drop
}
