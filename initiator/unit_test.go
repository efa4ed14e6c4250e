package initiator

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosan/iscsi/pdu"
	"github.com/gosan/iscsi/scsi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeLUN returns a LUN on the fake target's disk without INQUIRY/capacity.
func fakeLUN(s *Session, ft *fakeTarget) *LUN {
	l := &LUN{s: s, n: 1, raw: encodeLUN(1), blockSize: uint32(ft.bs), size: int64(len(ft.disk))}
	l.computeChunk()
	return l
}

func read10(lba uint32, blocks uint16) []byte { return scsi.Read10CDB(nil, lba, blocks, 0) }

func TestFakeReadRouting(t *testing.T) {
	s, ft := newFakePair(t, testNeg, nil)
	l := fakeLUN(s, ft)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				off := int64((g*20+i)%64) * 4096
				n := 512 * (1 + (g+i)%300)
				buf := make([]byte, n)
				_, err := l.ReadAt(buf, off)
				if !assert.NoError(t, err) {
					return
				}
				assert.True(t, bytes.Equal(ft.diskBytes(int(off), n), buf), "data of read at %d", off)
			}
		}()
	}
	wg.Wait()
}

func TestFakeWriteR2T(t *testing.T) {
	for _, tc := range []struct {
		name       string
		imm, r2t   bool
		n          int
		burst      int
		firstBurst uint32
	}{
		{"immediate-only", true, true, 4096, 262144, 65536},
		{"imm+r2t", true, true, 200 * 1024, 65536, 65536},
		{"r2t-only", false, true, 100 * 1024, 32768, 65536},
		{"unsolicited", true, false, 300 * 1024, 65536, 65536},
		{"unsolicited-no-imm", false, false, 70 * 1024, 16384, 16384},
	} {
		t.Run(tc.name, func(t *testing.T) {
			neg := testNeg
			neg.ImmediateData = tc.imm
			neg.InitialR2T = tc.r2t
			neg.MaxBurstLength = uint32(tc.burst)
			neg.FirstBurstLength = tc.firstBurst
			s, ft := newFakePair(t, neg, nil)
			l := fakeLUN(s, ft)
			data := bytes.Repeat([]byte{0xa5, 0x5a, 1, 2}, tc.n/4)
			err := s.execute(context.Background(), l.raw, scsi.Write10CDB(nil, 8, uint16(tc.n/512), 0), nil, data, &Result{})
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, ft.diskBytes(8*512, tc.n)))
			// Wire checks: Data-Out sizes, DataSN per sequence, F bits, TTTs.
			var cmd pdu.BHS
			seqSN := map[uint32]uint32{}
			total := 0
			for _, h := range ft.received() {
				switch h.Opcode() {
				case pdu.OpSCSICommand:
					cmd = h
					total += h.DataSegmentLength()
					assert.LessOrEqual(t, h.DataSegmentLength(), int(neg.MaxXmitDataSegmentLength))
				case pdu.OpDataOut:
					assert.LessOrEqual(t, h.DataSegmentLength(), int(neg.MaxXmitDataSegmentLength))
					assert.Equal(t, seqSN[h.TTT()], word(h[:], 36), "DataSN within the sequence")
					seqSN[h.TTT()]++
					total += h.DataSegmentLength()
					assert.Equal(t, cmd.ITT(), h.ITT())
				}
			}
			assert.Equal(t, tc.n, total)
			if !tc.imm {
				assert.Zero(t, cmd.DataSegmentLength())
			}
			unsolicited := !tc.r2t && tc.n > cmd.DataSegmentLength()
			assert.Equal(t, !unsolicited, cmd.Final(), "F on the command iff no unsolicited Data-Out follows")
		})
	}
}

func TestFakeWindowBlocks(t *testing.T) {
	var opened atomic.Bool
	s, ft := newFakePair(t, testNeg, nil)
	// Close the window: MaxCmdSN = ExpCmdSN-1.
	s.win.mu.Lock()
	s.win.maxCmdSN = s.win.cmdSN - 1
	s.win.mu.Unlock()
	l := fakeLUN(s, ft)
	buf := make([]byte, 512)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := l.ReadAtContext(ctx, buf, 0)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Empty(t, ft.received(), "nothing may be sent while the window is closed")

	done := make(chan error, 1)
	go func() {
		_, err := l.ReadAt(buf, 0)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("read finished with the window closed: %v", err)
	default:
	}
	// A NOP-In (no answer wanted) opens the window.
	opened.Store(true)
	var h pdu.BHS
	h[0] = byte(pdu.OpNOPIn)
	h[1] = 0x80
	h.SetITT(idleITT)
	putWord(h[:], 20, pdu.ReservedTag)
	ft.send(&h, nil, false)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("read still blocked after the window opened")
	}
}

