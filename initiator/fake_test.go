package initiator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/require"
)

// fakeTarget is a scripted iSCSI target in full feature phase, for unit
// tests of the session machinery without a login. By default it serves an
// in-memory disk; tests override handle to misbehave.
type fakeTarget struct {
	t   testing.TB
	nc  net.Conn
	r   *pdu.Reader
	wmu sync.Mutex
	w   *pdu.Writer

	mu         sync.Mutex
	statSN     uint32
	expCmdSN   uint32
	maxCmdSN   uint32
	disk       []byte
	bs         int
	mrdsl      int // the initiator's MaxRecvDataSegmentLength: our Data-In size
	maxBurst   int
	writes     map[uint32]*fakeWrite
	unsol      map[uint32]*fakeWrite // by ITT
	firstBurst int
	nextTTT    uint32
	// log of PDUs received (headers), for assertions
	got []pdu.BHS

	// handle, when set, sees every PDU first; it returns true when it
	// handled it.
	handle func(ft *fakeTarget, h *pdu.BHS, data []byte) bool
	done   chan struct{}
}

type fakeWrite struct {
	lun      uint64
	itt      uint32
	lba      int
	edtl     int
	buf      []byte
	received int
	ttt      uint32
	r2tSN    uint32
	r2tOff   int
	r2tLen   int
	dataSN   uint32
	next     int
}

