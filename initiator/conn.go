package initiator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/pdu"
)

// outPDU is one queued PDU: its header lives in the queue entry, its data is
// the caller's buffer (not copied).
type outPDU struct {
	hdr  pdu.BHS
	data []byte
}

// conn is one TCP connection of a session in full feature phase. A
// replacement connection (recovery) gets a new conn; the slot table and the
// command window belong to the session.
type conn struct {
	s   *Session
	nc  net.Conn
	r   *pdu.Reader
	w   *pdu.Writer
	cid uint16
	log *slog.Logger

	maxXmit uint32 // target's MaxRecvDataSegmentLength: largest data segment we send
	mrdsl   uint32 // ours
	neg     iscsi.Negotiated
	tsih    uint16
	portal  string
	gen     uint64 // 0 for the connection Dial made, then 1, 2, ... for replacements

	// send queue with flat combining: whoever finds flushing false flushes
	// everything queued, including what others queue meanwhile.
	qmu      sync.Mutex
	pend     []outPDU
	spare    []outPDU
	flushing bool
	// batches counts finished writes; forget waits on flushCond for the
	// one in progress.
	batches      uint64
	batchWaiters int
	flushCond    *sync.Cond

	expStatSN atomic.Uint32
	flushes   atomic.Uint64 // writev calls (statistics)
	pdusOut   atomic.Uint64 // PDUs sent (statistics)
	rxCount   atomic.Uint64 // PDUs received, for the keepalive

	// closing is set (under the session's window lock) when a Logout
	// Request is queued on this connection: no new command may follow it
	// (RFC 7143 section 11.14), so new commands wait for the replacement.
	closing atomic.Bool
	// time2Wait is the Time2Wait (seconds, +1 so that 0 means unset) the
	// target gave in an Async Message announcing that it drops this
	// connection; recovery waits that long instead of DefaultTime2Wait.
	time2Wait atomic.Uint32

	// target-initiated NOP-In pings waiting for our NOP-Out answer
	pingMu  sync.Mutex
	pings   []pingReq
	auxKick chan struct{}
	// flushKick asks the aux goroutine to flush what the reader queued.
	flushKick chan struct{}
	// renegKick asks the aux goroutine to answer a renegotiation request.
	renegKick chan struct{}

	// Reader role: whoever holds it reads and dispatches PDUs. A caller
	// waiting for its command takes it when it is free and reads until its
	// own command completes (at queue depth 1 it reads its own response:
	// no goroutine hand-off); the background reader (readLoop) holds it
	// while no caller does, for PDUs nobody waits for. See lead.
	sr       *sockReader
	canLead  bool         // callers may read (the socket supports read deadlines)
	role     atomic.Int32 // roleFree, roleHeld, roleGone
	leads    atomic.Uint64
	waiters  atomic.Int32  // goroutines waiting for the role
	asks     atomic.Uint64 // times a caller found the role held and waited
	roleCh   chan struct{} // cap 1: the role was released while someone waited
	leadMu   sync.Mutex
	leadDone <-chan struct{} // Done of the reading caller's context

	failOnce   sync.Once
	deadErr    error
	dead       chan struct{} // closed when the connection failed or was closed
	readerDone chan struct{}
	auxDone    chan struct{}

	scratch []byte // for data segments that are not Data-In payload
}

type pingReq struct {
	ttt  uint32
	lun  uint64
	data []byte
}

// newConn makes a connection whose PDU reader r reads nc directly (tests
// build connections this way). When r holds no buffered bytes it is
// replaced by one that reads through a sockReader, so callers may read.
func newConn(s *Session, nc net.Conn, r *pdu.Reader, w *pdu.Writer, maxXmit, mrdsl uint32, statSN uint32) *conn {
	var sr *sockReader
	if r.Buffered() == 0 {
		sr = newSockReader(nc)
		r = pdu.NewReader(sr, s.cfg.readBufSize)
		r.SetMaxDataSegmentLength(int(mrdsl))
	}
	return newConnSR(s, nc, sr, r, w, maxXmit, mrdsl, statSN)
}

