package initiator

import (
	"runtime"

	"github.com/gosan/iscsi/pdu"
)

// The send queue: callers encode their PDU headers into queue entries
// under qmu and flush with flat combining (the first goroutine that finds
// no flush in progress writes everything queued, including what others
// queue meanwhile, with one writev). The reader never writes to the
// socket: it queues and asks the aux goroutine to flush.

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
