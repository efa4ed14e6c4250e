package initiator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gosan/iscsi/pdu"
	"github.com/gosan/iscsi/scsi"
)

// Result is the outcome of a SCSI command that reached the target.
type Result struct {
	Status scsi.Status
	// Sense is the sense data of a CHECK CONDITION (without the iSCSI
	// SenseLength prefix); nil otherwise.
	Sense []byte
	// Residual is the residual count the target reported: with Underflow,
	// how many of the expected bytes were not transferred; with Overflow,
	// how many more the command wanted to transfer.
	Residual  int
	Underflow bool
	Overflow  bool
	// Transferred is the number of Data-In bytes received (reads).
	Transferred int
}

// Err converts a non-GOOD status into scsi's typed errors (*scsi.SenseError
// for CHECK CONDITION with sense data, else *scsi.StatusError); nil for GOOD.
func (r *Result) Err() error {
	switch r.Status {
	case scsi.StatusGood, scsi.StatusConditionMet:
		return nil
	case scsi.StatusCheckCondition:
		if len(r.Sense) == 0 {
			return scsi.ResponseError(r.Status, nil)
		}
		s, err := scsi.ParseSense(r.Sense)
		if err != nil {
			return &scsi.StatusError{Status: r.Status, SenseErr: err}
		}
		return &scsi.SenseError{Status: r.Status, Sense: s}
	}
	return scsi.ResponseError(r.Status, nil)
}

// errCDBTooLong is returned for CDBs over 16 bytes (extended CDB AHS is not supported).
var errCDBTooLong = errors.New("iscsi: CDB longer than 16 bytes is not supported")

// errLoggingOut refuses a request on a connection whose Logout Request is
// already queued.
var errLoggingOut = errors.New("iscsi: the connection is logging out")

// errBidi is returned for commands with both data directions.
var errBidi = errors.New("iscsi: bidirectional commands are not supported")

// execute runs one SCSI command on the session: dataIn is the read buffer
// (its length is the expected transfer length), dataOut the data to write;
// at most one is non-empty. res is filled when the command completed at the
// target (the error is then nil even for a non-GOOD status). A UNIT
// ATTENTION that a session reinstatement caused is absorbed: the command
// is issued again.
func (s *Session) execute(ctx context.Context, lun uint64, cdb []byte, dataIn, dataOut []byte, res *Result) error {
	for attempt := 0; ; attempt++ {
		sl, err := s.start(ctx, lun, cdb, dataIn, dataOut)
		if err != nil {
			return err
		}
		replacement, err := s.wait(ctx, sl, res)
		if err == nil && replacement && attempt < 2 && res != nil &&
			res.Status == scsi.StatusCheckCondition && errors.Is(res.Err(), scsi.ErrUnitAttention) {
			s.log.Debug("iscsi: unit attention after session reinstatement absorbed", "lun", lun)
			continue
		}
		return err
	}
}

// start sends a SCSI command and returns its slot without waiting. While
// the session recovers it waits for the replacement connection.
func (s *Session) start(ctx context.Context, lun uint64, cdb []byte, dataIn, dataOut []byte) (*slot, error) {
	return s.startFor(ctx, nil, true, lun, cdb, dataIn, dataOut)
}

// errNoSlot: a Queue's submission found every command slot busy.
var errNoSlot = errors.New("iscsi: no free command slot")