// newConnSR makes a connection whose PDU reader r reads nc through sr (nil:
// directly, and then only the background reader reads).
func newConnSR(s *Session, nc net.Conn, sr *sockReader, r *pdu.Reader, w *pdu.Writer, maxXmit, mrdsl uint32, statSN uint32) *conn {
	c := &conn{
		s:          s,
		nc:         nc,
		sr:         sr,
		roleCh:     make(chan struct{}, 1),
		r:          r,
		w:          w,
		log:        s.log,
		maxXmit:    maxXmit,
		mrdsl:      mrdsl,
		pend:       make([]outPDU, 0, 64),
		spare:      make([]outPDU, 0, 64),
		auxKick:    make(chan struct{}, 1),
		flushKick:  make(chan struct{}, 1),
		renegKick:  make(chan struct{}, 1),
		dead:       make(chan struct{}),
		readerDone: make(chan struct{}),
		auxDone:    make(chan struct{}),
		scratch:    make([]byte, 8192),
	}
	c.flushCond = sync.NewCond(&c.qmu)
	if sr != nil {
		// Interrupting a reading caller needs read deadlines.
		c.canLead = nc.SetReadDeadline(time.Time{}) == nil
		sr.ffp = true
	}
	c.expStatSN.Store(statSN + 1)
	return c
}

func (c *conn) start() {
	go c.readLoop()
	go c.auxLoop()
}

// fail marks the connection dead with err (the first error wins) and closes
// the socket, which stops the reader and any writer.
func (c *conn) fail(err error) {
	c.failOnce.Do(func() {
		c.deadErr = err
		close(c.dead)
		_ = c.nc.Close()
		if c.log.Enabled(context.Background(), slog.LevelDebug) {
			c.log.Debug("iscsi: connection down", "err", err)
		}
	})
}

func (c *conn) err() error {
	<-c.dead
	return c.deadErr
}

