package iscsitest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosan/iscsi/pdu"
	"github.com/gosan/iscsi/scsi"
)

// snKind says how a sent PDU uses StatSN.
type snKind uint8

const (
	snAdvance snKind = iota // carries StatSN and consumes it
	snCurrent               // carries the current StatSN without consuming it
	snNone                  // StatSN field reserved (Data-In without status)
)

type out struct {
	m  pdu.Message
	sn snKind
}

type conn struct {
	s    *Server
	id   int
	nc   net.Conn
	r    *pdu.Reader
	done chan struct{}
	once sync.Once
	ffp  atomic.Bool

	// Set during login, read-only afterwards.
	initiator, targetName string
	discovery             bool
	isid                  [6]byte
	tsih                  uint16
	tgt                   *target
	sess                  *session
	neg                   negotiated

	// wmu guards the writer and the sequence numbers.
	wmu      sync.Mutex
	w        *pdu.Writer
	hdrDig   bool
	dataDig  bool
	statSN   uint32
	expCmdSN uint32
	window   int        // window last advertised
	annMu    sync.Mutex // serialises window announcements

	// Reader goroutine only.
	tasks        map[uint32]*task
	pendingBytes int
	nextTTT      uint32
	textPending  []byte // SendTargets answer still to send (C bit)
	textTTT      uint32

	// rmu guards the record.
	rmu sync.Mutex
	rec ConnRecord
}

