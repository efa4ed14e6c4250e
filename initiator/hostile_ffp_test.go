package initiator

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hDataIn builds a Data-In header.
func hDataIn(itt, off, sn uint32, flags byte) pdu.BHS {
	var h pdu.BHS
	h[0] = byte(pdu.OpDataIn)
	h[1] = flags
	h.SetITT(itt)
	putWord(h[:], 20, pdu.ReservedTag)
	putWord(h[:], 36, sn)
	putWord(h[:], 40, off)
	return h
}

func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// closePair ends the session and the fake target and checks that no
// goroutine is left.
func closePair(t *testing.T, s *Session, ft *fakeTarget, before int) {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close hung")
	}
	_ = ft.nc.Close()
	<-ft.done
	checkNoLeak(t, before)
}

// Data-In outside the command's buffer, at a wrong offset or out of order:
// the read fails with a ProtocolError inside a ConnectionError, returns 0,
// writes nothing outside the buffer, and the session is failed.
func TestHostileDataInOutOfBounds(t *testing.T) {
	type din struct {
		off, sn uint32
		flags   byte
		n       int
	}
	for _, tc := range []struct {
		name string
		pdus []din
	}{
		{"one-pdu-past-expected-length", []din{{0, 0, 0x81, 1536}}},
		{"second-pdu-past-expected-length", []din{{0, 0, 0x00, 1024}, {1024, 1, 0x81, 512}}},
		{"offset-rewinds", []din{{0, 0, 0x00, 512}, {0, 1, 0x81, 512}}},
		{"offset-skips", []din{{512, 0, 0x81, 512}}},
		{"offset-wraps-uint32", []din{{0, 0, 0x00, 512}, {0xfffffe00, 1, 0x81, 1024}}},
		{"offset-far-outside", []din{{1 << 30, 0, 0x81, 512}}},
		{"datasn-skips", []din{{0, 0, 0x00, 512}, {512, 2, 0x81, 512}}},
		{"datasn-repeats", []din{{0, 0, 0x00, 512}, {512, 0, 0x81, 512}}},
		{"status-without-final", []din{{0, 0, 0x01, 1024}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goroutines()
			handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
				if h.Opcode() != pdu.OpSCSICommand || h[32] != 0x28 {
					return false
				}
				for _, d := range tc.pdus {
					hdr := hDataIn(h.ITT(), d.off, d.sn, d.flags)
					ft.send(&hdr, fill(d.n, 0xee), d.flags&0x01 != 0)
				}
				return true
			}
			s, ft := newFakePair(t, testNeg, handle)
			l := fakeLUN(s, ft)
			backing, p := sentinelBuf(1024)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			start := time.Now()
			n, err := l.ReadAtContext(ctx, p, 0)
			assert.Less(t, time.Since(start), 2*time.Second)
			require.Error(t, err)
			assert.Equal(t, 0, n)
			_, isConn := errAs[*ConnectionError](err)
			_, isProto := errAs[*ProtocolError](err)
			assert.True(t, isConn && isProto, "want ConnectionError wrapping ProtocolError, got %v", err)
			requireGuards(t, backing, len(p))
			require.Error(t, s.Err(), "the session must be failed")
			_, isConn = errAs[*ConnectionError](s.Err())
			assert.True(t, isConn, "Session.Err: %v", s.Err())
			// Later calls fail at once.
			n, err = l.ReadAt(p, 0)
			assert.Equal(t, 0, n)
			require.Error(t, err)
			closePair(t, s, ft, before)
		})
	}
}