func (c *conn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// enqueueLocked appends a PDU; the caller holds qmu.
func (c *conn) enqueueLocked(hdr *pdu.BHS, data []byte) {
	hdr.PutUint32(28, c.expStatSN.Load())
	c.pend = append(c.pend, outPDU{hdr: *hdr, data: data})
}

// kick flushes the queue unless another goroutine is flushing it; the
// caller holds qmu, which kick releases.
func (c *conn) kickLocked() {
	if c.flushing {
		c.qmu.Unlock()
		return
	}
	c.flushing = true
	// Give goroutines that are ready to submit a chance to queue behind
	// this PDU, so one writev carries several (the target then also reads
	// them with one system call).
	// Only worth it when other commands are in flight.
	if len(c.s.slots.free) < cap(c.s.slots.free)-1 {
		c.qmu.Unlock()
		runtime.Gosched()
		c.qmu.Lock()
	}
	for len(c.pend) > 0 {
		batch := c.pend
		c.pend = c.spare[:0]
		c.qmu.Unlock()
		c.flushes.Add(1)
		c.pdusOut.Add(uint64(len(batch)))
		var err error
		if !c.isDead() {
			for i := range batch {
				c.w.Queue(batch[i].hdr[:], batch[i].data)
			}
			err = c.w.Flush()
		}
		for i := range batch {
			batch[i].data = nil
		}
		if err != nil {
			c.fail(&ConnectionError{Op: "send", Err: err})
		}
		c.qmu.Lock()
		c.spare = batch[:0]
		c.batches++
		if c.batchWaiters > 0 {
			c.flushCond.Broadcast()
		}
	}
	c.flushing = false
	c.qmu.Unlock()
}

// forget makes sure no queued or in-flight write still reads the data of
// a write task that ended early (error status, abort, connection loss), so
// its caller may reuse the buffer: it drops the task's queued Data-Out PDUs
// and waits for a batch being written to finish.
func (c *conn) forget(itt uint32) {
	c.qmu.Lock()
	k := 0
	for _, p := range c.pend {
		if p.hdr.Opcode() == pdu.OpDataOut && p.hdr.ITT() == itt {
			continue
		}
		c.pend[k] = p
		k++
	}
	clear(c.pend[k:])
	c.pend = c.pend[:k]
	if c.flushing {
		target := c.batches
		c.batchWaiters++
		for c.flushing && c.batches == target {
			c.flushCond.Wait()
		}
		c.batchWaiters--
	}
	c.qmu.Unlock()
}

// drain makes sure the Data-Out PDUs queued for itt have been written
// (or dropped, when the connection died) before it returns: a task that
// task management concluded still gets the data of the R2Ts that arrived
// before the response (RFC 7143 section 11.5.1), and none of it goes out
// after the ITT is reused.
func (c *conn) drain(itt uint32) {
	c.qmu.Lock()
	for {
		queued := false
		for i := range c.pend {
			if c.pend[i].hdr.Opcode() == pdu.OpDataOut && c.pend[i].hdr.ITT() == itt {
				queued = true
				break
			}
		}
		if !c.flushing {
			if !queued {
				break
			}
			c.kickLocked() // releases qmu
			c.qmu.Lock()
			continue
		}
		c.batchWaiters++
		c.flushCond.Wait()
		c.batchWaiters--
	}
	c.qmu.Unlock()
}

// quiesce waits for a write in progress on a dead connection to end and
// drops everything still queued, so no buffer of a command is read by this
// connection any more (recovery re-sends them on the replacement).
func (c *conn) quiesce() {
	c.qmu.Lock()
	for c.flushing {
		c.batchWaiters++
		c.flushCond.Wait()
		c.batchWaiters--
	}
	clear(c.pend)
	c.pend = c.pend[:0]
	c.qmu.Unlock()
}

// send queues one PDU and flushes.
func (c *conn) send(hdr *pdu.BHS, data []byte) {
	c.qmu.Lock()
	c.enqueueLocked(hdr, data)
	c.kickLocked()
}

// maxStatSNGap is how far a StatSN may be from the expected one before the
// connection is considered broken (RFC 7143 section 4.2.2.2 asks for
// recovery above an implementation-defined constant below 2^31).
const maxStatSNGap = 1 << 16

// updateStatSN records a StatSN from a status-carrying PDU. Only the
// reader goroutine writes expStatSN.
func (c *conn) updateStatSN(statSN uint32) error {
	cur := c.expStatSN.Load()
	if d := pdu.SerialDiff(statSN, cur); d > maxStatSNGap || d < -maxStatSNGap {
		return c.protoErr("StatSN %d far from the expected %d", statSN, cur)
	}
	if pdu.SerialGreaterEq(statSN, cur) {
		c.expStatSN.Store(statSN + 1)
	}
	return nil
}

// failTask fails the connection because of what the target sent for a
// task and returns err for the reader to stop. The task stays pending:
// recovery re-issues it on a replacement connection, or fails it with the
// session.
func (c *conn) failTask(_ *slot, err error) error {
	c.fail(&ConnectionError{Op: "receive", Err: err})
	return err
}

func (c *conn) protoErr(format string, args ...any) error {
	return &ProtocolError{Reason: fmt.Sprintf(format, args...)}
}

// Reader role states.
const (
	roleFree int32 = iota
	roleHeld
	roleGone // the connection is dead and the background reader has exited
)

// watchPeriod is how often the background reader, while a caller holds the
// reader role, checks whether that caller's context ended (it then
// interrupts the caller's read, see sockReader), and whether the role has
// been free and unused for a whole period (it then takes it). It bounds how
// late a cancelled reading caller returns.
const watchPeriod = 4 * time.Millisecond

// tryLead takes the reader role for a caller if it is free.
func (c *conn) tryLead() bool {
	if c.role.CompareAndSwap(roleFree, roleHeld) {
		c.leads.Add(1)
		return true
	}
	return false
}

// unlead gives the reader role back and wakes a goroutine waiting for it.
func (c *conn) unlead() {
	c.role.Store(roleFree)
	if c.waiters.Load() > 0 {
		select {
		case c.roleCh <- struct{}{}:
		default:
		}
	}
}

// step reads and dispatches one PDU; the caller holds the reader role. It
// reports false when the connection failed (the failure is recorded).
func (c *conn) step(mine bool) bool {
	if c.sr != nil {
		c.sr.boundary = c.r.Buffered() == 0
		// A caller waiting for the only command in flight (its own) waits
		// for it in poll(2) first (see sockReader).
		c.sr.pollWait = mine && len(c.s.slots.free) == cap(c.s.slots.free)-1
	}
	err := c.readPDU()
	if err == nil {
		return true
	}
	if c.sr != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.isDead() {
		// Interrupted between two PDUs (see watch): nothing was consumed.
		if c.nc.SetReadDeadline(time.Time{}) == nil {
			return true
		}
	}
	c.readFailed(err)
	return false
}

// readFailed ends the connection after a receive error: recovery (or the
// session's failure) follows, as for any connection failure.
func (c *conn) readFailed(err error) {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		select {
		case <-c.dead:
			err = c.deadErr
		default:
		}
	}
	if err == nil {
		err = io.EOF
	}
	var de *pdu.DigestError
	if errors.As(err, &de) {
		if de.Header {
			c.s.stats.headerDigestErrors.Add(1)
		} else {
			c.s.stats.dataDigestErrors.Add(1)
		}
	}
	var ce *ConnectionError
	if !errors.As(err, &ce) {
		err = &ConnectionError{Op: "receive", Err: err}
	}
	c.fail(err)
}