var testNeg = iscsi.Negotiated{
	SessionType:              "Normal",
	MaxRecvDataSegmentLength: 65536,
	MaxXmitDataSegmentLength: 8192,
	MaxBurstLength:           262144,
	FirstBurstLength:         65536,
	MaxOutstandingR2T:        1,
	ImmediateData:            true,
	InitialR2T:               true,
	DataPDUInOrder:           true,
	DataSequenceInOrder:      true,
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("ISCSI_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newFakePair connects a Session (skipping login) to a fakeTarget over
// loopback TCP.
func newFakePair(t testing.TB, neg iscsi.Negotiated, handle func(*fakeTarget, *pdu.BHS, []byte) bool, opts ...Option) (*Session, *fakeTarget) {
	t.Helper()
	cc, tc, err := tcpPair()
	require.NoError(t, err)
	// The session's side as after a login (on Linux a pollConn).
	cc, _ = takeSocket(cc)

	ft := &fakeTarget{
		t: t, nc: tc, r: pdu.NewReader(tc, 0), w: pdu.NewWriter(tc),
		statSN: 100, expCmdSN: 1, maxCmdSN: 64,
		disk: make([]byte, 4<<20), bs: 512,
		mrdsl: int(neg.MaxRecvDataSegmentLength), maxBurst: int(neg.MaxBurstLength),
		writes: map[uint32]*fakeWrite{}, unsol: map[uint32]*fakeWrite{}, nextTTT: 1,
		firstBurst: int(neg.FirstBurstLength),
		handle:     handle, done: make(chan struct{}),
	}
	for i := range ft.disk {
		ft.disk[i] = byte(i/512) ^ byte(i)
	}
	opts = append([]Option{WithLogger(testLogger(t)), WithNOP(0, 0), WithTMFTimeout(2 * time.Second), WithLogoutTimeout(2 * time.Second)}, opts...)
	cfg := buildConfig(opts)
	s := &Session{cfg: cfg, log: cfg.logger, target: "iqn.test:fake", isid: cfg.isid}
	c := newConn(s, cc, pdu.NewReader(cc, cfg.readBufSize), pdu.NewWriter(cc), neg.MaxXmitDataSegmentLength, neg.MaxRecvDataSegmentLength, 99)
	s.attach(c, neg, 1, 1, 1, 64)
	go ft.serve()
	t.Cleanup(func() {
		_ = s.Close()
		_ = ft.nc.Close()
		<-ft.done
	})
	return s, ft
}

func (ft *fakeTarget) serve() {
	defer close(ft.done)
	for {
		h, _, err := ft.r.ReadHeader()
		if err != nil {
			return
		}
		hdr := *h
		var data []byte
		if n := hdr.DataSegmentLength(); n > 0 {
			data = make([]byte, n)
			if err := ft.r.ReadData(data); err != nil {
				return
			}
		}
		ft.mu.Lock()
		ft.got = append(ft.got, hdr)
		if !hdr.Immediate() && (hdr.Opcode() == pdu.OpSCSICommand) {
			ft.expCmdSN = hdr.CmdSN() + 1
			ft.maxCmdSN = ft.expCmdSN + 63
		}
		ft.mu.Unlock()
		if ft.handle != nil && ft.handle(ft, &hdr, data) {
			continue
		}
		ft.serveDefault(&hdr, data)
	}
}

func (ft *fakeTarget) diskBytes(off, n int) []byte {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return append([]byte(nil), ft.disk[off:off+n]...)
}

func (ft *fakeTarget) received() []pdu.BHS {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return append([]pdu.BHS(nil), ft.got...)
}

// send writes one PDU, filling ExpCmdSN/MaxCmdSN, and StatSN when status.
func (ft *fakeTarget) send(h *pdu.BHS, data []byte, status bool) {
	ft.mu.Lock()
	if status {
		putWord(h[:], 24, ft.statSN)
		ft.statSN++
	} else {
		putWord(h[:], 24, ft.statSN)
	}
	putWord(h[:], 28, ft.expCmdSN)
	putWord(h[:], 32, ft.maxCmdSN)
	ft.mu.Unlock()
	h.SetDataSegmentLength(len(data))
	ft.wmu.Lock()
	ft.w.Queue(h[:], data)
	_ = ft.w.Flush()
	ft.wmu.Unlock()
}

func (ft *fakeTarget) sendRaw(h *pdu.BHS, data []byte) {
	h.SetDataSegmentLength(len(data))
	ft.wmu.Lock()
	ft.w.Queue(h[:], data)
	_ = ft.w.Flush()
	ft.wmu.Unlock()
}

func (ft *fakeTarget) scsiResponse(itt uint32, status uint8, sense []byte) {
	var h pdu.BHS
	h[0] = byte(pdu.OpSCSIResponse)
	h[1] = 0x80
	h[3] = status
	h.SetITT(itt)
	var data []byte
	if len(sense) > 0 {
		data = binary.BigEndian.AppendUint16(nil, uint16(len(sense)))
		data = append(data, sense...)
	}
	ft.send(&h, data, true)
}

func cdbLBA(cdb []byte) (lba, blocks int) {
	switch cdb[0] {
	case 0x28, 0x2a:
		return int(binary.BigEndian.Uint32(cdb[2:])), int(binary.BigEndian.Uint16(cdb[7:]))
	case 0x88, 0x8a:
		return int(binary.BigEndian.Uint64(cdb[2:])), int(binary.BigEndian.Uint32(cdb[10:]))
	}
	return 0, 0
}

func (ft *fakeTarget) serveDefault(h *pdu.BHS, data []byte) {
	switch h.Opcode() {
	case pdu.OpSCSICommand:
		cdb := h[32:48]
		itt := h.ITT()
		edtl := int(h.TTT())
		switch cdb[0] {
		case 0x28, 0x88:
			lba, blocks := cdbLBA(cdb)
			off, n := lba*ft.bs, blocks*ft.bs
			ft.dataIn(itt, ft.disk[off:off+n], edtl)
		case 0x2a, 0x8a:
			lba, _ := cdbLBA(cdb)
			w := &fakeWrite{lun: h.LUN(), itt: itt, lba: lba, edtl: edtl, buf: make([]byte, edtl)}
			w.received = copy(w.buf, data)
			if w.received == edtl {
				ft.finishWrite(w)
				return
			}
			if !h.Final() { // unsolicited Data-Out follows, up to FirstBurstLength
				w.ttt = pdu.ReservedTag
				w.r2tOff = w.received
				w.r2tLen = min(edtl, ft.firstBurst) - w.received
				w.next = w.r2tOff + w.r2tLen
				ft.mu.Lock()
				ft.unsol[itt] = w
				ft.mu.Unlock()
				return
			}
			ft.r2t(w)
		default:
			ft.scsiResponse(itt, 0, nil)
		}
	case pdu.OpDataOut:
		ft.mu.Lock()
		w := ft.writes[h.TTT()]
		if h.TTT() == pdu.ReservedTag {
			w = ft.unsol[h.ITT()]
		}
		ft.mu.Unlock()
		if w == nil {
			ft.t.Errorf("fake: Data-Out with unknown TTT %#x", h.TTT())
			return
		}
		off := int(word(h[:], 40))
		if word(h[:], 36) != w.dataSN {
			ft.t.Errorf("fake: Data-Out DataSN %d, want %d", word(h[:], 36), w.dataSN)
		}
		w.dataSN++
		if off < w.r2tOff || off+len(data) > w.r2tOff+w.r2tLen {
			ft.t.Errorf("fake: Data-Out offset %d len %d outside R2T %d+%d", off, len(data), w.r2tOff, w.r2tLen)
			return
		}
		copy(w.buf[off:], data)
		w.received += len(data)
		if h.Final() {
			if off+len(data) != w.r2tOff+w.r2tLen {
				ft.t.Errorf("fake: F bit before the end of the R2T sequence")
			}
			ft.mu.Lock()
			delete(ft.writes, w.ttt)
			if w.ttt == pdu.ReservedTag {
				delete(ft.unsol, w.itt)
			}
			ft.mu.Unlock()
			if w.r2tOff+w.r2tLen == w.edtl {
				ft.finishWrite(w)
			} else {
				ft.r2t(w)
			}
		}
	case pdu.OpNOPOut:
		if h.ITT() == idleITT {
			return // answer to our ping
		}
		var r pdu.BHS
		r[0] = byte(pdu.OpNOPIn)
		r[1] = 0x80
		r.SetITT(h.ITT())
		putWord(r[:], 20, pdu.ReservedTag)
		ft.send(&r, data, true)
	case pdu.OpLogoutRequest:
		var r pdu.BHS
		r[0] = byte(pdu.OpLogoutResponse)
		r[1] = 0x80
		r.SetITT(h.ITT())
		ft.send(&r, nil, true)
	case pdu.OpTaskMgmtRequest:
		var r pdu.BHS
		r[0] = byte(pdu.OpTaskMgmtResponse)
		r[1] = 0x80
		r.SetITT(h.ITT())
		ft.send(&r, nil, true)
	}
}

func (ft *fakeTarget) finishWrite(w *fakeWrite) {
	ft.mu.Lock()
	copy(ft.disk[w.lba*ft.bs:], w.buf)
	ft.mu.Unlock()
	ft.scsiResponse(w.itt, 0, nil)
}

func (ft *fakeTarget) r2t(w *fakeWrite) {
	ft.mu.Lock()
	w.ttt = ft.nextTTT
	ft.nextTTT++
	ft.writes[w.ttt] = w
	ft.mu.Unlock()
	if w.next == 0 {
		w.next = w.received
	}
	w.r2tOff = w.next
	w.r2tLen = min(w.edtl-w.r2tOff, ft.maxBurst)
	w.next += w.r2tLen
	w.dataSN = 0
	var h pdu.BHS
	h[0] = byte(pdu.OpR2T)
	h[1] = 0x80
	binary.BigEndian.PutUint64(h[8:16], w.lun)
	h.SetITT(w.itt)
	putWord(h[:], 20, w.ttt)
	putWord(h[:], 36, w.r2tSN)
	putWord(h[:], 40, uint32(w.r2tOff))
	putWord(h[:], 44, uint32(w.r2tLen))
	w.r2tSN++
	ft.send(&h, nil, false)
}

// dataIn sends data as Data-In PDUs of at most mrdsl bytes, status in the last.
func (ft *fakeTarget) dataIn(itt uint32, data []byte, edtl int) {
	n := min(len(data), edtl)
	sn := uint32(0)
	for off := 0; off < n || n == 0; {
		chunk := min(n-off, ft.mrdsl)
		var h pdu.BHS
		h[0] = byte(pdu.OpDataIn)
		last := off+chunk == n
		h.SetITT(itt)
		putWord(h[:], 20, pdu.ReservedTag)
		putWord(h[:], 36, sn)
		putWord(h[:], 40, uint32(off))
		if last {
			h[1] = 0x81
			if n < edtl {
				h[1] |= 0x02
				putWord(h[:], 44, uint32(edtl-n))
			}
		}
		ft.send(&h, data[off:off+chunk], last)
		sn++
		off += chunk
		if n == 0 {
			break
		}
	}
}

// errAs is a small helper for typed error assertions.
func errAs[T error](err error) (T, bool) {
	var t T
	ok := errors.As(err, &t)
	return t, ok
}

var _ = fmt.Sprintf
var _ = io.EOF

// word and putWord reach a header word by its byte offset. Only tests do:
// the fake targets forge headers, malformed ones included, that pdu's
// structs would not produce.
func word(h []byte, off int) uint32 { return binary.BigEndian.Uint32(h[off:]) }

func putWord(h []byte, off int, v uint32) { binary.BigEndian.PutUint32(h[off:], v) }
