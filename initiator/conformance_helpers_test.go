package initiator_test

// Helpers for the UNH-IOL initiator full feature phase conformance tests
// (docs/conformance.md). The tests run the initiator against the in-process
// target iscsitest and check two independent records of the traffic:
//
//   - iscsitest's PDU record and protocol violations (what the target saw);
//   - the raw bytes the initiator wrote and read, captured by a wrapping
//     Dialer and split into PDUs here, so every BHS field (reserved bytes,
//     RefCmdSN, Logout reason, CID...) can be checked, not only the ones
//     iscsitest records.

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gosan/iscsi/initiator"
	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/require"
)

const (
	confIQN       = "iqn.2026-11.org.gosan.conformance:disk"
	confInitiator = "iqn.2026-11.org.gosan.conformance:initiator"
	confBlocks    = 8192 // 4 MiB of 512-byte blocks
)

// wirePDU is one PDU as it crossed the initiator's socket.
type wirePDU struct {
	out  bool   // written by the initiator
	seq  int    // position in the combined read/write order of the connection
	raw  []byte // BHS + AHS + data, no padding (digests are never on here)
	msg  pdu.Message
	conn int // index of the connection in the recorder
}

func (w wirePDU) bhs() *pdu.BHS      { return (*pdu.BHS)(w.raw[:pdu.BHSLen]) }
func (w wirePDU) op() pdu.Opcode     { return w.bhs().Opcode() }
func (w wirePDU) u32(off int) uint32 { return binary.BigEndian.Uint32(w.raw[off:]) }
func (w wirePDU) dsl() int           { return w.bhs().DataSegmentLength() }

// recConn records every byte read and written, in order.
type recConn struct {
	net.Conn
	rec *recorder
	idx int
}

type chunk struct {
	seq int
	end int // length of the direction's stream after this chunk
}

type connStreams struct {
	out, in             []byte
	outChunks, inChunks []chunk
	addr                string    // address dialled
	dialedAt            time.Time // when the TCP connection was established
	closedAt            time.Time // when the initiator first closed it (zero while open)
	closeSeq            int       // position of that Close in the read/write order
}

func (c *recConn) Write(b []byte) (int, error) {
	// Recorded before it is sent, so that a response can never be ordered
	// before the request that caused it.
	c.rec.add(c.idx, true, b)
	return c.Conn.Write(b)
}

func (c *recConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.rec.add(c.idx, false, b[:n])
	return n, err
}

// Close records when the initiator closed the connection (its TCP FIN).
func (c *recConn) Close() error {
	c.rec.mu.Lock()
	cs := c.rec.conns[c.idx]
	if cs.closedAt.IsZero() {
		c.rec.seq++
		cs.closedAt, cs.closeSeq = time.Now(), c.rec.seq
	}
	c.rec.mu.Unlock()
	return c.Conn.Close()
}

// recorder is an initiator.Dialer that records every connection it opens.
type recorder struct {
	mu    sync.Mutex
	seq   int
	conns []*connStreams
	d     net.Dialer
}

func (r *recorder) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := r.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conns = append(r.conns, &connStreams{addr: addr, dialedAt: time.Now()})
	return &recConn{Conn: nc, rec: r, idx: len(r.conns) - 1}, nil
}

func (r *recorder) add(idx int, out bool, b []byte) {
	if len(b) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	cs := r.conns[idx]
	if out {
		cs.out = append(cs.out, b...)
		cs.outChunks = append(cs.outChunks, chunk{seq: r.seq, end: len(cs.out)})
	} else {
		cs.in = append(cs.in, b...)
		cs.inChunks = append(cs.inChunks, chunk{seq: r.seq, end: len(cs.in)})
	}
}

// split cuts a byte stream into whole PDUs (digests off).
func split(b []byte, chunks []chunk, out bool, conn int) []wirePDU {
	var res []wirePDU
	off := 0
	ci := 0
	for len(b)-off >= pdu.BHSLen {
		h := b[off:]
		ahs := int(h[4]) * 4
		dsl := int(h[5])<<16 | int(h[6])<<8 | int(h[7])
		n := pdu.BHSLen + ahs + dsl
		pad := (4 - dsl%4) % 4
		if len(h) < n+pad {
			break
		}
		end := off + n + pad
		for ci < len(chunks) && chunks[ci].end < end {
			ci++
		}
		seq := 0
		if ci < len(chunks) {
			seq = chunks[ci].seq
		}
		raw := append([]byte(nil), h[:n]...)
		m, _ := pdu.Decode(raw)
		res = append(res, wirePDU{out: out, seq: seq, raw: raw, msg: m, conn: conn})
		off = end
	}
	return res
}