// lead reads PDUs, holding the reader role, until sl completes (true), ctx
// ends (checked between PDUs; watch interrupts a read that blocks), or the
// connection fails. It gives the role back before returning. A caller
// never leaves the role in the middle of a PDU.
func (c *conn) lead(ctx context.Context, sl *slot) bool {
	done := ctx.Done()
	if done != nil {
		c.leadMu.Lock()
		c.leadDone = done
		c.leadMu.Unlock()
	}
	ok := false
	for {
		select {
		case <-sl.ev:
			ok = true
		default:
		}
		if ok {
			break
		}
		if done != nil {
			select {
			case <-done:
			default:
				if c.step(true) {
					continue
				}
			}
			break
		}
		if !c.step(true) {
			break
		}
	}
	if done != nil {
		c.leadMu.Lock()
		c.leadDone = nil
		c.leadMu.Unlock()
	}
	c.unlead()
	return ok
}

// watch interrupts the read of a caller holding the reader role whose
// context ended: its blocked read returns at the next PDU boundary. It
// reports whether such a caller holds the role.
func (c *conn) watch() bool {
	c.leadMu.Lock()
	d := c.leadDone
	c.leadMu.Unlock()
	if d == nil {
		return false
	}
	select {
	case <-d:
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
		return true
	default:
		return false
	}
}

// readLoop is the background reader. It holds the reader role while no
// caller does (an idle connection still answers target pings, async
// messages and notices a failure), gives it up at a PDU boundary as soon
// as a caller waits for it, and meanwhile watches the reading callers.
// When the connection is dead it takes the role for good and exits: after
// readerDone no PDU is read from this connection any more.
func (c *conn) readLoop() {
	defer close(c.readerDone)
	var t *time.Timer
	for !c.isDead() {
		if c.role.CompareAndSwap(roleFree, roleHeld) {
			// Read until a caller has waited for the role (it may have
			// been served meanwhile: the next one would wait too).
			asks := c.asks.Load()
			for c.step(false) && (!c.canLead || c.asks.Load() == asks) {
			}
			if c.isDead() {
				c.role.Store(roleGone) // keep the role
				return
			}
			c.unlead()
		}
		// A caller reads. Take the role back once it has been free and
		// unused for a whole period.
		if t == nil {
			t = time.NewTimer(watchPeriod)
			defer t.Stop()
		} else {
			t.Reset(watchPeriod)
		}
		last := c.leads.Load()
		var stuck time.Time // since when a cancelled caller holds the role
		for {
			select {
			case <-c.dead:
			case <-t.C:
				now := c.leads.Load()
				if !c.watch() || now != last {
					stuck = time.Time{}
				} else if stuck.IsZero() {
					stuck = time.Now()
				} else if time.Since(stuck) > c.s.cfg.tmfTimeout {
					// Its context ended and the target stopped in the middle
					// of a PDU for as long as an ABORT TASK may take: the
					// connection can no longer be trusted (as when an abort
					// goes unanswered).
					c.fail(&ConnectionError{Op: "abort task", Err: errors.New("iscsi: target stalled inside a PDU after the reading caller gave up")})
					continue
				}
				if now != last || c.role.Load() != roleFree {
					last = now
					t.Reset(watchPeriod)
					continue
				}
			}
			break
		}
	}
	c.leadForever()
}

