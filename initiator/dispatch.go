package initiator

import (
	"time"

	"github.com/gosan/iscsi/pdu"
	"github.com/gosan/iscsi/scsi"
)

// Dispatch: whoever holds the reader role (see leader.go) reads one PDU
// with readPDU, which applies its sequence numbers in one place (sequence)
// and hands it to the handler of its opcode. Each handler decodes the
// header into the connection's reused struct for that opcode (rx), so
// fields are read by their pdu names and nothing is allocated.

// rx holds one decoded header per target opcode, reused for every PDU of
// the connection (pgproto3's flyweights). Only the reader role's holder
// touches it.
type rx struct {
	dataIn pdu.DataIn
	rsp    pdu.SCSIResponse
	r2t    pdu.R2T
	nopIn  pdu.NOPIn
	tmf    pdu.TaskMgmtResponse
	logout pdu.LogoutResponse
	text   pdu.TextResponse
	async  pdu.AsyncMessage
	reject pdu.Reject
}

// maxStatSNGap is how far a StatSN may be from the expected one before the
// connection is considered broken (RFC 7143 section 4.2.2.2 asks for
// recovery above an implementation-defined constant below 2^31).
const maxStatSNGap = 1 << 16

// sequence applies the sequence numbers of a target PDU: ExpCmdSN and
// MaxCmdSN to the session's command window and, when the PDU carries
// status, StatSN to the connection's ExpStatSN. It is the only place that
// does; only the reader role's holder writes expStatSN.
func (c *conn) sequence(h *pdu.BHS) error {
	c.s.win.update(h.ExpCmdSN(), h.MaxCmdSN())
	if !h.AdvancesStatSN() {
		return nil
	}
	statSN := h.StatSN()
	cur := c.expStatSN.Load()
	if d := pdu.SerialDiff(statSN, cur); d > maxStatSNGap || d < -maxStatSNGap {
		return c.protoErr("StatSN %d far from the expected %d", statSN, cur)
	}
	if pdu.SerialGreaterEq(statSN, cur) {
		c.expStatSN.Store(statSN + 1)
	}
	return nil
}

// readPDU reads one PDU and dispatches it to the handler of its opcode.
func (c *conn) readPDU() error {
	h, ahs, err := c.r.ReadHeader()
	if err != nil {
		return err
	}
	c.rxCount.Add(1)
	if c.orphans.Load() > 0 && c.orphans.Swap(0) > 0 {
		// Immediate requests whose owners gave up waiting: their late
		// answers (this PDU, maybe) find no task, and the slots are free.
		c.s.slots.reclaim(c)
	}
	switch h.Opcode() {
	case pdu.OpDataIn, pdu.OpSCSIResponse, pdu.OpR2T, pdu.OpNOPIn, pdu.OpTaskMgmtResponse,
		pdu.OpLogoutResponse, pdu.OpTextResponse, pdu.OpAsyncMessage, pdu.OpReject:
		if err := c.sequence(h); err != nil {
			return err
		}
	default:
		// A Login Response, an initiator opcode, an unknown one: nothing
		// we asked for in full feature phase.
		c.debug("iscsi: unexpected PDU", "opcode", h.Opcode(), "itt", h.ITT())
		return c.skipData(h)
	}
	switch h.Opcode() {
	case pdu.OpDataIn:
		return c.onDataIn(h, ahs)
	case pdu.OpSCSIResponse:
		return c.onSCSIResponse(h, ahs)
	case pdu.OpR2T:
		return c.onR2T(h, ahs)
	case pdu.OpNOPIn:
		return c.onNOPIn(h, ahs)
	case pdu.OpTaskMgmtResponse:
		return c.onTaskMgmtResponse(h, ahs)
	case pdu.OpLogoutResponse:
		return c.onLogoutResponse(h, ahs)
	case pdu.OpTextResponse:
		return c.onTextResponse(h, ahs)
	case pdu.OpAsyncMessage:
		return c.onAsyncMessage(h, ahs)
	default: // pdu.OpReject
		return c.onReject(h, ahs)
	}
}

// decodeErr reports a header the typed decoder refused.
func (c *conn) decodeErr(err error) error {
	return &ProtocolError{Reason: err.Error()}
}

// skipData discards the data segment of the current PDU.
func (c *conn) skipData(h *pdu.BHS) error {
	if h.DataSegmentLength() > 0 {
		return c.r.DiscardData()
	}
	return nil
}

// task returns the slot of kind waiting for itt, or nil (after logging)
// when there is none: the task ended, or the target is confused.
func (c *conn) task(itt uint32, kind uint8, op pdu.Opcode) *slot {
	sl := c.s.slots.lookup(itt)
	if sl == nil || sl.kind != kind {
		c.debug("iscsi: PDU for no task of ours", "opcode", op, "itt", itt)
		return nil
	}
	return sl
}