// A read the target answers with fewer bytes than asked must never report
// the bytes it did not send as read data: n counts only what arrived and
// the rest of the caller's buffer is untouched, whatever residual the
// status claims.
func TestHostileReadNeverReturnsUnsentBytes(t *testing.T) {
	const asked, sent = 1024, 512
	for _, tc := range []struct {
		name string
		// answer sends the (partial) data and the status.
		answer func(ft *fakeTarget, itt uint32)
	}{
		{"good-no-residual", func(ft *fakeTarget, itt uint32) {
			h := hDataIn(itt, 0, 0, 0x81)
			ft.send(&h, fill(sent, 0x11), true)
		}},
		{"good-overflow-flag", func(ft *fakeTarget, itt uint32) {
			h := hDataIn(itt, 0, 0, 0x81|0x04)
			putWord(h[:], 44, 100)
			ft.send(&h, fill(sent, 0x11), true)
		}},
		{"good-underflow-residual-zero", func(ft *fakeTarget, itt uint32) {
			h := hDataIn(itt, 0, 0, 0x81|0x02)
			ft.send(&h, fill(sent, 0x11), true)
		}},
		{"good-underflow-residual-too-small", func(ft *fakeTarget, itt uint32) {
			h := hDataIn(itt, 0, 0, 0x81|0x02)
			putWord(h[:], 44, 256)
			ft.send(&h, fill(sent, 0x11), true)
		}},
		{"scsi-response-no-residual", func(ft *fakeTarget, itt uint32) {
			h := hDataIn(itt, 0, 0, 0x00)
			ft.send(&h, fill(sent, 0x11), false)
			ft.scsiResponse(itt, 0, nil)
		}},
		{"scsi-response-overflow-flag", func(ft *fakeTarget, itt uint32) {
			h := hDataIn(itt, 0, 0, 0x00)
			ft.send(&h, fill(sent, 0x11), false)
			var r pdu.BHS
			r[0] = byte(pdu.OpSCSIResponse)
			r[1] = 0x80 | 0x04
			r.SetITT(itt)
			putWord(r[:], 44, 1)
			ft.send(&r, nil, true)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goroutines()
			handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
				if h.Opcode() != pdu.OpSCSICommand || h[32] != 0x28 {
					return false
				}
				tc.answer(ft, h.ITT())
				return true
			}
			s, ft := newFakePair(t, testNeg, handle)
			l := fakeLUN(s, ft)
			backing, p := sentinelBuf(asked)
			n, err := l.ReadAt(p, 0)
			requireGuards(t, backing, len(p))
			assert.Equal(t, fill(sent, 0x11), p[:sent], "the bytes the target sent")
			assert.True(t, allSentinel(p[sent:]), "bytes the target never sent must stay untouched")
			assert.Equal(t, sent, n, "n must count only the bytes the target sent (err %v)", err)
			assert.Error(t, err, "a short read must not succeed")
			// Execute reports the truth in Result.Transferred.
			res, err := l.Execute(context.Background(), read10(0, 2), p, nil)
			require.NoError(t, err)
			assert.Equal(t, sent, res.Transferred)
			closePair(t, s, ft, before)
		})
	}
}