// leadForever takes the reader role from whoever holds it (a reading
// caller gives it up when its read fails on the closed socket) and keeps it.
func (c *conn) leadForever() {
	for {
		if c.role.CompareAndSwap(roleFree, roleGone) {
			return
		}
		c.waiters.Add(1)
		if c.role.CompareAndSwap(roleFree, roleGone) {
			c.waiters.Add(-1)
			return
		}
		t := time.NewTimer(time.Millisecond)
		select {
		case <-c.roleCh:
		case <-t.C:
		}
		t.Stop()
		c.waiters.Add(-1)
	}
}

func (c *conn) readPDU() error {
	s := c.s
	h, _, err := c.r.ReadHeader()
	if err != nil {
		return err
	}
	c.rxCount.Add(1)
	op := h.Opcode()
	dlen := h.DataSegmentLength()
	itt := h.ITT()
	switch op {
	case pdu.OpDataIn:
		if err := c.dataIn(h, itt, dlen); err != nil {
			return err
		}
	case pdu.OpSCSIResponse:
		s.win.update(h.Uint32(28), h.Uint32(32))
		if err := c.updateStatSN(h.Uint32(24)); err != nil {
			return err
		}
		sl := s.slots.lookup(itt)
		if sl == nil || sl.kind != kindSCSI {
			if err := c.discard(dlen, "SCSI Response", itt); err != nil {
				return err
			}
			return nil
		}
		sl.response = h[2]
		sl.status = h[3]
		sl.flags = h[1]
		sl.residual = h.Uint32(44)
		if dlen > 0 {
			buf, err := c.readScratch(dlen)
			if err != nil {
				return err
			}
			// Keep the segment as the target sent it (SenseLength +
			// sense data), truncated to the slot's buffer.
			sl.senseLen = copy(sl.sense[:], buf)
		}
		if h[2] == 0 && sl.in != nil && h[3] == 0 && sl.flags&0x06 == 0 && sl.nextOff != uint32(len(sl.in)) {
			// Good status, no residual reported, but not all data arrived.
			sl.flags |= 0x02
			sl.residual = uint32(len(sl.in)) - sl.nextOff
		}
		sl.finish(nil)
	case pdu.OpR2T:
		s.win.update(h.Uint32(28), h.Uint32(32))
		if err := c.r2t(h, itt); err != nil {
			return err
		}
		if dlen > 0 {
			if err := c.r.DiscardData(); err != nil {
				return err
			}
		}
	case pdu.OpNOPIn:
		if err := c.nopIn(h, itt, dlen); err != nil {
			return err
		}
	case pdu.OpTaskMgmtResponse, pdu.OpLogoutResponse:
		s.win.update(h.Uint32(28), h.Uint32(32))
		if err := c.updateStatSN(h.Uint32(24)); err != nil {
			return err
		}
		if dlen > 0 {
			if err := c.r.DiscardData(); err != nil {
				return err
			}
		}
		sl := s.slots.lookup(itt)
		want := kindTMF
		if op == pdu.OpLogoutResponse {
			want = kindLogout
		}
		if sl == nil || sl.kind != want {
			c.debug("iscsi: response for unknown task", "opcode", op, "itt", itt)
			return nil
		}
		sl.response = h[2]
		sl.hdrBuf = *h
		if op == pdu.OpTaskMgmtResponse && sl.refITT != idleITT && (h[2] == 0 || h[2] == 1) {
			// The aborted task is over: retire its ITT here, in the
			// reader, so no later PDU can reach its buffer.
			if ref := s.slots.lookup(sl.refITT); ref != nil {
				ref.itt.Store(idleITT)
			}
		}
		if op == pdu.OpTaskMgmtResponse && h[2] == 0 {
			c.concludeAborted(sl)
		}
		sl.finish(nil)
	case pdu.OpTextResponse:
		s.win.update(h.Uint32(28), h.Uint32(32))
		if err := c.updateStatSN(h.Uint32(24)); err != nil {
			return err
		}
		if dlen > 0 {
			if err := c.r.DiscardData(); err != nil {
				return err
			}
		}
		if sl := s.slots.lookup(itt); sl != nil && sl.kind == kindText {
			sl.hdrBuf = *h
			sl.finish(nil)
		}
	case pdu.OpAsyncMessage:
		s.win.update(h.Uint32(28), h.Uint32(32))
		if err := c.updateStatSN(h.Uint32(24)); err != nil {
			return err
		}
		if err := c.asyncMessage(h, dlen); err != nil {
			return err
		}
	case pdu.OpReject:
		s.win.update(h.Uint32(28), h.Uint32(32))
		if err := c.updateStatSN(h.Uint32(24)); err != nil {
			return err
		}
		reason := h[2]
		buf, err := c.readScratch(dlen)
		if err != nil {
			return err
		}
		if len(buf) < pdu.BHSLen {
			return c.protoErr("reject without the rejected header")
		}
		var rej pdu.BHS
		copy(rej[:], buf)
		rit := rej.ITT()
		c.debug("iscsi: reject", "reason", reason, "itt", rit, "opcode", rej.Opcode())
		if sl := s.slots.lookup(rit); sl != nil {
			sl.finish(&RejectError{Reason: reason})
		}
	default:
		// Text responses and anything else we did not ask for.
		c.debug("iscsi: unexpected PDU", "opcode", op, "itt", itt)
		if dlen > 0 {
			if err := c.r.DiscardData(); err != nil {
				return err
			}
		}
	}
	return nil
}