func newConn(s *Server, nc net.Conn, id int) *conn {
	return &conn{
		s: s, id: id, nc: nc,
		r:       pdu.NewReader(nc, 64<<10),
		w:       pdu.NewWriter(nc),
		done:    make(chan struct{}),
		statSN:  uint32(id) * 0x1000,
		tasks:   map[uint32]*task{},
		nextTTT: 1,
		rec:     ConnRecord{ID: id},
	}
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

func (c *conn) snapshot() *ConnRecord {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	r := c.rec
	r.Initiator, r.Target, r.Discovery, r.ISID, r.TSIH = c.initiator, c.targetName, c.discovery, c.isid, c.tsih
	select {
	case <-c.done:
		r.Closed = true
	default:
	}
	r.PDUs = append([]PDURecord(nil), c.rec.PDUs...)
	r.Violations = append([]Violation(nil), c.rec.Violations...)
	r.Pings = append([]Ping(nil), c.rec.Pings...)
	return &r
}

func (c *conn) recordPDU(dir Direction, h *pdu.BHS) {
	rec := recordHeader(dir, h)
	c.rmu.Lock()
	if len(c.rec.PDUs) >= maxRecordsPerConn {
		c.rec.PDUs = append(c.rec.PDUs[:0], c.rec.PDUs[maxRecordsPerConn/2:]...)
	}
	c.rec.PDUs = append(c.rec.PDUs, rec)
	c.rmu.Unlock()
}

func (c *conn) violation(itt uint32, format string, args ...any) {
	v := Violation{Conn: c.id, ITT: itt, What: fmt.Sprintf(format, args...)}
	c.s.log.Debug("iscsitest: violation", "conn", c.id, "what", v.What)
	c.rmu.Lock()
	if len(c.rec.Violations) < maxViolations {
		c.rec.Violations = append(c.rec.Violations, v)
	}
	c.rmu.Unlock()
}

// maxCmdSN returns ExpCmdSN + window - 1 (wmu held).
func (c *conn) maxCmdSN() uint32 {
	return c.expCmdSN + uint32(c.s.window()) - 1
}

// send encodes, numbers, records and writes PDUs in one flush.
func (c *conn) send(msgs ...out) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var mut func([]byte, []byte) []byte
	if c.ffp.Load() {
		mut = c.s.faults.mutator()
	}
	for _, o := range msgs {
		hdr := o.m.AppendHeader(make([]byte, 0, pdu.BHSLen))
		h := (*pdu.BHS)(hdr[:pdu.BHSLen])
		switch o.sn {
		case snAdvance:
			h.SetStatSN(c.statSN)
			c.statSN++
		case snCurrent:
			h.SetStatSN(c.statSN)
		}
		h.SetExpCmdSN(c.expCmdSN)
		h.SetMaxCmdSN(c.maxCmdSN())
		c.window = c.s.window()
		var data []byte
		if ds, ok := o.m.(pdu.DataSegmenter); ok {
			data = ds.DataSegment()
		}
		if mut != nil {
			data = mut(hdr, data)
			h = (*pdu.BHS)(hdr[:pdu.BHSLen])
		}
		c.recordPDU(Sent, h)
		ch, cd := false, false
		if c.ffp.Load() {
			ch, cd = c.s.faults.corrupt(c.hdrDig, c.dataDig, len(data) > 0)
		}
		if !ch && !cd {
			c.w.Queue(hdr, data)
			continue
		}
		if err := c.w.Flush(); err != nil {
			return err
		}
		if _, err := c.nc.Write(c.rawPDU(hdr, data, ch, cd)); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

// rawPDU builds a PDU's bytes with digests, spoiling those asked for.
func (c *conn) rawPDU(hdr, data []byte, badHdr, badData bool) []byte {
	b := append([]byte(nil), hdr...)
	if c.hdrDig {
		crc := pdu.CRC32C(hdr)
		if badHdr {
			crc = ^crc
		}
		b = pdu.AppendDigest(b, crc)
	}
	if len(data) > 0 {
		start := len(b)
		b = append(b, data...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		if c.dataDig {
			crc := pdu.CRC32C(b[start:])
			if badData {
				crc = ^crc
			}
			b = pdu.AppendDigest(b, crc)
		}
	}
	return b
}

func (c *conn) serve() {
	defer c.close()
	if err := c.login(); err != nil {
		c.s.log.Debug("iscsitest: login ended", "conn", c.id, "err", err)
		return
	}
	c.wmu.Lock()
	c.hdrDig, c.dataDig = c.neg.headerDigest, c.neg.dataDigest
	c.w.SetDigests(c.hdrDig, c.dataDig)
	c.wmu.Unlock()
	c.r.SetDigests(c.neg.headerDigest, c.neg.dataDigest)
	c.r.SetMaxDataSegmentLength(c.neg.recvMRDSL)
	c.ffp.Store(true)
	c.announceWindow() // in case SetCmdWindow ran during login

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.pingLoop()
	}()
	defer wg.Wait()
	defer c.close()
	if err := c.fullFeature(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
		c.s.log.Debug("iscsitest: connection ended", "conn", c.id, "err", err)
	}
}

func (c *conn) pingLoop() {
	for {
		iv := c.s.faults.pingInterval()
		wait := iv
		if wait == 0 {
			wait = 20 * time.Millisecond
		}
		select {
		case <-c.done:
			return
		case <-time.After(wait):
		}
		if iv == 0 {
			continue
		}
		c.wmu.Lock()
		ttt := 0x80000000 | uint32(len(c.rec.Pings)+1)
		c.wmu.Unlock()
		c.rmu.Lock()
		if len(c.rec.Pings) < maxViolations {
			c.rec.Pings = append(c.rec.Pings, Ping{TTT: ttt, Sent: time.Now()})
		}
		c.rmu.Unlock()
		if c.send(out{m: &pdu.NOPIn{LUN: 0, ITT: pdu.ReservedTag, TTT: ttt}, sn: snCurrent}) != nil {
			return
		}
	}
}

// announceWindow sends an unsolicited NOP-In carrying the new MaxCmdSN if
// the window changed since the last PDU sent.
func (c *conn) announceWindow() {
	c.annMu.Lock()
	defer c.annMu.Unlock()
	c.wmu.Lock()
	changed := c.window != c.s.window()
	c.wmu.Unlock()
	if changed {
		_ = c.send(out{m: &pdu.NOPIn{ITT: pdu.ReservedTag, TTT: pdu.ReservedTag}, sn: snCurrent})
	}
}

func (c *conn) sendAsync(ev pdu.AsyncEvent, p1, p2, p3 uint16) {
	_ = c.send(out{m: &pdu.AsyncMessage{ITT: pdu.ReservedTag, Event: ev, Parameter1: p1, Parameter2: p2, Parameter3: p3}, sn: snAdvance})
}

// waitStall blocks while a stall fault is active.
func (c *conn) waitStall() {
	for {
		until, ch := c.s.faults.stall()
		if ch != nil {
			select {
			case <-ch:
			case <-c.done:
				return
			}
			continue
		}
		d := time.Until(until)
		if d <= 0 {
			return
		}
		select {
		case <-time.After(d):
		case <-c.done:
			return
		}
	}
}

// checkCmdSN applies the command window to a non-immediate request. It
// reports whether the request is to be executed.
func (c *conn) checkCmdSN(h *pdu.BHS) bool {
	if h.Immediate() {
		return true
	}
	sn := h.CmdSN()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	exp, maxSN := c.expCmdSN, c.maxCmdSN()
	if !pdu.SerialInWindow(sn, exp, maxSN) || c.s.window() == 0 {
		c.violationLocked(h.ITT(), "CmdSN %d outside window [%d, %d]: ignored", sn, exp, maxSN)
		return false
	}
	if sn != exp {
		c.violationLocked(h.ITT(), "CmdSN %d, expected %d", sn, exp)
	}
	c.expCmdSN = sn + 1
	return true
}

func (c *conn) violationLocked(itt uint32, format string, args ...any) {
	c.violation(itt, format, args...)
}

func (c *conn) reject(h *pdu.BHS, reason pdu.RejectReason) error {
	return c.send(out{m: &pdu.Reject{Reason: reason, ITT: pdu.ReservedTag, Data: append([]byte(nil), h[:]...)}, sn: snAdvance})
}

func (c *conn) fullFeature() error {
	scratch := make([]byte, c.neg.recvMRDSL)
	for {
		c.waitStall()
		h, _, err := c.r.ReadHeader()
		if err != nil {
			var de *pdu.DigestError
			if errors.As(err, &de) {
				c.violation(0, "%v", err)
			}
			var tl *pdu.DataSegmentTooLargeError
			if errors.As(err, &tl) {
				c.violation(h.ITT(), "%v", err)
			}
			return err
		}
		hdr := *h
		c.recordPDU(Received, &hdr)
		n := hdr.DataSegmentLength()
		data := scratch[:n]
		if err := c.r.ReadData(data); err != nil {
			var de *pdu.DigestError
			if errors.As(err, &de) {
				c.violation(hdr.ITT(), "%v", err)
				// ERL 0: reject and drop the connection.
				_ = c.reject(&hdr, pdu.RejectDataDigestError)
			}
			return err
		}
		if c.s.faults.countPDU(hdr.Opcode() == pdu.OpSCSICommand) {
			return errors.New("iscsitest: dropped by fault hook")
		}
		if err := c.dispatch(&hdr, data); err != nil {
			return err
		}
		if c.s.faults.stopReading(hdr.Opcode()) {
			c.s.log.Debug("iscsitest: stopped reading by fault hook", "conn", c.id)
			// The kernel stops taking data too, as for a target whose
			// socket buffers are full, so the initiator's send blocks
			// however much it has to send.
			if tc, ok := c.nc.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(1)
			}
			<-c.done
			return net.ErrClosed
		}
	}
}

var errLogout = errors.New("iscsitest: logged out")

func (c *conn) dispatch(h *pdu.BHS, data []byte) error {
	switch h.Opcode() {
	case pdu.OpNOPOut:
		return c.nopOut(h, data)
	case pdu.OpSCSICommand:
		if c.discovery {
			c.violation(h.ITT(), "SCSI command in a discovery session")
			return c.reject(h, pdu.RejectProtocolError)
		}
		if !c.checkCmdSN(h) {
			return nil
		}
		return c.command(h, data)
	case pdu.OpDataOut:
		return c.dataOut(h, data)
	case pdu.OpTaskMgmtRequest:
		if !c.checkCmdSN(h) {
			return nil
		}
		return c.taskMgmt(h)
	case pdu.OpTextRequest:
		if !c.checkCmdSN(h) {
			return nil
		}
		return c.text(h, data)
	case pdu.OpLogoutRequest:
		if !c.checkCmdSN(h) {
			return nil
		}
		var req pdu.LogoutRequest
		_ = req.DecodeHeader(h, nil)
		resp := &pdu.LogoutResponse{ITT: req.ITT, Response: pdu.LogoutSuccess, Time2Wait: 2}
		if req.Reason != pdu.LogoutCloseSession && req.CID != 0 && req.Reason == pdu.LogoutRemoveForRecovery {
			resp.Response = pdu.LogoutRecoveryNotSupported
		}
		if err := c.send(out{m: resp, sn: snAdvance}); err != nil {
			return err
		}
		return errLogout
	case pdu.OpSNACK:
		c.violation(h.ITT(), "SNACK at ErrorRecoveryLevel 0")
		return c.reject(h, pdu.RejectProtocolError)
	case pdu.OpLoginRequest:
		c.violation(h.ITT(), "Login Request in full feature phase")
		_ = c.reject(h, pdu.RejectProtocolError)
		return errors.New("iscsitest: login request in full feature phase")
	}
	c.violation(h.ITT(), "unexpected opcode %v", h.Opcode())
	return c.reject(h, pdu.RejectCommandNotSupported)
}

func (c *conn) nopOut(h *pdu.BHS, data []byte) error {
	if h.ITT() == pdu.ReservedTag {
		// An answer to our ping.
		ttt := h.TTT()
		c.rmu.Lock()
		found := false
		for i := range c.rec.Pings {
			if c.rec.Pings[i].TTT == ttt && c.rec.Pings[i].Answered.IsZero() {
				c.rec.Pings[i].Answered = time.Now()
				found = true
			}
		}
		c.rmu.Unlock()
		if !found {
			c.violation(h.ITT(), "NOP-Out with unknown TTT %#x", ttt)
		}
		if !h.Immediate() {
			c.violation(h.ITT(), "NOP-Out answering a ping without the I bit")
		}
		return nil
	}
	if h.TTT() != pdu.ReservedTag {
		c.violation(h.ITT(), "NOP-Out ping with TTT %#x", h.TTT())
	}
	if !c.checkCmdSN(h) {
		return nil
	}
	return c.send(out{m: &pdu.NOPIn{LUN: h.LUN(), ITT: h.ITT(), TTT: pdu.ReservedTag, Data: append([]byte(nil), data...)}, sn: snAdvance})
}

// task is a write command collecting Data-Out.
type task struct {
	itt       uint32
	lun       uint64
	cdb       []byte
	edtl      uint32
	read      bool
	buf       []byte // EDTL bytes (nil for a sink)
	unsolEnd  uint32 // end of the unsolicited burst
	unsolOff  uint32 // next unsolicited offset
	unsolSN   uint32
	unsolOK   bool // unsolicited Data-Out allowed
	unsolDone bool // unsolicited phase over
	nextR2T   uint32
	r2tSN     uint32
	r2ts      map[uint32]*r2tSeq
	swallowed bool // Faults.SwallowCommands: never answered
}

type r2tSeq struct {
	off, end, next, dataSN uint32
}

func (c *conn) command(h *pdu.BHS, data []byte) error {
	var cmd pdu.SCSICommand
	if err := cmd.DecodeHeader(h, nil); err != nil {
		return c.reject(h, pdu.RejectInvalidPDUField)
	}
	cdb := append([]byte(nil), cmd.CDB...)
	if len(cmd.AHS) > 0 {
		c.violation(cmd.ITT, "unexpected AHS of %d bytes", len(cmd.AHS))
	}
	if _, dup := c.tasks[cmd.ITT]; dup {
		c.violation(cmd.ITT, "ITT already in use")
		return c.reject(h, pdu.RejectTaskInProgress)
	}
	if reason, ok := c.s.faults.takeReject(cdb); ok {
		return c.reject(h, reason)
	}
	if c.s.faults.takeSwallow(cdb) {
		c.s.log.Debug("iscsitest: command swallowed by fault hook", "conn", c.id, "itt", cmd.ITT)
		c.tasks[cmd.ITT] = &task{itt: cmd.ITT, lun: cmd.LUN, cdb: cdb, edtl: cmd.ExpectedDataTransferLength, read: cmd.Read, swallowed: true}
		return nil
	}
	if len(data) > 0 {
		if !cmd.Write {
			c.violation(cmd.ITT, "immediate data on a command without the W bit")
		}
		if !c.neg.immediate {
			c.violation(cmd.ITT, "immediate data but ImmediateData=No")
		}
		if len(data) > c.neg.firstBurst {
			c.violation(cmd.ITT, "immediate data of %d bytes exceeds FirstBurstLength %d", len(data), c.neg.firstBurst)
		}
		if uint32(len(data)) > cmd.ExpectedDataTransferLength {
			c.violation(cmd.ITT, "immediate data of %d bytes exceeds EDTL %d", len(data), cmd.ExpectedDataTransferLength)
		}
	}
	if !cmd.Write || cmd.ExpectedDataTransferLength == 0 {
		if cmd.Write && !cmd.Final {
			c.violation(cmd.ITT, "write command without data and without the F bit")
		}
		return c.finish(&task{itt: cmd.ITT, lun: cmd.LUN, cdb: cdb, edtl: cmd.ExpectedDataTransferLength, read: cmd.Read})
	}
	if len(c.tasks) >= maxTasksPerConn {
		c.violation(cmd.ITT, "more than %d tasks in flight", maxTasksPerConn)
		return errors.New("iscsitest: too many tasks")
	}
	edtl := cmd.ExpectedDataTransferLength
	t := &task{itt: cmd.ITT, lun: cmd.LUN, cdb: cdb, edtl: edtl, read: cmd.Read, r2ts: map[uint32]*r2tSeq{}}
	if int(edtl) <= maxPendingWrite-c.pendingBytes {
		t.buf = make([]byte, edtl)
		c.pendingBytes += int(edtl)
	} else {
		c.violation(cmd.ITT, "EDTL %d: write too large for the test target, data discarded", edtl)
	}
	t.unsolEnd = min(edtl, uint32(c.neg.firstBurst))
	if len(data) > 0 {
		n := min(uint32(len(data)), edtl)
		if t.buf != nil {
			copy(t.buf, data[:n])
		}
		t.unsolOff = n
	}
	t.unsolOK = !c.neg.initialR2T && !cmd.Final
	if c.neg.initialR2T && !cmd.Final {
		c.violation(cmd.ITT, "F bit clear on a write command but InitialR2T=Yes")
	}
	if cmd.Final || t.unsolOff >= t.unsolEnd {
		if !cmd.Final {
			c.violation(cmd.ITT, "F bit clear but the unsolicited burst is already complete")
		}
		t.unsolDone = true
		t.nextR2T = t.unsolOff
	}
	c.tasks[cmd.ITT] = t
	return c.progress(t)
}

// progress sends R2Ts as allowed and completes the task when all data is in.
func (c *conn) progress(t *task) error {
	if !t.unsolDone {
		return nil
	}
	var msgs []out
	for len(t.r2ts) < c.neg.maxR2T && t.nextR2T < t.edtl {
		n := min(uint32(c.neg.maxBurst), t.edtl-t.nextR2T)
		ttt := c.nextTTT
		c.nextTTT++
		if c.nextTTT == pdu.ReservedTag || c.nextTTT&0x80000000 != 0 {
			c.nextTTT = 1
		}
		t.r2ts[ttt] = &r2tSeq{off: t.nextR2T, end: t.nextR2T + n, next: t.nextR2T}
		msgs = append(msgs, out{m: &pdu.R2T{LUN: t.lun, ITT: t.itt, TTT: ttt, R2TSN: t.r2tSN, BufferOffset: t.nextR2T, DesiredDataTransferLength: n}, sn: snCurrent})
		t.r2tSN++
		t.nextR2T += n
	}
	if len(msgs) > 0 {
		return c.send(msgs...)
	}
	if len(t.r2ts) == 0 && t.nextR2T >= t.edtl {
		delete(c.tasks, t.itt)
		if t.buf != nil {
			c.pendingBytes -= len(t.buf)
		}
		return c.finish(t)
	}
	return nil
}

func (c *conn) dataOut(h *pdu.BHS, data []byte) error {
	var d pdu.DataOut
	_ = d.DecodeHeader(h, nil)
	t := c.tasks[d.ITT]
	if t == nil {
		c.violation(d.ITT, "Data-Out for unknown ITT (TTT %#x)", d.TTT)
		return nil
	}
	if t.swallowed {
		return nil
	}
	n := uint32(len(data))
	put := func() {
		if t.buf != nil && d.BufferOffset <= t.edtl && n <= t.edtl-d.BufferOffset {
			copy(t.buf[d.BufferOffset:], data)
		}
	}
	if d.TTT == pdu.ReservedTag {
		if !t.unsolOK || t.unsolDone {
			c.violation(d.ITT, "unsolicited Data-Out not allowed here (offset %d)", d.BufferOffset)
			return nil
		}
		if d.DataSN != t.unsolSN {
			c.violation(d.ITT, "unsolicited Data-Out DataSN %d, expected %d", d.DataSN, t.unsolSN)
		}
		if d.BufferOffset != t.unsolOff {
			c.violation(d.ITT, "unsolicited Data-Out BufferOffset %d, expected %d", d.BufferOffset, t.unsolOff)
		}
		if d.BufferOffset+n > t.unsolEnd || d.BufferOffset+n < d.BufferOffset {
			c.violation(d.ITT, "unsolicited Data-Out [%d,+%d) beyond FirstBurstLength/EDTL %d", d.BufferOffset, n, t.unsolEnd)
		} else {
			put()
		}
		t.unsolSN = d.DataSN + 1
		t.unsolOff = d.BufferOffset + n
		if d.Final || t.unsolOff >= t.unsolEnd {
			if !d.Final {
				c.violation(d.ITT, "unsolicited burst complete without the F bit")
			}
			t.unsolDone = true
			t.nextR2T = t.unsolOff
		}
		return c.progress(t)
	}
	seq := t.r2ts[d.TTT]
	if seq == nil {
		c.violation(d.ITT, "Data-Out with unknown TTT %#x", d.TTT)
		return nil
	}
	if d.DataSN != seq.dataSN {
		c.violation(d.ITT, "Data-Out DataSN %d, expected %d (TTT %#x)", d.DataSN, seq.dataSN, d.TTT)
	}
	if d.BufferOffset != seq.next {
		c.violation(d.ITT, "Data-Out BufferOffset %d, expected %d (TTT %#x)", d.BufferOffset, seq.next, d.TTT)
	}
	if d.BufferOffset < seq.off || d.BufferOffset+n > seq.end || d.BufferOffset+n < d.BufferOffset {
		c.violation(d.ITT, "Data-Out [%d,+%d) outside R2T [%d,%d)", d.BufferOffset, n, seq.off, seq.end)
	} else {
		put()
	}
	seq.dataSN = d.DataSN + 1
	seq.next = d.BufferOffset + n
	if d.Final || seq.next >= seq.end {
		if !d.Final {
			c.violation(d.ITT, "R2T sequence complete without the F bit (TTT %#x)", d.TTT)
		} else if seq.next != seq.end {
			c.violation(d.ITT, "F bit at offset %d, R2T ends at %d", seq.next, seq.end)
		}
		delete(t.r2ts, d.TTT)
	}
	return c.progress(t)
}

// finish executes a command whose data is all in and sends its status.
func (c *conn) finish(t *task) error {
	lunNum := scsi.DecodeLUN(t.lun)
	l := c.tgt.luns[lunNum]
	var res cmdResult
	if s, ok := c.s.faults.takeCheck(t.cdb); ok {
		res = checkCondition(s.Key, s.ASC, s.ASCQ)
	} else if l != nil && t.cdb[0] != opInquiry && t.cdb[0] != opReportLUNs && t.cdb[0] != opRequestSense && c.s.takeUA(c.sess, lunNum) {
		res = checkCondition(scsi.SenseUnitAttention, 0x29, 0x00)
	} else {
		if l != nil && t.buf == nil && (t.cdb[0] == opWrite10 || t.cdb[0] == opWrite16 || t.cdb[0] == opWrite6) {
			res = errInvalidField()
		} else {
			res = c.s.execute(c.tgt, l, t.cdb, t.buf)
		}
	}
	return c.respond(t, res)
}

func (c *conn) respond(t *task, res cmdResult) error {
	edtl := int(t.edtl)
	var under, over bool
	var resid uint32
	if res.status == uint8(scsi.StatusGood) && len(res.data) > 0 {
		d := res.data
		if len(d) > edtl {
			over, resid = true, uint32(len(d)-edtl)
			d = d[:edtl]
		} else if len(d) < edtl {
			under, resid = true, uint32(edtl-len(d))
		}
		if !t.read && edtl > 0 {
			c.violation(t.itt, "command returning data without the R bit")
		}
		if len(d) > 0 {
			var msgs []out
			max := c.neg.xmitMRDSL
			var sn uint32
			for off := 0; off < len(d); off += max {
				end := min(off+max, len(d))
				last := end == len(d)
				di := &pdu.DataIn{LUN: t.lun, ITT: t.itt, TTT: pdu.ReservedTag, DataSN: sn, BufferOffset: uint32(off), Data: d[off:end]}
				sn++
				kind := snNone
				if last {
					di.Final, di.StatusPresent, di.Status = true, true, res.status
					di.ResidualOverflow, di.ResidualUnderflow, di.ResidualCount = over, under, resid
					kind = snAdvance
				}
				msgs = append(msgs, out{m: di, sn: kind})
			}
			return c.send(msgs...)
		}
	}
	resp := &pdu.SCSIResponse{LUN: t.lun, ITT: t.itt, Status: res.status, Response: pdu.ResponseCommandCompleted}
	if res.status == uint8(scsi.StatusGood) && edtl > 0 {
		got := len(res.data)
		if !t.read {
			got = res.want
		}
		if got > edtl {
			resp.ResidualOverflow, resp.ResidualCount = true, uint32(got-edtl)
		} else if got < edtl {
			resp.ResidualUnderflow, resp.ResidualCount = true, uint32(edtl-got)
		}
	}
	if len(res.sense) > 0 {
		resp.Data = binary.BigEndian.AppendUint16(nil, uint16(len(res.sense)))
		resp.Data = append(resp.Data, res.sense...)
	}
	return c.send(out{m: resp, sn: snAdvance})
}

func (c *conn) taskMgmt(h *pdu.BHS) error {
	var req pdu.TaskMgmtRequest
	_ = req.DecodeHeader(h, nil)
	if c.s.faults.takeTMFSwallow(req.Function) {
		c.s.log.Debug("iscsitest: task management request swallowed by fault hook", "conn", c.id, "function", req.Function)
		return nil
	}
	resp := &pdu.TaskMgmtResponse{ITT: req.ITT, Response: pdu.TMFFunctionComplete}
	dropTasks := func(match func(*task) bool) {
		for itt, t := range c.tasks {
			if match(t) {
				if t.buf != nil {
					c.pendingBytes -= len(t.buf)
				}
				delete(c.tasks, itt)
			}
		}
	}
	switch req.Function {
	case pdu.TMFAbortTask:
		if t := c.tasks[req.ReferencedTaskTag]; t != nil {
			dropTasks(func(x *task) bool { return x == t })
		} else {
			// Every other command completes at once, so it is either done
			// or never arrived.
			resp.Response = pdu.TMFTaskDoesNotExist
		}
	case pdu.TMFAbortTaskSet, pdu.TMFClearTaskSet:
		dropTasks(func(x *task) bool { return x.lun == req.LUN })
	case pdu.TMFLogicalUnitReset:
		n := scsi.DecodeLUN(req.LUN)
		if c.tgt == nil || c.tgt.luns[n] == nil {
			resp.Response = pdu.TMFLUNDoesNotExist
			break
		}
		dropTasks(func(x *task) bool { return x.lun == req.LUN })
		c.s.unitAttentionAll(c.targetName, &n, c.sess)
	case pdu.TMFTargetWarmReset, pdu.TMFTargetColdReset:
		dropTasks(func(*task) bool { return true })
		if c.tgt != nil {
			c.s.unitAttentionAll(c.targetName, nil, c.sess)
		}
		if req.Function == pdu.TMFTargetColdReset {
			if err := c.send(out{m: resp, sn: snAdvance}); err != nil {
				return err
			}
			return errors.New("iscsitest: target cold reset")
		}
	default:
		resp.Response = pdu.TMFNotSupported
	}
	return c.send(out{m: resp, sn: snAdvance})
}

func (c *conn) text(h *pdu.BHS, data []byte) error {
	var req pdu.TextRequest
	_ = req.DecodeHeader(h, nil)
	if req.TTT != pdu.ReservedTag {
		// Continuation of a long answer.
		if req.TTT != c.textTTT || c.textPending == nil {
			c.violation(req.ITT, "Text Request with unknown TTT %#x", req.TTT)
			return c.reject(h, pdu.RejectProtocolError)
		}
		return c.sendText(req.ITT, req.LUN)
	}
	kvs, err := pdu.ParseText(data)
	if err != nil || req.Continue {
		c.violation(req.ITT, "Text Request not understood: %v", err)
		return c.reject(h, pdu.RejectProtocolError)
	}
	var answer []byte
	for _, kv := range kvs {
		if kv.Key != "SendTargets" {
			answer = pdu.AppendText(answer, pdu.KV{Key: kv.Key, Value: pdu.NotUnderstood})
			continue
		}
		for _, t := range c.s.order {
			if !t.allowed(c.initiator) {
				continue
			}
			if kv.Value == "All" && !c.discovery {
				continue
			}
			if kv.Value != "All" && kv.Value != "" && kv.Value != t.cfg.Name {
				continue
			}
			if kv.Value == "" && t != c.tgt {
				continue
			}
			answer = pdu.AppendText(answer,
				pdu.KV{Key: "TargetName", Value: t.cfg.Name},
				pdu.KV{Key: "TargetAddress", Value: fmt.Sprintf("%s,%d", c.s.Addr(), c.s.cfg.Negotiation.PortalGroupTag)})
		}
	}
	c.textPending = answer
	if c.textPending == nil {
		c.textPending = []byte{}
	}
	c.textTTT = 0x40000000 | uint32(c.id)
	return c.sendText(req.ITT, req.LUN)
}

func (c *conn) sendText(itt uint32, lun uint64) error {
	d := c.textPending
	resp := &pdu.TextResponse{ITT: itt, LUN: lun, TTT: pdu.ReservedTag, Final: true}
	if len(d) > c.neg.xmitMRDSL {
		resp.Data = d[:c.neg.xmitMRDSL]
		resp.Final, resp.Continue, resp.TTT = false, true, c.textTTT
		c.textPending = d[c.neg.xmitMRDSL:]
	} else {
		resp.Data = d
		c.textPending = nil
	}
	return c.send(out{m: resp, sn: snAdvance})
}