// startFor is start for an owner: nil for a caller that waits for its
// command, or the Queue that reaps it. Without block it does not wait for
// a free slot (a Queue's own unreaped commands may hold them all) and
// returns errNoSlot; a Queue's command started without block is queued
// but not flushed (Submit flushes its whole batch at once, and before it
// waits for a closed window: Queue.flushHeld).
func (s *Session) startFor(ctx context.Context, q *Queue, block bool, lun uint64, cdb []byte, dataIn, dataOut []byte) (*slot, error) {
	if len(cdb) > 16 {
		return nil, errCDBTooLong
	}
	if len(dataIn) > 0 && len(dataOut) > 0 {
		return nil, errBidi
	}
	c, err := s.waitConn(ctx)
	if err != nil {
		return nil, err
	}
	var idx uint16
	select {
	case idx = <-s.slots.free:
	default:
		if !block {
			return nil, errNoSlot
		}
		select {
		case idx = <-s.slots.free:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.term:
			return nil, s.Err()
		}
	}
	sl := &s.slots.slots[idx]
	sl.arm()
	sl.q.Store(q)
	sl.kind = kindSCSI
	sl.lun = lun
	sl.in = dataIn
	sl.out = dataOut
	sl.cdb = [16]byte{}
	copy(sl.cdb[:], cdb)
	sl.timeout = s.commandTimeout(ctx)
	var hold *Queue
	var beforeWait func()
	if q != nil && !block {
		hold, beforeWait = q, q.flushFn
	}
	for {
		var hdr pdu.BHS
		imm, unsol := c.buildCommand(sl, &hdr)
		if err := s.win.lockOpen(ctx, c.dead, c.err, sl.timeout, beforeWait); err != nil {
			if errors.Is(err, errWindowTimeout) {
				err = &CommandTimeoutError{Timeout: sl.timeout, WindowClosed: true}
			} else if ctx.Err() == nil {
				c, err = s.waitConn(ctx) // the connection failed: wait for its replacement
			}
			if err != nil {
				s.slots.release(sl)
				return nil, err
			}
			continue
		}
		if s.conn.Load() != c || c.isDead() || c.closing.Load() {
			s.win.mu.Unlock()
			if c, err = s.waitConn(ctx); err != nil {
				s.slots.release(sl)
				return nil, err
			}
			continue
		}
		sn := s.win.cmdSN
		s.win.cmdSN++
		sl.cmdSN = sn
		sl.mu.Lock()
		sl.conn = c
		sl.mu.Unlock()
		s.armTimeout(sl)
		c.sendCommandLocked(sl, &hdr, sn, imm, unsol, hold)
		return sl, nil
	}
}

// sendCommandLocked publishes the slot's ITT and queues the command (with
// its immediate data and unsolicited Data-Out) on c, and flushes, unless
// hold is set: that Queue flushes later. The caller holds s.win.mu, which
// it releases.
func (c *conn) sendCommandLocked(sl *slot, hdr *pdu.BHS, sn uint32, imm []byte, unsol int, hold *Queue) {
	hdr.SetCmdSN(sn)
	itt := sl.publish()
	hdr.SetITT(itt)
	if hold != nil && hold.held != c {
		hold.flushHeld() // what it held back on another connection
	}
	c.qmu.Lock()
	c.s.win.mu.Unlock()
	c.enqueueLocked(hdr, imm)
	if unsol > 0 {
		c.queueDataOutLocked(sl, itt, pdu.ReservedTag, uint32(len(imm)), uint32(unsol))
	}
	if hold != nil {
		hold.held = c
		c.qmu.Unlock()
		return
	}
	c.kickLocked()
}

// buildCommand encodes the SCSI Command header for the slot's task under
// the parameters of connection c into hdr (ITT and CmdSN follow when it is
// sent) and returns the immediate data and the number of bytes to send as
// unsolicited Data-Out.
func (c *conn) buildCommand(sl *slot, hdr *pdu.BHS) (imm []byte, unsol int) {
	cmd := pdu.SCSICommand{
		Final: true,
		Attr:  pdu.AttrSimple,
		LUN:   sl.lun,
		CDB:   sl.cdb[:],
	}
	if len(sl.in) > 0 {
		cmd.Read = true
		cmd.ExpectedDataTransferLength = uint32(len(sl.in))
	}
	if len(sl.out) > 0 {
		cmd.Write = true
		edtl := len(sl.out)
		cmd.ExpectedDataTransferLength = uint32(edtl)
		first := int(c.neg.FirstBurstLength)
		if first == 0 || first > edtl {
			first = edtl
		}
		if c.neg.ImmediateData {
			imm = sl.out[:min(first, int(c.maxXmit))]
		}
		if !c.neg.InitialR2T {
			unsol = first - len(imm)
		}
		cmd.Final = unsol == 0 // else unsolicited Data-Out PDUs follow
	}
	cmd.Data = imm
	cmd.AppendHeader(hdr[:0])
	return imm, unsol
}

// queueDataOutLocked queues Data-Out PDUs for [off, off+n) of the slot's
// buffer, each at most the target's MaxRecvDataSegmentLength, DataSN from 0,
// F on the last, encoding each header straight into its queue entry. The
// caller holds c.qmu.
func (c *conn) queueDataOutLocked(sl *slot, itt, ttt, off, n uint32) {
	m := pdu.DataOut{LUN: sl.lun, ITT: itt, TTT: ttt, ExpStatSN: c.expStatSN.Load()}
	for end := off + n; off < end; m.DataSN++ {
		chunk := min(end-off, c.maxXmit)
		m.Final = off+chunk == end
		m.BufferOffset = off
		m.Data = sl.out[off : off+chunk]
		m.AppendHeader(c.pushLocked(m.Data)[:0])
		off += chunk
	}
}