// concludeAborted ends, after a successful ABORT TASK SET, CLEAR TASK
// SET, LUN RESET or target reset, the SCSI tasks that function aborted:
// those sent before it (lower CmdSN) to its LUN (every LUN for a target
// reset). The target sends nothing more for them.
func (c *conn) concludeAborted(tmf *slot) {
	fn := tmf.tmfFn
	lunWide := fn == tmfAbortTaskSet || fn == tmfClearTaskSet || fn == tmfLUNReset
	if !lunWide && fn != tmfTargetWarmReset && fn != tmfTargetColdReset {
		return
	}
	for i := range c.s.slots.slots {
		sl := &c.s.slots.slots[i]
		if sl.itt.Load() == idleITT || sl.kind != kindSCSI {
			continue
		}
		if lunWide && sl.lun != tmf.lun {
			continue
		}
		if !pdu.SerialLess(sl.cmdSN, tmf.cmdSN) {
			continue
		}
		c.debug("iscsi: task concluded by task management", "itt", sl.ittFor(), "function", fn)
		sl.finish(ErrTaskAborted)
	}
}

func (c *conn) debug(msg string, args ...any) {
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log.Debug(msg, args...)
	}
}

func (c *conn) discard(dlen int, what string, itt uint32) error {
	c.debug("iscsi: PDU for unknown task", "pdu", what, "itt", itt)
	if dlen > 0 {
		return c.r.DiscardData()
	}
	return nil
}