// PDUs for tasks that do not exist (never issued, finished, another
// generation of the same slot, out of the table) are dropped; their data
// reaches no buffer, and the session goes on.
func TestHostileUnknownITT(t *testing.T) {
	type sendFn func(ft *fakeTarget, itt, prev uint32)
	din := func(mod func(itt, prev uint32) uint32) sendFn {
		return func(ft *fakeTarget, itt, prev uint32) {
			h := hDataIn(mod(itt, prev), 0, 0, 0x81)
			ft.send(&h, fill(512, 0xee), true)
		}
	}
	resp := func(op pdu.Opcode, withData bool) sendFn {
		return func(ft *fakeTarget, itt, prev uint32) {
			var h pdu.BHS
			h[0] = byte(op)
			h[1] = 0x80
			h.SetITT(itt ^ 0x00ff0000)
			var data []byte
			if withData {
				data = append([]byte{0, 18}, fill(18, 0xee)...)
			}
			ft.send(&h, data, true)
		}
	}
	for _, tc := range []struct {
		name string
		send sendFn
	}{
		{"data-in-never-issued", din(func(itt, prev uint32) uint32 { return 0x12345678 })},
		{"data-in-other-generation", din(func(itt, prev uint32) uint32 { return itt + 1<<16 })},
		{"data-in-previous-command", din(func(itt, prev uint32) uint32 { return prev })},
		{"data-in-slot-out-of-table", din(func(itt, prev uint32) uint32 { return itt&0xffff0000 | 0xfffe })},
		{"data-in-reserved-itt", din(func(itt, prev uint32) uint32 { return 0xffffffff })},
		{"scsi-response-with-sense", resp(pdu.OpSCSIResponse, true)},
		{"nop-in-answer", resp(pdu.OpNOPIn, true)},
		{"task-management-response", resp(pdu.OpTaskMgmtResponse, false)},
		{"logout-response", resp(pdu.OpLogoutResponse, false)},
		{"text-response", resp(pdu.OpTextResponse, true)},
		{"r2t", func(ft *fakeTarget, itt, prev uint32) {
			var h pdu.BHS
			h[0] = byte(pdu.OpR2T)
			h[1] = 0x80
			h.SetITT(prev)
			putWord(h[:], 20, 9)
			putWord(h[:], 44, 512)
			ft.send(&h, nil, false)
		}},
		{"reject-of-unknown-pdu", func(ft *fakeTarget, itt, prev uint32) {
			var rej pdu.BHS
			rej[0] = byte(pdu.OpSCSICommand)
			rej.SetITT(prev)
			var h pdu.BHS
			h[0] = byte(pdu.OpReject)
			h[1] = 0x80
			h[2] = 0x09
			h.SetITT(0xffffffff)
			ft.send(&h, rej[:], true)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goroutines()
			var mu sync.Mutex
			prev := uint32(0x00ab0003) // no such task; later the previous command's ITT
			handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
				if h.Opcode() != pdu.OpSCSICommand || h[32] != 0x28 {
					return false
				}
				mu.Lock()
				p := prev
				prev = h.ITT()
				mu.Unlock()
				tc.send(ft, h.ITT(), p)
				return false // then the genuine answer
			}
			s, ft := newFakePair(t, testNeg, handle, WithQueueDepth(1))
			l := fakeLUN(s, ft)
			for i := range 3 {
				backing, p := sentinelBuf(4096)
				n, err := l.ReadAt(p, int64(i)*4096)
				require.NoError(t, err, "read %d", i)
				require.Equal(t, 4096, n)
				requireGuards(t, backing, len(p))
				require.Equal(t, ft.diskBytes(i*4096, 4096), p, "read %d returned bytes the target did not send for it", i)
			}
			require.NoError(t, s.Err())
			require.NoError(t, s.Ping(context.Background()))
			closePair(t, s, ft, before)
		})
	}
}

// StatSN going backwards a little is ignored (a stale status); far
// backwards or far forwards breaks the connection. ExpStatSN never moves
// back.
func TestHostileStatSN(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delta int64 // added to the StatSN of the second command's response
		fails bool
	}{
		{"back-by-one", -1, false},
		{"back-by-ten", -10, false},
		{"forward-by-three", 3, false},
		{"back-far", -(1 << 20), true},
		{"forward-far", 1 << 20, true},
		{"half-the-space", 1 << 31, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goroutines()
			cmds := 0
			handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
				if h.Opcode() != pdu.OpSCSICommand {
					return false
				}
				cmds++
				if cmds != 2 {
					return false
				}
				var r pdu.BHS
				r[0] = byte(pdu.OpSCSIResponse)
				r[1] = 0x80
				r.SetITT(h.ITT())
				ft.mu.Lock()
				sn := uint32(int64(ft.statSN) + tc.delta)
				putWord(r[:], 24, sn)
				putWord(r[:], 28, ft.expCmdSN)
				putWord(r[:], 32, ft.maxCmdSN)
				if !tc.fails && tc.delta > 0 {
					ft.statSN = sn + 1
				}
				ft.mu.Unlock()
				ft.sendRaw(&r, nil)
				return true
			}
			s, ft := newFakePair(t, testNeg, handle)
			l := fakeLUN(s, ft)
			ctx := context.Background()
			_, err := l.Execute(ctx, []byte{0, 0, 0, 0, 0, 0}, nil, nil) // TEST UNIT READY
			require.NoError(t, err)
			expBefore := s.conn.Load().expStatSN.Load()
			_, err = l.Execute(ctx, []byte{0, 0, 0, 0, 0, 0}, nil, nil)
			if tc.fails {
				_, isConn := errAs[*ConnectionError](err)
				_, isProto := errAs[*ProtocolError](err)
				require.True(t, isConn && isProto, "want ConnectionError wrapping ProtocolError, got %v", err)
				require.Error(t, s.Err())
			} else {
				require.NoError(t, err)
				require.NoError(t, s.Err())
				if tc.delta < 0 {
					assert.Equal(t, expBefore, s.conn.Load().expStatSN.Load(), "ExpStatSN must not move back")
				}
				backing, p := sentinelBuf(1024)
				_, err = l.ReadAt(p, 0)
				require.NoError(t, err, "the session keeps working")
				requireGuards(t, backing, len(p))
				require.Equal(t, ft.diskBytes(0, 1024), p)
			}
			closePair(t, s, ft, before)
		})
	}
}

