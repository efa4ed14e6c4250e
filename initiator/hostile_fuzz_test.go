package initiator

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/gosan/iscsi/pdu"
)

// The ITTs of the commands FuzzHostileSession issues, in order: slots 0, 1
// and 2 of a fresh session, generation 1.
const (
	fuzzITTRead0 = 0x00010000
	fuzzITTRead1 = 0x00010001
	fuzzITTWrite = 0x00010002
	fuzzRead0Len = 1024
	fuzzRead1Len = 4096
	fuzzWriteLen = 16384
)

// FuzzHostileSession runs a whole session against a fuzzed target: a
// scripted, valid login over net.Pipe through Dial, then two reads and a
// write in flight at once while the fuzzer's bytes are the target's whole
// full-feature-phase stream. It checks that nothing panics, every call
// returns within a deadline, a read that succeeds holds exactly the Data-In
// bytes the stream carried for its ITT (the rest of its buffer untouched,
// nothing written outside it), the memory allocated is bounded, and Close
// leaves no goroutine behind.
func FuzzHostileSession(f *testing.F) {
	din := func(itt, off, sn uint32, flags byte, n int, status uint8) []byte {
		h := hDataIn(itt, off, sn, flags)
		h[3] = status
		putWord(h[:], 24, 101)
		putWord(h[:], 28, 1)
		putWord(h[:], 32, 64)
		h.SetDataSegmentLength(n)
		return append(h[:], bytes.Repeat([]byte{byte(itt) + 0x31}, (n+3)&^3)...)
	}
	resp := func(itt uint32, flags byte, residual uint32) []byte {
		var h pdu.BHS
		h[0] = byte(pdu.OpSCSIResponse)
		h[1] = 0x80 | flags
		h.SetITT(itt)
		putWord(h[:], 24, 102)
		putWord(h[:], 28, 1)
		putWord(h[:], 32, 64)
		putWord(h[:], 44, residual)
		return h[:]
	}
	r2t := func(itt, ttt, off, n uint32) []byte {
		var h pdu.BHS
		h[0] = byte(pdu.OpR2T)
		h[1] = 0x80
		h.SetITT(itt)
		putWord(h[:], 20, ttt)
		putWord(h[:], 28, 1)
		putWord(h[:], 32, 64)
		putWord(h[:], 40, off)
		putWord(h[:], 44, n)
		return h[:]
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	f.Add(cat(din(fuzzITTRead0, 0, 0, 0x81, fuzzRead0Len, 0), din(fuzzITTRead1, 0, 0, 0x81, fuzzRead1Len, 0), resp(fuzzITTWrite, 0, 0)))
	f.Add(cat(din(fuzzITTRead1, 0, 0, 0x00, 2048, 0), din(fuzzITTRead1, 2048, 1, 0x81, 2048, 0), din(fuzzITTRead0, 0, 0, 0x81|0x04, 512, 0)))
	f.Add(cat(din(fuzzITTRead0, 0, 0, 0x00, 512, 0), resp(fuzzITTRead0, 0x02, 0)))
	f.Add(cat(r2t(fuzzITTWrite, 5, 0, fuzzWriteLen), resp(fuzzITTWrite, 0, 0), din(fuzzITTRead0, 512, 0, 0x81, 512, 0)))
	f.Add(cat(din(fuzzITTRead0, 0, 0, 0x81, 1536, 0)))
	f.Add(cat(din(fuzzITTRead0+1<<16, 0, 0, 0x81, 1024, 0), din(fuzzITTRead0, 0, 0, 0x81, fuzzRead0Len, 2)))
	var nop pdu.BHS
	nop[0] = byte(pdu.OpNOPIn)
	nop[1] = 0x80
	nop.SetITT(idleITT)
	putWord(nop[:], 20, 77)
	nop.SetDataSegmentLength(8)
	f.Add(cat(nop[:], make([]byte, 8), din(fuzzITTRead1, 0, 0, 0x81, fuzzRead1Len, 0)))
	var async pdu.BHS
	async[0] = byte(pdu.OpAsyncMessage)
	async[1] = 0x80
	async[36] = 1
	f.Add(cat(din(fuzzITTRead0, 0, 0, 0x81, fuzzRead0Len, 0), async[:]))
	f.Fuzz(hostileSessionBody)
}

// fuzzExpected rebuilds from the stream what a read with itt may hold:
// the payload of every Data-In for itt up to its status, at its offset.
func fuzzExpected(stream []byte, itt uint32, n int) []byte {
	want := bytes.Repeat([]byte{hostileSentinel}, n)
	for off := 0; len(stream)-off >= pdu.BHSLen; {
		h := (*pdu.BHS)(stream[off : off+pdu.BHSLen])
		ahs := int(h[4]) * 4
		dsl := h.DataSegmentLength()
		end := off + pdu.BHSLen + ahs + (dsl+3)&^3
		if end > len(stream) {
			break
		}
		data := stream[off+pdu.BHSLen+ahs : off+pdu.BHSLen+ahs+dsl]
		off = end
		if h.ITT() != itt {
			continue
		}
		switch h.Opcode() {
		case pdu.OpDataIn:
			bo := int64(word(h[:], 40))
			if bo+int64(len(data)) <= int64(n) {
				copy(want[bo:], data)
			}
			if h[1]&0x01 != 0 {
				return want
			}
		case pdu.OpSCSIResponse:
			return want
		}
	}
	return want
}

func hostileSessionBody(t *testing.T, stream []byte) {
	before := goroutines()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)

	peerCh := make(chan net.Conn, 1)
	d := &hostileDialer{tcp: len(stream)%2 == 1, serve: func(nc net.Conn) {
		p := newLoginPeer(nc)
		if !p.serveLogin(nil) {
			return
		}
		peerCh <- nc
		buf := make([]byte, 32<<10) // drain what the initiator sends
		for {
			if _, err := nc.Read(buf); err != nil {
				return
			}
		}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := Dial(ctx, "fuzz", hostileIQN, hostileOpts(d, WithQueueDepth(4), WithTMFTimeout(100*time.Millisecond),
		WithLogoutTimeout(100*time.Millisecond))...)
	if err != nil {
		t.Fatalf("scripted login failed: %v", err)
	}
	peer := <-peerCh

	backing0, p0 := sentinelBuf(fuzzRead0Len)
	backing1, p1 := sentinelBuf(fuzzRead1Len)
	out := bytes.Repeat([]byte{0x77}, fuzzWriteLen)
	type cmd struct {
		itt  uint32
		in   []byte
		out  []byte
		sl   *slot
		err  error
		res  Result
		done chan struct{}
	}
	cmds := []*cmd{{itt: fuzzITTRead0, in: p0}, {itt: fuzzITTRead1, in: p1}, {itt: fuzzITTWrite, out: out}}
	for _, c := range cmds {
		cdb := read10(0, uint16(len(c.in)/512))
		if c.out != nil {
			cdb = scsiWrite10(uint16(len(c.out) / 512))
		}
		c.sl, c.err = s.start(ctx, encodeLUN(1), cdb, c.in, c.out)
		if c.err != nil {
			t.Fatalf("start: %v", c.err)
		}
		if got := c.sl.ittFor(); got != c.itt {
			t.Fatalf("ITT %#x, the harness expects %#x", got, c.itt)
		}
		c.done = make(chan struct{})
		go func() {
			defer close(c.done)
			_, c.err = s.wait(ctx, c.sl, &c.res)
		}()
	}
	_ = peer.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = peer.Write(stream)
	_ = peer.Close()
	for _, c := range cmds {
		select {
		case <-c.done:
		case <-time.After(4 * time.Second):
			t.Fatalf("command %#x did not return after the stream ended", c.itt)
		}
	}
	closed := make(chan struct{})
	go func() { _ = s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close hung")
	}
	d.close()

	requireGuards(t, backing0, fuzzRead0Len)
	requireGuards(t, backing1, fuzzRead1Len)
	for _, c := range cmds[:2] {
		if c.err != nil {
			continue
		}
		n := c.res.Transferred
		if n < 0 || n > len(c.in) {
			t.Fatalf("ITT %#x: Transferred %d of %d", c.itt, n, len(c.in))
		}
		want := fuzzExpected(stream, c.itt, len(c.in))
		if !bytes.Equal(c.in[:n], want[:n]) {
			t.Fatalf("ITT %#x: read returned bytes the target did not send for it", c.itt)
		}
		if !allSentinel(c.in[n:]) {
			t.Fatalf("ITT %#x: bytes past Transferred (%d) changed", c.itt, n)
		}
	}
	runtime.ReadMemStats(&ms1)
	if grown := ms1.TotalAlloc - ms0.TotalAlloc; grown > uint64(8<<20+4*len(stream)) {
		t.Fatalf("allocated %d bytes for a %d-byte stream", grown, len(stream))
	}
	checkNoLeak(t, before)
}

func scsiWrite10(blocks uint16) []byte {
	cdb := make([]byte, 10)
	cdb[0] = 0x2a
	binary.BigEndian.PutUint16(cdb[7:], blocks)
	return cdb
}