// readScratch reads the data segment into the connection's scratch buffer.
func (c *conn) readScratch(dlen int) ([]byte, error) {
	if dlen == 0 {
		return nil, nil
	}
	if dlen > len(c.scratch) {
		if dlen > int(c.mrdsl) && dlen > 8192 {
			return nil, c.protoErr("data segment %d exceeds our limit", dlen)
		}
		c.scratch = make([]byte, dlen)
	}
	buf := c.scratch[:dlen]
	if err := c.r.ReadData(buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func (c *conn) dataIn(h *pdu.BHS, itt uint32, dlen int) error {
	s := c.s
	s.win.update(h.Uint32(28), h.Uint32(32))
	sl := s.slots.lookup(itt)
	if sl == nil || sl.kind != kindSCSI {
		return c.discard(dlen, "Data-In", itt)
	}
	flags := h[1]
	off := h.Uint32(40)
	dsn := h.Uint32(36)
	if dsn != sl.expDataSN {
		err := c.protoErr("Data-In DataSN %d, want %d", dsn, sl.expDataSN)
		return c.failTask(sl, err)
	}
	if off != sl.nextOff || uint64(off)+uint64(dlen) > uint64(len(sl.in)) {
		err := c.protoErr("Data-In offset %d length %d outside the expected %d bytes (next %d)", off, dlen, len(sl.in), sl.nextOff)
		return c.failTask(sl, err)
	}
	if dlen > 0 {
		if err := c.r.ReadData(sl.in[off : int(off)+dlen]); err != nil {
			return err
		}
	}
	sl.expDataSN++
	sl.nextOff = off + uint32(dlen)
	if flags&0x01 != 0 { // S: status in this PDU
		if flags&0x80 == 0 {
			err := c.protoErr("Data-In with status but without the F bit")
			return c.failTask(sl, err)
		}
		if err := c.updateStatSN(h.Uint32(24)); err != nil {
			return err
		}
		sl.status = h[3]
		sl.flags = flags
		sl.residual = h.Uint32(44)
		if flags&0x06 == 0 && sl.nextOff != uint32(len(sl.in)) {
			sl.flags |= 0x02
			sl.residual = uint32(len(sl.in)) - sl.nextOff
		}
		sl.finish(nil)
	}
	return nil
}

func (c *conn) r2t(h *pdu.BHS, itt uint32) error {
	sl := c.s.slots.lookup(itt)
	if sl == nil || sl.kind != kindSCSI {
		c.debug("iscsi: R2T for unknown task", "itt", itt)
		return nil
	}
	ttt := h.Uint32(20)
	sn := h.Uint32(36)
	off := h.Uint32(40)
	n := h.Uint32(44)
	var err error
	switch {
	case sn != sl.r2tSN:
		err = c.protoErr("R2TSN %d, want %d", sn, sl.r2tSN)
	case n == 0 || uint64(off)+uint64(n) > uint64(len(sl.out)):
		err = c.protoErr("R2T offset %d length %d outside the %d-byte write", off, n, len(sl.out))
	case ttt == 0xffffffff:
		err = c.protoErr("R2T with reserved TTT")
	case n > c.neg.MaxBurstLength && c.neg.MaxBurstLength != 0:
		err = c.protoErr("R2T length %d above MaxBurstLength %d", n, c.neg.MaxBurstLength)
	}
	if err != nil {
		return c.failTask(sl, err)
	}
	sl.r2tSN++
	// Queue the Data-Out PDUs; the reader never writes to the socket
	// itself (a full send buffer must not stop it from reading), so when
	// nobody is flushing it asks the aux goroutine to.
	c.qmu.Lock()
	c.queueDataOutLocked(sl, itt, ttt, off, n)
	busy := c.flushing
	c.qmu.Unlock()
	if !busy {
		select {
		case c.flushKick <- struct{}{}:
		default:
		}
	}
	return nil
}

func (c *conn) nopIn(h *pdu.BHS, itt uint32, dlen int) error {
	s := c.s
	s.win.update(h.Uint32(28), h.Uint32(32))
	ttt := h.Uint32(20)
	if itt != idleITT {
		// Answer to our ping.
		if err := c.updateStatSN(h.Uint32(24)); err != nil {
			return err
		}
		if dlen > 0 {
			if err := c.r.DiscardData(); err != nil {
				return err
			}
		}
		if sl := s.slots.lookup(itt); sl != nil && sl.kind == kindNOP {
			sl.finish(nil)
		}
		return nil
	}
	var data []byte
	if dlen > 0 {
		buf, err := c.readScratch(dlen)
		if err != nil {
			return err
		}
		data = append([]byte(nil), buf...)
	}
	if ttt == 0xffffffff {
		return nil // an unsolicited NOP-In that wants no answer (window update)
	}
	c.pingMu.Lock()
	if len(c.pings) < 16 {
		c.pings = append(c.pings, pingReq{ttt: ttt, lun: h.LUN(), data: data})
	}
	c.pingMu.Unlock()
	select {
	case c.auxKick <- struct{}{}:
	default:
	}
	return nil
}

func (c *conn) asyncMessage(h *pdu.BHS, dlen int) error {
	event := h[36]
	p3 := binary.BigEndian.Uint16(h[42:44])
	if dlen > 0 {
		if err := c.r.DiscardData(); err != nil {
			return err
		}
	}
	c.debug("iscsi: async message", "event", event, "param1", binary.BigEndian.Uint16(h[38:40]), "param2", binary.BigEndian.Uint16(h[40:42]), "param3", p3)
	switch event {
	case 1: // target requests logout within Parameter3 seconds
		c.s.asyncLogout(c, time.Duration(p3)*time.Second)
	case 2, 3: // target will drop the connection / all connections
		// Parameter2 is the Time2Wait before reconnecting, Parameter3 the
		// Time2Retain (RFC 7143 section 11.9.1); with ERL 0 and session
		// reinstatement only the former matters.
		t2w := binary.BigEndian.Uint16(h[40:42])
		c.time2Wait.Store(uint32(t2w) + 1)
		c.s.log.Debug("iscsi: target announced it will drop the connection", "time2wait", t2w, "time2retain", p3)
	case 4: // parameter renegotiation: answer with a Text Request
		select {
		case c.renegKick <- struct{}{}:
		default:
		}
	}
	return nil
}

// auxLoop answers target pings and sends keepalive NOP-Outs, so the reader
// never blocks on the socket's send side.
func (c *conn) auxLoop() {
	defer close(c.auxDone)
	s := c.s
	interval := s.cfg.nopInterval
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	last := c.rxCount.Load()
	for {
		select {
		case <-c.dead:
			return
		case <-c.renegKick:
			if !c.closing.Load() {
				s.renegotiate(c)
			}
		case <-c.flushKick:
			c.qmu.Lock()
			c.kickLocked()
		case <-c.auxKick:
			c.pingMu.Lock()
			pings := c.pings
			c.pings = nil
			c.pingMu.Unlock()
			for _, p := range pings {
				var hdr pdu.BHS
				hdr[0] = byte(pdu.OpNOPOut) | 0x40
				hdr[1] = 0x80
				binary.BigEndian.PutUint64(hdr[8:16], p.lun)
				hdr.PutUint32(16, idleITT)
				hdr.PutUint32(20, p.ttt)
				hdr.SetDataSegmentLength(len(p.data))
				s.win.mu.Lock()
				hdr.PutUint32(24, s.win.cmdSN)
				c.qmu.Lock()
				s.win.mu.Unlock()
				c.enqueueLocked(&hdr, p.data)
				c.kickLocked()
			}
		case <-tick:
			now := c.rxCount.Load()
			if now != last || c.closing.Load() {
				// Traffic proves the target alive; a connection logging
				// out is bounded by the logout timeout instead.
				last = now
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.nopTimeout)
			err := s.ping(ctx, c)
			cancel()
			if err != nil && !c.isDead() {
				s.stats.nopTimeouts.Add(1)
				c.fail(&ConnectionError{Op: "keepalive", Err: fmt.Errorf("no NOP-In within %v: %w", s.cfg.nopTimeout, err)})
				return
			}
			last = c.rxCount.Load()
		}
	}
}