func TestFakeBadDataIn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mod   func(h *pdu.BHS) // applied to the first Data-In
		extra int              // bytes of data beyond the expected length
	}{
		{"offset-outside-buffer", func(h *pdu.BHS) { putWord(h[:], 40, 1<<20) }, 0},
		{"offset-gap", func(h *pdu.BHS) { putWord(h[:], 40, 512) }, 0},
		{"datasn-out-of-order", func(h *pdu.BHS) { putWord(h[:], 36, 5) }, 0},
		{"beyond-expected-length", nil, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
				if h.Opcode() != pdu.OpSCSICommand || h[32] != 0x28 {
					return false
				}
				var d pdu.BHS
				d[0] = byte(pdu.OpDataIn)
				d[1] = 0x81
				d.SetITT(h.ITT())
				putWord(d[:], 20, pdu.ReservedTag)
				payload := make([]byte, int(h.TTT())+tc.extra)
				for i := range payload {
					payload[i] = 0xee
				}
				if tc.mod != nil {
					tc.mod(&d)
				}
				ft.send(&d, payload, true)
				return true
			}
			s, ft := newFakePair(t, testNeg, handle)
			l := fakeLUN(s, ft)
			backing := make([]byte, 8192)
			buf := backing[:1024]
			_, err := l.ReadAt(buf, 0)
			require.Error(t, err)
			_, isConn := errAs[*ConnectionError](err)
			_, isProto := errAs[*ProtocolError](err)
			assert.True(t, isConn && isProto, "want ConnectionError wrapping ProtocolError, got %v", err)
			for i, b := range backing[1024:] {
				if b != 0 {
					t.Fatalf("byte %d beyond the buffer written", 1024+i)
				}
			}
			require.Error(t, s.Err(), "session must be failed")
		})
	}
}

func TestFakeUnknownITTIgnored(t *testing.T) {
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		if h.Opcode() == pdu.OpSCSICommand {
			// A Data-In and a response for tasks that do not exist first.
			var d pdu.BHS
			d[0] = byte(pdu.OpDataIn)
			d[1] = 0x80
			d.SetITT(h.ITT() ^ 0x00ff0000)
			putWord(d[:], 20, pdu.ReservedTag)
			ft.send(&d, make([]byte, 100), false)
			ft.scsiResponse(0x1234, 0, nil)
		}
		return false
	}
	s, ft := newFakePair(t, testNeg, handle)
	l := fakeLUN(s, ft)
	buf := make([]byte, 4096)
	_, err := l.ReadAt(buf, 4096)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(ft.diskBytes(4096, 4096), buf))
	require.NoError(t, s.Err())
}

func TestFakeR2TOutsideBuffer(t *testing.T) {
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		if h.Opcode() != pdu.OpSCSICommand || h[32] != 0x2a {
			return false
		}
		var r pdu.BHS
		r[0] = byte(pdu.OpR2T)
		r[1] = 0x80
		r.SetITT(h.ITT())
		putWord(r[:], 20, 7)
		putWord(r[:], 40, 0)
		putWord(r[:], 44, h.TTT()+4096)
		ft.send(&r, nil, false)
		return true
	}
	neg := testNeg
	neg.ImmediateData = false
	s, ft := newFakePair(t, neg, handle)
	l := fakeLUN(s, ft)
	_, err := l.WriteAt(make([]byte, 8192), 0)
	_, isProto := errAs[*ProtocolError](err)
	require.True(t, isProto, "got %v", err)
	for _, h := range ft.received() {
		assert.NotEqual(t, pdu.OpDataOut, h.Opcode(), "no Data-Out for a bad R2T")
	}
}

