package initiator

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/gosan/iscsi/pdu"
)

// The send queue: callers encode their PDU headers into queue entries
// under qmu and flush with flat combining (the first goroutine that finds
// no flush in progress writes everything queued, including what others
// queue meanwhile, with one writev). The reader and the keepalive never
// write to the socket: they queue and ask the aux goroutine to flush
// (flushViaAuxLocked). Every wait on the queue (forget, drain, quiesce) is
// woken by a broadcast when a batch ends and when flushing ends, and a
// write that does not complete within the send timeout fails the
// connection, which ends the batch.

// outPDU is one queued PDU: its header lives in the queue entry, its data is
// the caller's buffer (not copied).
type outPDU struct {
	hdr  pdu.BHS
	data []byte
}

// enqueueLocked appends a PDU; the caller holds qmu.
func (c *conn) enqueueLocked(hdr *pdu.BHS, data []byte) {
	hdr.SetExpStatSN(c.expStatSN.Load())
	c.pend = append(c.pend, outPDU{hdr: *hdr, data: data})
}

// pushLocked appends a queue entry for a PDU carrying data and returns its
// header for the caller to encode into, ExpStatSN included. The caller
// holds qmu.
func (c *conn) pushLocked(data []byte) *pdu.BHS {
	c.pend = append(c.pend, outPDU{data: data})
	return &c.pend[len(c.pend)-1].hdr
}

// kickLocked flushes the queue unless another goroutine is flushing it;
// the caller holds qmu, which it releases.
func (c *conn) kickLocked() { c.flushLocked(true) }

// flushLocked is kickLocked; with gather, a flush while other commands are
// in flight first yields, so goroutines ready to submit queue behind (a
// Queue flushing its own batch has nobody to wait for).
func (c *conn) flushLocked(gather bool) {
	if c.flushing {
		c.qmu.Unlock()
		return
	}
	c.flushing = true
	// Give goroutines that are ready to submit a chance to queue behind
	// this PDU, so one writev carries several (the target then also reads
	// them with one system call).
	// Only worth it when other commands are in flight.
	if hook := c.s.cfg.gatherHook; hook != nil {
		c.qmu.Unlock()
		hook(c)
		c.qmu.Lock()
	} else if gather && len(c.s.slots.free) < cap(c.s.slots.free)-1 {
		c.qmu.Unlock()
		runtime.Gosched()
		c.qmu.Lock()
	}
	for len(c.pend) > 0 {
		batch := c.pend
		c.pend = c.spare[:0]
		c.writing = true
		c.qmu.Unlock()
		c.flushes.Add(1)
		c.pdusOut.Add(uint64(len(batch)))
		var err error
		if !c.isDead() {
			err = c.write(batch)
		}
		for i := range batch {
			batch[i].data = nil
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !c.isDead() {
				c.s.stats.sendTimeouts.Add(1)
				err = fmt.Errorf("%w: not completed within %v", ErrSendStalled, c.s.cfg.sendTimeout)
			}
			c.fail(&ConnectionError{Op: "send", Err: err})
		}
		c.qmu.Lock()
		c.spare = batch[:0]
		c.writing = false
		c.batches++
		if c.batchWaiters > 0 {
			c.flushCond.Broadcast()
		}
	}
	c.flushing = false
	if c.batchWaiters > 0 {
		// A waiter may have removed what was queued while the batch
		// formed: no batch is written, but the flush it waits for is over.
		c.flushCond.Broadcast()
	}
	c.qmu.Unlock()
}

// sendChunk is how many data bytes one writev carries at most: the send
// timeout then bounds the time a chunk takes, so a batch of many large
// Data-Out PDUs on a slow link is not mistaken for a stalled one.
const sendChunk = 4 << 20

// write sends a batch, in writes of at most sendChunk data bytes each,
// with the write deadline re-armed before each.
func (c *conn) write(batch []outPDU) error {
	n := 0
	for i := range batch {
		c.w.Queue(batch[i].hdr[:], batch[i].data)
		n += len(batch[i].data)
		if n >= sendChunk || i == len(batch)-1 {
			c.armWriteDeadline()
			if err := c.w.Flush(); err != nil {
				return err
			}
			n = 0
		}
	}
	return nil
}

// armWriteDeadline keeps a write deadline between sendTimeout/2 and
// sendTimeout ahead of any write, so a target that stops reading fails the
// connection (and wakes every goroutine waiting for the send queue)
// instead of blocking a writev forever. The deadline is moved only when
// half of it is used up, so a busy connection rarely pays for it.
func (c *conn) armWriteDeadline() {
	d := c.s.cfg.sendTimeout
	if d <= 0 {
		return
	}
	now := time.Now()
	if now.UnixNano() < c.writeDeadline-int64(d/2) {
		return
	}
	c.writeDeadline = now.Add(d).UnixNano()
	_ = c.nc.SetWriteDeadline(time.Unix(0, c.writeDeadline))
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
	// Only a batch already taken from pend can still read the task's data;
	// one still gathering has lost the PDUs removed above.
	if c.writing {
		target := c.batches
		c.batchWaiters++
		for c.writing && c.batches == target {
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

// flushViaAuxLocked makes sure what is queued gets written without the
// caller writing it: unless a flusher will pick it up, the aux goroutine
// is asked to flush. The caller holds qmu, which it releases.
func (c *conn) flushViaAuxLocked() {
	busy := c.flushing
	c.qmu.Unlock()
	if !busy {
		select {
		case c.flushKick <- struct{}{}:
		default:
		}
	}
}

// send queues one PDU and flushes.
func (c *conn) send(hdr *pdu.BHS, data []byte) {
	c.qmu.Lock()
	c.enqueueLocked(hdr, data)
	c.kickLocked()
}