// pdus returns the PDUs of connection idx in the order they crossed the
// socket (reads and writes interleaved by time).
func (r *recorder) pdus(idx int) []wirePDU {
	r.mu.Lock()
	cs := r.conns[idx]
	outs := split(cs.out, cs.outChunks, true, idx)
	ins := split(cs.in, cs.inChunks, false, idx)
	r.mu.Unlock()
	all := make([]wirePDU, 0, len(outs)+len(ins))
	i, j := 0, 0
	for i < len(outs) || j < len(ins) {
		if j >= len(ins) || (i < len(outs) && outs[i].seq <= ins[j].seq) {
			all = append(all, outs[i])
			i++
		} else {
			all = append(all, ins[j])
			j++
		}
	}
	return all
}

// connInfo returns the address connection idx was dialled to, when, and
// when the initiator closed it and at which position of the read/write
// order (zero time and 0 while open).
func (r *recorder) connInfo(idx int) (addr string, dialed, closed time.Time, closeSeq int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := r.conns[idx]
	return cs.addr, cs.dialedAt, cs.closedAt, cs.closeSeq
}

func (r *recorder) numConns() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// sent returns what the initiator wrote on connection idx, optionally only
// the given opcodes.
func (r *recorder) sent(idx int, ops ...pdu.Opcode) []wirePDU {
	return filter(r.pdus(idx), true, ops...)
}

// got returns what the initiator read on connection idx.
func (r *recorder) got(idx int, ops ...pdu.Opcode) []wirePDU {
	return filter(r.pdus(idx), false, ops...)
}

func filter(ps []wirePDU, out bool, ops ...pdu.Opcode) []wirePDU {
	var res []wirePDU
	for _, p := range ps {
		if p.out != out {
			continue
		}
		if len(ops) == 0 {
			res = append(res, p)
			continue
		}
		for _, op := range ops {
			if p.op() == op {
				res = append(res, p)
				break
			}
		}
	}
	return res
}

// waitSent polls until cond holds for what the initiator wrote on
// connection idx, or fails after 5 s.
func (r *recorder) waitSent(t *testing.T, idx int, what string, cond func([]wirePDU) bool) []wirePDU {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if r.numConns() > idx {
			ps := r.sent(idx)
			if cond(ps) {
				return ps
			}
		}
		if time.Now().After(deadline) {
			var ps []wirePDU
			if r.numConns() > idx {
				ps = r.sent(idx)
			}
			t.Fatalf("timed out waiting for the initiator to send %s; it sent %d PDUs: %v", what, len(ps), describe(ps))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func describe(ps []wirePDU) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.op().String())
	}
	return s
}

func count(ps []wirePDU, op pdu.Opcode) int {
	n := 0
	for _, p := range ps {
		if p.op() == op {
			n++
		}
	}
	return n
}

// confServer starts an iscsitest target with one 4 MiB LUN 1 and the given
// login answers. UNIT ATTENTION is off so the command streams are exactly
// what the test issues.
func confServer(t *testing.T, neg iscsitest.Negotiation) *iscsitest.Server {
	t.Helper()
	return iscsitest.NewTestServer(t, iscsitest.Config{
		Targets: []iscsitest.Target{{
			Name: confIQN,
			LUNs: []iscsitest.LUN{{Number: 1, Blocks: confBlocks, BlockSize: 512}},
		}},
		Negotiation:     neg,
		NoUnitAttention: true,
	})
}

type confSession struct {
	srv *iscsitest.Server
	s   *initiator.Session
	lun *initiator.LUN
	rec *recorder
}

// confDial logs in to confIQN through a recording dialer and opens LUN 1.
func confDial(t *testing.T, srv *iscsitest.Server, opts ...initiator.Option) *confSession {
	t.Helper()
	rec := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts = append([]initiator.Option{
		initiator.WithDialer(rec),
		initiator.WithInitiatorName(confInitiator),
		initiator.WithLoginTimeout(5 * time.Second),
		initiator.WithLogoutTimeout(2 * time.Second),
		initiator.WithTMFTimeout(3 * time.Second),
		initiator.WithReplacementTimeout(0), // these tests check how a connection fails
	}, opts...)
	if os.Getenv("ISCSI_DEBUG") != "" {
		opts = append(opts, initiator.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	s, err := initiator.Dial(ctx, srv.Addr(), confIQN, opts...)
	require.NoError(t, err, "login to iscsitest")
	t.Cleanup(func() { _ = s.Close() })
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err, "open LUN 1")
	return &confSession{srv: srv, s: s, lun: l, rec: rec}
}

// noViolations fails if iscsitest saw the initiator break the protocol.
func noViolations(t *testing.T, srv *iscsitest.Server) {
	t.Helper()
	require.Empty(t, srv.Violations(), "iscsitest recorded protocol violations by the initiator")
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

// scsiCmds returns the SCSI Command PDUs the initiator sent, decoded.
func scsiCmds(t *testing.T, ps []wirePDU) []*pdu.SCSICommand {
	t.Helper()
	var res []*pdu.SCSICommand
	for _, p := range ps {
		if p.out && p.op() == pdu.OpSCSICommand {
			c, ok := p.msg.(*pdu.SCSICommand)
			require.True(t, ok, "undecodable SCSI Command %x", p.raw[:48])
			res = append(res, c)
		}
	}
	return res
}

// ctxT is a context bounded for one test step.
func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