func TestFakeNOPInAnswered(t *testing.T) {
	got := make(chan pdu.BHS, 1)
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		if h.Opcode() == pdu.OpNOPOut && h.ITT() == idleITT {
			got <- *h
			return true
		}
		return false
	}
	_, ft := newFakePair(t, testNeg, handle)
	var h pdu.BHS
	h[0] = byte(pdu.OpNOPIn)
	h[1] = 0x80
	binary.BigEndian.PutUint64(h[8:16], 0x0001000000000000)
	h.SetITT(idleITT)
	putWord(h[:], 20, 0xabcd)
	ft.send(&h, nil, false)
	select {
	case r := <-got:
		assert.Equal(t, uint32(0xabcd), r.TTT())
		assert.Equal(t, uint32(idleITT), r.ITT())
		assert.True(t, r.Immediate())
		assert.Equal(t, uint64(0x0001000000000000), r.LUN())
	case <-time.After(5 * time.Second):
		t.Fatal("no NOP-Out answer")
	}
}

func TestFakeKeepalive(t *testing.T) {
	t.Run("answered", func(t *testing.T) {
		s, ft := newFakePair(t, testNeg, nil, WithNOP(20*time.Millisecond, time.Second))
		time.Sleep(200 * time.Millisecond)
		require.NoError(t, s.Err())
		pings := 0
		for _, h := range ft.received() {
			if h.Opcode() == pdu.OpNOPOut && h.ITT() != idleITT {
				pings++
				assert.True(t, h.Immediate())
			}
		}
		assert.Greater(t, pings, 1)
	})
	t.Run("unanswered", func(t *testing.T) {
		drop := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool { return h.Opcode() == pdu.OpNOPOut }
		s, _ := newFakePair(t, testNeg, drop, WithNOP(20*time.Millisecond, 50*time.Millisecond))
		require.Eventually(t, func() bool { return s.Err() != nil }, 5*time.Second, 10*time.Millisecond)
		_, ok := errAs[*ConnectionError](s.Err())
		assert.True(t, ok, "%v", s.Err())
	})
}

func TestFakeReject(t *testing.T) {
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		if h.Opcode() != pdu.OpSCSICommand {
			return false
		}
		var r pdu.BHS
		r[0] = byte(pdu.OpReject)
		r[1] = 0x80
		r[2] = 0x05
		r.SetITT(idleITT)
		ft.send(&r, h[:], true)
		return true
	}
	s, ft := newFakePair(t, testNeg, handle)
	l := fakeLUN(s, ft)
	_, err := l.ReadAt(make([]byte, 512), 0)
	re, ok := errAs[*RejectError](err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, pdu.RejectCommandNotSupported, re.Reason)
	require.NoError(t, s.Err())
}

func TestFakeAbortOnCancel(t *testing.T) {
	tmf := make(chan pdu.BHS, 1)
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		switch h.Opcode() {
		case pdu.OpSCSICommand:
			return true // never answer
		case pdu.OpTaskMgmtRequest:
			tmf <- *h
		}
		return false
	}
	s, ft := newFakePair(t, testNeg, handle)
	l := fakeLUN(s, ft)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := l.ReadAtContext(ctx, make([]byte, 512), 0)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var cmd pdu.BHS
	for _, h := range ft.received() {
		if h.Opcode() == pdu.OpSCSICommand {
			cmd = h
		}
	}
	select {
	case h := <-tmf:
		assert.Equal(t, byte(pdu.TMFAbortTask), h[1]&0x7f)
		assert.Equal(t, cmd.ITT(), h.TTT(), "referenced task tag")
		assert.Equal(t, cmd.CmdSN(), word(h[:], 32), "RefCmdSN")
		assert.True(t, h.Immediate())
	default:
		t.Fatal("no ABORT TASK")
	}
	// The slot is free again and the session still works.
	require.NoError(t, s.Err())
	require.Len(t, s.slots.free, cap(s.slots.free))
}