// wait waits for the slot's task to finish and frees the slot. It reports
// whether the task ran on a replacement connection (after a recovery).
// Every way a task ends reaches the slot's event: the response, a failure
// of the session, Close; a connection failure only delays it (recovery).
//
// A command that times out is settled (escalate) and issued once more; a
// second timeout fails it with *CommandTimeoutError.
func (s *Session) wait(ctx context.Context, sl *slot, res *Result) (bool, error) {
	var tErr *CommandTimeoutError
	for {
		switch s.await(ctx, sl, nil) {
		case waitDone:
			return s.complete(sl, res)
		case waitCtx:
			return s.abort(ctx, sl, res)
		}
		lun, cdb, in, out, timeout := sl.lun, sl.cdb, sl.in, sl.out, sl.timeout
		step, completed := s.escalate(sl)
		if completed {
			return s.complete(sl, res)
		}
		if tErr == nil {
			tErr = &CommandTimeoutError{Timeout: timeout}
		}
		tErr.Attempts++
		tErr.Steps = append(tErr.Steps, step)
		if tErr.Attempts > 1 {
			return false, tErr
		}
		var err error
		if sl, err = s.start(ctx, lun, cdb[:], in, out); err != nil {
			return false, err
		}
	}
}

// complete turns a finished slot into the caller's result and frees it.
func (s *Session) complete(sl *slot, res *Result) (bool, error) {
	sl.mu.Lock()
	c := sl.conn
	sl.mu.Unlock()
	err := sl.err
	if err == nil {
		if sl.service != pdu.ResponseCommandCompleted {
			err = &CommandError{Response: sl.service}
		} else if res != nil {
			res.Status = scsi.Status(sl.status)
			res.Overflow = sl.overflow
			res.Underflow = sl.underflow
			res.Residual = 0
			if res.Overflow || res.Underflow {
				res.Residual = int(sl.residual)
			}
			res.Transferred = int(sl.nextOff)
			res.Sense = nil
			if sl.senseLen >= 2 {
				n := int(binary.BigEndian.Uint16(sl.sense[:2]))
				n = min(n, sl.senseLen-2)
				if n > 0 {
					res.Sense = append([]byte(nil), sl.sense[2:2+n]...)
				}
			}
		}
	} else {
		var ce *ConnectionError
		if !errors.As(err, &ce) {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				err = &ConnectionError{Op: "receive", Err: err}
			}
		}
	}
	switch {
	case sl.out == nil || c == nil || (err == nil && sl.status == 0):
	case errors.Is(err, ErrTaskAborted):
		c.drain(sl.ittFor()) // answer the R2Ts that came before the TMF response
	default:
		// Ended early: Data-Out for it may still be queued.
		c.forget(sl.ittFor())
	}
	sl.in, sl.out = nil, nil
	s.slots.release(sl)
	return c != nil && c.gen > 0, err
}

// abort ends a command whose caller gave up. Recovery no longer re-issues
// it. On a live connection it runs ABORT TASK, and the slot is freed only
// when no PDU of that task can reach its buffer any more: after the TMF
// response, or after the connection is gone.
func (s *Session) abort(ctx context.Context, sl *slot, res *Result) (bool, error) {
	cause := ctx.Err()
	s.win.mu.Lock() // recovery collects and re-issues tasks under it
	sl.mu.Lock()
	c, done, cmdSN := sl.conn, sl.done, sl.cmdSN
	if !done {
		sl.cancelled = true
	}
	sl.mu.Unlock()
	s.win.mu.Unlock()
	if done { // the answer came meanwhile
		<-sl.ev
		return s.complete(sl, res)
	}
	itt := sl.ittFor()
	if c.isDead() {
		<-c.readerDone
	} else {
		tctx, cancel := context.WithTimeout(context.Background(), s.cfg.tmfTimeout)
		err := s.tmfOn(tctx, c, pdu.TMFAbortTask, sl.lun, itt, cmdSN)
		cancel()
		var te *TMFError
		if err != nil && !(errors.As(err, &te) && te.Response == pdu.TMFTaskDoesNotExist) {
			// The abort did not settle the task: drop the connection so the
			// target cannot send it any more data.
			c.fail(&ConnectionError{Op: "abort task", Err: fmt.Errorf("%w (abort: %v)", cause, err)})
			<-c.readerDone
		} else {
			s.log.Debug("iscsi: command aborted", "itt", itt, "cmdSN", cmdSN)
		}
	}
	// Either the reader retired the ITT (TMF response) or it has exited.
	if sl.out != nil {
		c.forget(itt)
	}
	sl.itt.Store(idleITT)
	sl.in, sl.out = nil, nil
	s.slots.release(sl)
	return false, cause
}
