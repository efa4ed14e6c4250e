package initiator

import (
	"net"
	"testing"

	"github.com/gosan/iscsi/pdu"
)

// loopReader serves the same bytes over and over.
type loopReader struct {
	b   []byte
	off int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.b[r.off:])
		n += k
		r.off = (r.off + k) % len(r.b)
	}
	return n, nil
}

// benchConn is a connection of a session with one SCSI task in flight
// whose reader reads stream in a loop; nothing goes to a socket.
func benchConn(b *testing.B, stream []byte) (*conn, *slot) {
	cfg := buildConfig(nil)
	s := &Session{cfg: cfg, log: cfg.logger}
	s.slots = newSlotTable(4)
	s.win.reset(1, 1, 64)
	a, z := net.Pipe()
	b.Cleanup(func() { _ = a.Close(); _ = z.Close() })
	r := pdu.NewReader(&loopReader{b: stream}, 64<<10)
	c := newConnSR(s, a, nil, r, pdu.NewWriter(a), 8192, 262144, 0)
	sl := &s.slots.slots[0]
	sl.kind = kindSCSI
	return c, sl
}

// BenchmarkDispatchDataIn measures what the reader does for one 4 KiB
// read: parse a Data-In with status, apply its sequence numbers, check it
// against the task and copy its payload into the task's buffer.
func BenchmarkDispatchDataIn(b *testing.B) {
	const itt = 0x10000
	m := pdu.DataIn{Final: true, StatusPresent: true, ITT: itt, TTT: pdu.ReservedTag, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 40, Data: make([]byte, 4096)}
	c, sl := benchConn(b, m.Encode(nil))
	sl.in = make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(4096)
	for b.Loop() {
		sl.itt.Store(itt)
		sl.nextOff, sl.expDataSN = 0, 0
		if err := c.readPDU(); err != nil {
			b.Fatal(err)
		}
		<-sl.ev
	}
}

// BenchmarkDispatchSCSIResponse measures the reader's work for the SCSI
// Response that ends a write.
func BenchmarkDispatchSCSIResponse(b *testing.B) {
	const itt = 0x10000
	m := pdu.SCSIResponse{ITT: itt, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 40}
	c, sl := benchConn(b, m.Encode(nil))
	b.ReportAllocs()
	for b.Loop() {
		sl.itt.Store(itt)
		if err := c.readPDU(); err != nil {
			b.Fatal(err)
		}
		<-sl.ev
	}
}

// BenchmarkBuildWrite measures the sender's header work for a 64 KiB
// write: the SCSI Command with immediate data and the unsolicited Data-Out
// PDUs queued after it.
func BenchmarkBuildWrite(b *testing.B) {
	c, sl := benchConn(b, make([]byte, 48))
	c.neg.ImmediateData = true
	c.neg.InitialR2T = false
	c.neg.FirstBurstLength = 65536
	sl.out = make([]byte, 65536)
	sl.lun = 1 << 48
	b.ReportAllocs()
	for b.Loop() {
		var hdr pdu.BHS
		imm, unsol := c.buildCommand(sl, &hdr)
		c.qmu.Lock()
		c.enqueueLocked(&hdr, imm)
		c.queueDataOutLocked(sl, 0x10000, pdu.ReservedTag, uint32(len(imm)), uint32(unsol))
		clear(c.pend)
		c.pend = c.pend[:0]
		c.qmu.Unlock()
	}
}