func TestFakeCheckConditionAndUA(t *testing.T) {
	var calls atomic.Int32
	ua := []byte{0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0x00, 0, 0, 0, 0}
	ill := []byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00, 0, 0, 0, 0}
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		if h.Opcode() != pdu.OpSCSICommand {
			return false
		}
		switch calls.Add(1) {
		case 1:
			ft.scsiResponse(h.ITT(), 2, ua)
			return true
		case 3:
			ft.scsiResponse(h.ITT(), 2, ill)
			return true
		}
		return false
	}
	s, ft := newFakePair(t, testNeg, handle)
	l := fakeLUN(s, ft)
	_, err := l.ReadAt(make([]byte, 512), 0)
	require.NoError(t, err, "unit attention absorbed")
	_, err = l.ReadAt(make([]byte, 512), 0)
	require.ErrorIs(t, err, scsi.ErrIllegalRequest)
	se, ok := errAs[*scsi.SenseError](err)
	require.True(t, ok)
	assert.Equal(t, uint8(0x24), se.ASC)
}

func TestFakeAsyncLogout(t *testing.T) {
	s, ft := newFakePair(t, testNeg, nil)
	var h pdu.BHS
	h[0] = byte(pdu.OpAsyncMessage)
	h[1] = 0x80
	h.SetITT(idleITT)
	h[36] = 1
	binary.BigEndian.PutUint16(h[42:44], 5)
	ft.send(&h, nil, true)
	require.Eventually(t, func() bool { return errors.Is(s.Err(), ErrSessionClosed) }, 5*time.Second, 10*time.Millisecond)
	logout := false
	for _, r := range ft.received() {
		logout = logout || r.Opcode() == pdu.OpLogoutRequest
	}
	assert.True(t, logout, "the initiator logs out when asked")
}

func TestFakeResidual(t *testing.T) {
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		if h.Opcode() == pdu.OpSCSICommand && h[32] == 0x12 {
			ft.dataIn(h.ITT(), make([]byte, 36), int(h.TTT()))
			return true
		}
		return false
	}
	s, ft := newFakePair(t, testNeg, handle)
	l := fakeLUN(s, ft)
	res, err := l.Execute(context.Background(), scsi.InquiryCDB(nil, 96), make([]byte, 96), nil)
	require.NoError(t, err)
	assert.True(t, res.Underflow)
	assert.Equal(t, 60, res.Residual)
	assert.Equal(t, 36, res.Transferred)
}

func TestAlignmentError(t *testing.T) {
	s, ft := newFakePair(t, testNeg, nil)
	l := fakeLUN(s, ft)
	for _, tc := range []struct {
		off int64
		n   int
	}{{1, 512}, {0, 100}, {int64(len(ft.disk)), 512}, {-512, 512}} {
		_, err := l.ReadAt(make([]byte, tc.n), tc.off)
		_, ok := errAs[*AlignmentError](err)
		assert.True(t, ok, "off %d n %d: %v", tc.off, tc.n, err)
	}
}

func TestFakeCloseNoLeak(t *testing.T) {
	before := goroutines()
	s, _ := newFakePair(t, testNeg, nil)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "second Close")
	checkNoLeak(t, before)
	_, err := s.ReportLUNs(context.Background())
	require.ErrorIs(t, err, ErrSessionClosed)
}

func TestNormalizePortal(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":           "10.0.0.1:3260",
		"10.0.0.1:3261":      "10.0.0.1:3261",
		"host.example":       "host.example:3260",
		"[fe80::1]":          "[fe80::1]:3260",
		"fe80::1":            "[fe80::1]:3260",
		"[fe80::1]:3262":     "[fe80::1]:3262",
		"10.0.0.1:3260,1":    "10.0.0.1:3260",
		"[2001:db8::1]:99,2": "[2001:db8::1]:99",
	} {
		assert.Equal(t, want, normalizePortal(in), in)
	}
}

func TestRandomISID(t *testing.T) {
	isid := RandomISID()
	assert.Equal(t, byte(0xc0), isid[0]&0xc0)
}

func TestFakeLUNResetConcludesTasks(t *testing.T) {
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		return h.Opcode() == pdu.OpSCSICommand // never answer commands
	}
	s, ft := newFakePair(t, testNeg, handle)
	l := fakeLUN(s, ft)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := l.ReadAt(make([]byte, 512), 0)
			errs <- err
		}()
	}
	require.Eventually(t, func() bool {
		n := 0
		for _, h := range ft.received() {
			if h.Opcode() == pdu.OpSCSICommand {
				n++
			}
		}
		return n == 3
	}, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, s.LUNReset(context.Background(), 1))
	for range 3 {
		select {
		case err := <-errs:
			require.ErrorIs(t, err, ErrTaskAborted)
		case <-time.After(5 * time.Second):
			t.Fatal("task not concluded by LUN RESET")
		}
	}
	require.Len(t, s.slots.free, cap(s.slots.free))
	require.NoError(t, s.Err())
}