// ExpCmdSN/MaxCmdSN that move backwards, or a MaxCmdSN below ExpCmdSN-1,
// are ignored (RFC 7143 4.2.2.1): they must neither fail the session nor
// close the command window.
func TestHostileCmdWindowBackwards(t *testing.T) {
	for _, tc := range []struct {
		name     string
		exp, max func(cmdSN uint32) uint32 // from the command's CmdSN
	}{
		// If taken, these would close the window for the next command.
		{"both-back-window-closed", func(c uint32) uint32 { return c - 3 }, func(c uint32) uint32 { return c - 4 }},
		{"max-back-only", func(c uint32) uint32 { return c + 1 }, func(c uint32) uint32 { return c }},
		{"max-below-exp-minus-one", func(c uint32) uint32 { return c + 1 }, func(c uint32) uint32 { return c - 1 }},
		{"far-back", func(c uint32) uint32 { return c - 1<<30 }, func(c uint32) uint32 { return c - 1<<30 + 5 }},
		{"zero", func(c uint32) uint32 { return 0 }, func(c uint32) uint32 { return 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goroutines()
			var cmdSNs []uint32
			handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
				if h.Opcode() != pdu.OpSCSICommand || h[32] != 0x28 {
					return false
				}
				cmdSNs = append(cmdSNs, h.CmdSN())
				d := hDataIn(h.ITT(), 0, 0, 0x81)
				ft.mu.Lock()
				putWord(d[:], 24, ft.statSN)
				ft.statSN++
				ft.mu.Unlock()
				putWord(d[:], 28, tc.exp(h.CmdSN()))
				putWord(d[:], 32, tc.max(h.CmdSN()))
				lba, blocks := cdbLBA(h[32:48])
				ft.sendRaw(&d, ft.diskBytes(lba*ft.bs, blocks*ft.bs))
				return true
			}
			s, ft := newFakePair(t, testNeg, handle)
			l := fakeLUN(s, ft)
			for i := range 8 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				backing, p := sentinelBuf(512)
				_, err := l.ReadAtContext(ctx, p, int64(i)*512)
				cancel()
				require.NoError(t, err, "read %d: the backward window must be ignored", i)
				requireGuards(t, backing, len(p))
				require.Equal(t, ft.diskBytes(i*512, 512), p)
			}
			require.NoError(t, s.Err())
			require.Len(t, cmdSNs, 8)
			for i := 1; i < len(cmdSNs); i++ {
				assert.Equal(t, cmdSNs[i-1]+1, cmdSNs[i], "CmdSN sequence")
			}
			closePair(t, s, ft, before)
		})
	}
}