func (c *conn) onDataIn(h *pdu.BHS, ahs []byte) error {
	m := &c.rx.dataIn
	if err := m.DecodeHeader(h, ahs); err != nil {
		return c.decodeErr(err)
	}
	sl := c.task(m.ITT, kindSCSI, pdu.OpDataIn)
	if sl == nil {
		return c.skipData(h)
	}
	dlen := h.DataSegmentLength()
	off := m.BufferOffset
	if m.DataSN != sl.expDataSN {
		return c.failTask(sl, c.protoErr("Data-In DataSN %d, want %d", m.DataSN, sl.expDataSN))
	}
	if off != sl.nextOff || uint64(off)+uint64(dlen) > uint64(len(sl.in)) {
		return c.failTask(sl, c.protoErr("Data-In offset %d length %d outside the expected %d bytes (next %d)", off, dlen, len(sl.in), sl.nextOff))
	}
	if dlen > 0 {
		if err := c.r.ReadData(sl.in[off : int(off)+dlen]); err != nil {
			return err
		}
	}
	sl.expDataSN++
	sl.nextOff = off + uint32(dlen)
	if !m.StatusPresent {
		return nil
	}
	if !m.Final {
		return c.failTask(sl, c.protoErr("Data-In with status but without the F bit"))
	}
	sl.status = m.Status
	sl.overflow, sl.underflow = m.ResidualOverflow, m.ResidualUnderflow
	sl.residual = m.ResidualCount
	sl.noteShortRead()
	sl.finish(nil)
	return nil
}

// noteShortRead turns a good status that reports no residual although
// not all the expected Data-In arrived into an underflow of the missing
// bytes.
func (sl *slot) noteShortRead() {
	if sl.in != nil && !sl.overflow && !sl.underflow && sl.nextOff != uint32(len(sl.in)) {
		sl.underflow = true
		sl.residual = uint32(len(sl.in)) - sl.nextOff
	}
}

func (c *conn) onSCSIResponse(h *pdu.BHS, ahs []byte) error {
	m := &c.rx.rsp
	if err := m.DecodeHeader(h, ahs); err != nil {
		return c.decodeErr(err)
	}
	sl := c.task(m.ITT, kindSCSI, pdu.OpSCSIResponse)
	if sl == nil {
		return c.skipData(h)
	}
	sl.service = m.Response
	sl.status = m.Status
	sl.overflow, sl.underflow = m.ResidualOverflow, m.ResidualUnderflow
	sl.residual = m.ResidualCount
	if dlen := h.DataSegmentLength(); dlen > 0 {
		buf, err := c.readScratch(dlen)
		if err != nil {
			return err
		}
		// Keep the segment as the target sent it (SenseLength + sense
		// data), truncated to the slot's buffer.
		sl.senseLen = copy(sl.sense[:], buf)
	}
	if m.Response == pdu.ResponseCommandCompleted && scsi.Status(m.Status) == scsi.StatusGood {
		sl.noteShortRead()
	}
	sl.finish(nil)
	return nil
}