func TestFakeStatSNFarOff(t *testing.T) {
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		if h.Opcode() != pdu.OpSCSICommand {
			return false
		}
		ft.mu.Lock()
		ft.statSN += 1 << 31
		ft.mu.Unlock()
		ft.scsiResponse(h.ITT(), 0, nil)
		return true
	}
	s, ft := newFakePair(t, testNeg, handle)
	l := fakeLUN(s, ft)
	_, err := l.ReadAt(make([]byte, 512), 0)
	_, ok := errAs[*ConnectionError](err)
	require.True(t, ok, "%v", err)
	require.Error(t, s.Err())
}

func TestFakeRenegotiation(t *testing.T) {
	text := make(chan pdu.BHS, 1)
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		if h.Opcode() != pdu.OpTextRequest {
			return false
		}
		text <- *h
		var r pdu.BHS
		r[0] = byte(pdu.OpTextResponse)
		r[1] = 0x80
		r.SetITT(h.ITT())
		putWord(r[:], 20, pdu.ReservedTag)
		ft.send(&r, nil, true)
		return true
	}
	s, ft := newFakePair(t, testNeg, handle)
	var h pdu.BHS
	h[0] = byte(pdu.OpAsyncMessage)
	h[1] = 0x80
	h.SetITT(idleITT)
	h[36] = 4
	ft.send(&h, nil, true)
	select {
	case r := <-text:
		assert.True(t, r.Final())
		assert.Zero(t, r.DataSegmentLength())
	case <-time.After(5 * time.Second):
		t.Fatal("no Text Request after a renegotiation request")
	}
	require.NoError(t, s.Ping(context.Background()))
}

func TestFakeCloseWithCommandsInFlight(t *testing.T) {
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		return h.Opcode() == pdu.OpSCSICommand || h.Opcode() == pdu.OpLogoutRequest // silent target
	}
	before := goroutines()
	s, ft := newFakePair(t, testNeg, handle, WithLogoutTimeout(200*time.Millisecond))
	l := fakeLUN(s, ft)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := l.ReadAt(make([]byte, 4096), 0)
			errs <- err
		}()
	}
	require.Eventually(t, func() bool { return len(s.slots.free) == cap(s.slots.free)-4 }, 5*time.Second, 5*time.Millisecond)
	start := time.Now()
	err := s.Close()
	require.Error(t, err, "logout unanswered")
	assert.Less(t, time.Since(start), 2*time.Second)
	for range 4 {
		err := <-errs
		require.ErrorIs(t, err, ErrSessionClosed)
	}
	_ = ft.nc.Close()
	<-ft.done
	checkNoLeak(t, before)
}

func TestFakeWriteEarlyError(t *testing.T) {
	ill := []byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0x00, 0, 0, 0, 0}
	handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		switch h.Opcode() {
		case pdu.OpSCSICommand:
			ft.scsiResponse(h.ITT(), 2, ill) // LBA out of range, before any Data-Out
			return true
		case pdu.OpDataOut:
			return true
		}
		return false
	}
	neg := testNeg
	neg.InitialR2T = false
	s, ft := newFakePair(t, neg, handle)
	l := fakeLUN(s, ft)
	for range 20 {
		buf := make([]byte, 64<<10)
		_, err := l.WriteAt(buf, 0)
		require.ErrorIs(t, err, scsi.ErrIllegalRequest)
		for i := range buf {
			buf[i] = 0xff // reusing the buffer at once is allowed
		}
	}
	require.NoError(t, s.Err())
	require.Len(t, s.slots.free, cap(s.slots.free))
}

func TestPortalString(t *testing.T) {
	assert.Equal(t, "[fe80::1]:3260", Portal{Address: "fe80::1", Port: 3260}.String())
	assert.Equal(t, "10.1.2.3:3261", Portal{Address: "10.1.2.3", Port: 3261, GroupTag: 2}.String())
	assert.Equal(t, "[fe80::1]:3260", normalizePortal(Portal{Address: "fe80::1", Port: 3260}.String()))
}