// R2T asking for data outside the write, beyond MaxBurstLength or
// otherwise malformed: the write fails with a ProtocolError, no Data-Out
// leaves for it, and the session is failed.
func TestHostileR2T(t *testing.T) {
	const size = 128 << 10
	neg := testNeg
	neg.ImmediateData = false
	neg.InitialR2T = true
	neg.MaxBurstLength = 64 << 10
	for _, tc := range []struct {
		name             string
		ttt, sn, off, ln uint32
	}{
		{"past-the-buffer", 1, 0, 0, size + 512},
		{"offset-past-the-buffer", 1, 0, size, 512},
		{"offset-wraps-uint32", 1, 0, 0xffffff00, 0x200},
		{"length-wraps-uint32", 1, 0, 512, 0xffffff00},
		{"beyond-MaxBurstLength", 1, 0, 0, 64<<10 + 512},
		{"zero-length", 1, 0, 0, 0},
		{"reserved-ttt", 0xffffffff, 0, 0, 512},
		{"r2tsn-skips", 1, 1, 0, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goroutines()
			handle := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
				if h.Opcode() != pdu.OpSCSICommand || h[32] != 0x2a {
					return false
				}
				var r pdu.BHS
				r[0] = byte(pdu.OpR2T)
				r[1] = 0x80
				r.SetITT(h.ITT())
				putWord(r[:], 20, tc.ttt)
				putWord(r[:], 36, tc.sn)
				putWord(r[:], 40, tc.off)
				putWord(r[:], 44, tc.ln)
				ft.send(&r, nil, false)
				return true
			}
			s, ft := newFakePair(t, neg, handle)
			l := fakeLUN(s, ft)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			start := time.Now()
			n, err := l.WriteAtContext(ctx, fill(size, 0x5a), 0)
			assert.Less(t, time.Since(start), 2*time.Second)
			assert.Equal(t, 0, n)
			_, isConn := errAs[*ConnectionError](err)
			_, isProto := errAs[*ProtocolError](err)
			require.True(t, isConn && isProto, "want ConnectionError wrapping ProtocolError, got %v", err)
			require.Error(t, s.Err())
			_ = ft.nc.Close()
			<-ft.done
			for _, h := range ft.received() {
				assert.NotEqual(t, pdu.OpDataOut, h.Opcode(), "Data-Out sent for a bad R2T")
			}
			closePair(t, s, ft, before)
		})
	}
}

// A target that stops answering in the full feature phase: the keepalive
// ends the session, or the caller's context ends the command (and the
// unanswered ABORT TASK then drops the connection), within bounded time.
func TestHostileTargetSilentInFFP(t *testing.T) {
	silent := func(ft *fakeTarget, h *pdu.BHS, data []byte) bool {
		return h.Opcode() != pdu.OpLogoutRequest // swallow everything but logout
	}
	t.Run("nop-timeout", func(t *testing.T) {
		before := goroutines()
		s, ft := newFakePair(t, testNeg, silent, WithNOP(100*time.Millisecond, 200*time.Millisecond))
		l := fakeLUN(s, ft)
		backing, p := sentinelBuf(1024)
		start := time.Now()
		n, err := l.ReadAt(p, 0) // no context: only the keepalive can end it
		elapsed := time.Since(start)
		assert.Equal(t, 0, n)
		ce, ok := errAs[*ConnectionError](err)
		require.True(t, ok, "want ConnectionError, got %v", err)
		assert.Equal(t, "keepalive", ce.Op)
		assert.Less(t, elapsed, 1500*time.Millisecond)
		requireGuards(t, backing, len(p))
		assert.True(t, allSentinel(p))
		require.Error(t, s.Err())
		closePair(t, s, ft, before)
	})
	t.Run("ctx-deadline", func(t *testing.T) {
		before := goroutines()
		s, ft := newFakePair(t, testNeg, silent, WithTMFTimeout(200*time.Millisecond))
		l := fakeLUN(s, ft)
		backing, p := sentinelBuf(1024)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		n, err := l.ReadAtContext(ctx, p, 0)
		elapsed := time.Since(start)
		assert.Equal(t, 0, n)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Less(t, elapsed, 1500*time.Millisecond)
		requireGuards(t, backing, len(p))
		require.Error(t, s.Err(), "an unanswered abort must drop the connection")
		closePair(t, s, ft, before)
	})
}

var _ = errors.New