func (c *conn) onR2T(h *pdu.BHS, ahs []byte) error {
	m := &c.rx.r2t
	if err := m.DecodeHeader(h, ahs); err != nil {
		return c.decodeErr(err)
	}
	if err := c.skipData(h); err != nil {
		return err
	}
	sl := c.task(m.ITT, kindSCSI, pdu.OpR2T)
	if sl == nil {
		return nil
	}
	off, n := m.BufferOffset, m.DesiredDataTransferLength
	var err error
	switch {
	case m.R2TSN != sl.r2tSN:
		err = c.protoErr("R2TSN %d, want %d", m.R2TSN, sl.r2tSN)
	case n == 0 || uint64(off)+uint64(n) > uint64(len(sl.out)):
		err = c.protoErr("R2T offset %d length %d outside the %d-byte write", off, n, len(sl.out))
	case m.TTT == pdu.ReservedTag:
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
	c.queueDataOutLocked(sl, m.ITT, m.TTT, off, n)
	c.flushViaAuxLocked()
	return nil
}

func (c *conn) onNOPIn(h *pdu.BHS, ahs []byte) error {
	m := &c.rx.nopIn
	if err := m.DecodeHeader(h, ahs); err != nil {
		return c.decodeErr(err)
	}
	if m.ITT != pdu.ReservedTag {
		// The answer to our ping.
		if err := c.skipData(h); err != nil {
			return err
		}
		if sl := c.task(m.ITT, kindNOP, pdu.OpNOPIn); sl != nil {
			sl.finish(nil)
		}
		return nil
	}
	// A target ping: echo its data in the NOP-Out (aux goroutine).
	var data []byte
	if dlen := h.DataSegmentLength(); dlen > 0 {
		buf, err := c.readScratch(dlen)
		if err != nil {
			return err
		}
		data = append([]byte(nil), buf...)
	}
	if m.TTT == pdu.ReservedTag {
		return nil // an unsolicited NOP-In that wants no answer (window update)
	}
	c.pingMu.Lock()
	if len(c.pings) < 16 {
		c.pings = append(c.pings, pingReq{ttt: m.TTT, lun: m.LUN, data: data})
	}
	c.pingMu.Unlock()
	select {
	case c.auxKick <- struct{}{}:
	default:
	}
	return nil
}

func (c *conn) onTaskMgmtResponse(h *pdu.BHS, ahs []byte) error {
	m := &c.rx.tmf
	if err := m.DecodeHeader(h, ahs); err != nil {
		return c.decodeErr(err)
	}
	if err := c.skipData(h); err != nil {
		return err
	}
	sl := c.task(m.ITT, kindTMF, pdu.OpTaskMgmtResponse)
	if sl == nil {
		return nil
	}
	sl.tmfResp = m.Response
	if sl.refITT != idleITT && (m.Response == pdu.TMFFunctionComplete || m.Response == pdu.TMFTaskDoesNotExist) {
		// The aborted task is over: retire its ITT here, in the reader, so
		// no later PDU can reach its buffer.
		if ref := c.s.slots.lookup(sl.refITT); ref != nil {
			ref.itt.Store(idleITT)
		}
	}
	if m.Response == pdu.TMFFunctionComplete {
		c.concludeAborted(sl)
	}
	sl.finish(nil)
	return nil
}

func (c *conn) onLogoutResponse(h *pdu.BHS, ahs []byte) error {
	m := &c.rx.logout
	if err := m.DecodeHeader(h, ahs); err != nil {
		return c.decodeErr(err)
	}
	if err := c.skipData(h); err != nil {
		return err
	}
	if sl := c.task(m.ITT, kindLogout, pdu.OpLogoutResponse); sl != nil {
		sl.logoutResp = m.Response
		sl.finish(nil)
	}
	return nil
}

func (c *conn) onTextResponse(h *pdu.BHS, ahs []byte) error {
	m := &c.rx.text
	if err := m.DecodeHeader(h, ahs); err != nil {
		return c.decodeErr(err)
	}
	if err := c.skipData(h); err != nil {
		return err
	}
	if sl := c.task(m.ITT, kindText, pdu.OpTextResponse); sl != nil {
		sl.textFinal, sl.textTTT = m.Final, m.TTT
		sl.finish(nil)
	}
	return nil
}

func (c *conn) onAsyncMessage(h *pdu.BHS, ahs []byte) error {
	m := &c.rx.async
	if err := m.DecodeHeader(h, ahs); err != nil {
		return c.decodeErr(err)
	}
	if err := c.skipData(h); err != nil {
		return err
	}
	c.debug("iscsi: async message", "event", m.Event, "param1", m.Parameter1, "param2", m.Parameter2, "param3", m.Parameter3)
	switch m.Event {
	case pdu.AsyncLogoutRequest: // within Parameter3 seconds
		c.s.asyncLogout(c, time.Duration(m.Parameter3)*time.Second)
	case pdu.AsyncDropConnection, pdu.AsyncDropAllConnections:
		// Parameter2 is the Time2Wait before reconnecting, Parameter3 the
		// Time2Retain (RFC 7143 section 11.9.1); with ERL 0 and session
		// reinstatement only the former matters.
		c.time2Wait.Store(uint32(m.Parameter2) + 1)
		c.s.log.Debug("iscsi: target announced it will drop the connection", "time2wait", m.Parameter2, "time2retain", m.Parameter3)
	case pdu.AsyncNegotiationRequest: // answer with a Text Request
		select {
		case c.renegKick <- struct{}{}:
		default:
		}
	}
	return nil
}

func (c *conn) onReject(h *pdu.BHS, ahs []byte) error {
	m := &c.rx.reject
	if err := m.DecodeHeader(h, ahs); err != nil {
		return c.decodeErr(err)
	}
	buf, err := c.readScratch(h.DataSegmentLength())
	if err != nil {
		return err
	}
	m.Data = buf
	rej := m.RejectedHeader()
	if rej == nil {
		return c.protoErr("reject without the rejected header")
	}
	c.debug("iscsi: reject", "reason", m.Reason, "itt", rej.ITT(), "opcode", rej.Opcode())
	if sl := c.s.slots.lookup(rej.ITT()); sl != nil {
		sl.finish(&RejectError{Reason: m.Reason})
	}
	return nil
}

// concludeAborted ends, after a successful ABORT TASK SET, CLEAR TASK
// SET, LUN RESET or target reset, the SCSI tasks that function aborted:
// those sent before it (lower CmdSN) to its LUN (every LUN for a target
// reset). The target sends nothing more for them.
func (c *conn) concludeAborted(tmf *slot) {
	fn := tmf.tmfFn
	lunWide := fn == pdu.TMFAbortTaskSet || fn == pdu.TMFClearTaskSet || fn == pdu.TMFLogicalUnitReset
	if !lunWide && fn != pdu.TMFTargetWarmReset && fn != pdu.TMFTargetColdReset {
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
