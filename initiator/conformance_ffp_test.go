package initiator_test

// UNH-IOL iSCSI initiator full feature phase test plan, wire-level tests.
// Test names carry the plan's test numbers; docs/conformance.md maps every
// test of the plan to these (or says why it does not apply).

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gosan/iscsi/initiator"
	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/gosan/iscsi/pdu"
	"github.com/gosan/iscsi/scsi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loginFinal returns the final Login Request and Login Response of
// connection idx.
func loginFinal(t *testing.T, rec *recorder, idx int) (req, resp wirePDU) {
	t.Helper()
	reqs := rec.sent(idx, pdu.OpLoginRequest)
	resps := rec.got(idx, pdu.OpLoginResponse)
	require.NotEmpty(t, reqs)
	require.NotEmpty(t, resps)
	return reqs[len(reqs)-1], resps[len(resps)-1]
}

// checkNumbering checks UNH 1.1, 2.2, 15.1, 15.2, 19.1: from the login on,
// every non-immediate request takes the next CmdSN and immediate requests
// carry the current CmdSN without advancing it.
func checkNumbering(t *testing.T, rec *recorder, idx int) {
	t.Helper()
	ps := rec.pdus(idx)
	req, _ := loginFinal(t, rec, idx)
	cur := req.u32(24) // the leading login's CmdSN is the first command's
	n := 0
	for _, p := range ps {
		if !p.out {
			continue
		}
		switch p.op() {
		case pdu.OpSCSICommand, pdu.OpTaskMgmtRequest, pdu.OpTextRequest, pdu.OpLogoutRequest, pdu.OpNOPOut:
		default:
			continue
		}
		require.Equal(t, cur, p.u32(24), "PDU %d (%v, I=%v): CmdSN", n, p.op(), p.bhs().Immediate())
		if !p.bhs().Immediate() {
			cur++
		}
		n++
	}
	require.Positive(t, n, "no numbered requests")
}

// lastStatSN returns the last StatSN the initiator received before PDU
// index upto (in rec.pdus order) on a PDU carrying one.
func lastStatSN(ps []wirePDU, upto int) (uint32, bool) {
	var sn uint32
	ok := false
	for i := 0; i < upto; i++ {
		p := ps[i]
		if p.out {
			continue
		}
		switch p.op() {
		case pdu.OpSCSIResponse, pdu.OpTaskMgmtResponse, pdu.OpTextResponse, pdu.OpLogoutResponse,
			pdu.OpLoginResponse, pdu.OpAsyncMessage, pdu.OpReject, pdu.OpR2T:
			sn, ok = p.u32(24), true
		case pdu.OpDataIn:
			if p.raw[1]&0x01 != 0 {
				sn, ok = p.u32(24), true
			}
		case pdu.OpNOPIn:
			if p.u32(20) != pdu.ReservedTag || p.u32(16) != pdu.ReservedTag {
				sn, ok = p.u32(24), true
			}
		}
	}
	return sn, ok
}

// checkExpStatSN checks UNH 5.1 (tracking side) and 16.1: every request
// acknowledges the status seen so far (ExpStatSN = last StatSN + 1, R2T's
// StatSN is not a new status but equal to the next one, so >= is checked
// for it by the same rule).
func checkExpStatSN(t *testing.T, rec *recorder, idx int) {
	t.Helper()
	ps := rec.pdus(idx)
	for i, p := range ps {
		if !p.out || p.op() == pdu.OpLoginRequest {
			continue
		}
		sn, ok := lastStatSN(ps, i)
		if !ok {
			continue
		}
		// Reads are buffered ahead of processing, so the initiator may not
		// have seen everything that crossed the socket before it wrote.
		exp := p.u32(28)
		require.True(t, pdu.SerialLessEq(exp, sn+1), "PDU %d %v: ExpStatSN %d ahead of last StatSN %d + 1", i, p.op(), exp, sn)
	}
	// After the session is quiet the last request acknowledges everything.
}

// writeSeq is a write command's PDUs on the wire.
type writeSeq struct {
	cmd     wirePDU
	c       *pdu.SCSICommand
	unsol   []*pdu.DataOut
	byTTT   map[uint32][]*pdu.DataOut
	r2ts    []*pdu.R2T
	r2tPos  map[uint32]int // position of the R2T in pdus order
	dataPos map[uint32]int // position of the first Data-Out of the TTT
	order   []uint32       // TTTs in the order their first Data-Out left
}

func collectWrites(t *testing.T, ps []wirePDU) []*writeSeq {
	t.Helper()
	byITT := map[uint32]*writeSeq{}
	var res []*writeSeq
	for i, p := range ps {
		switch {
		case p.out && p.op() == pdu.OpSCSICommand:
			c := p.msg.(*pdu.SCSICommand)
			if !c.Write {
				continue
			}
			w := &writeSeq{cmd: p, c: c, byTTT: map[uint32][]*pdu.DataOut{}, r2tPos: map[uint32]int{}, dataPos: map[uint32]int{}}
			byITT[c.ITT] = w
			res = append(res, w)
		case !p.out && p.op() == pdu.OpR2T:
			r := p.msg.(*pdu.R2T)
			if w := byITT[r.ITT]; w != nil {
				w.r2ts = append(w.r2ts, r)
				w.r2tPos[r.TTT] = i
			}
		case p.out && p.op() == pdu.OpDataOut:
			d := p.msg.(*pdu.DataOut)
			w := byITT[d.ITT]
			require.NotNil(t, w, "Data-Out for ITT %#x without a write command", d.ITT)
			if d.TTT == pdu.ReservedTag {
				w.unsol = append(w.unsol, d)
				continue
			}
			if _, seen := w.dataPos[d.TTT]; !seen {
				w.dataPos[d.TTT] = i
				w.order = append(w.order, d.TTT)
			}
			w.byTTT[d.TTT] = append(w.byTTT[d.TTT], d)
		}
	}
	return res
}

// checkWrites applies RFC 7143's data transfer rules to every write on
// connection idx (UNH 6.1, 8.x, 9.1, 11.x, 12.1-12.3, 16.2.x, 16.3.1,
// 16.6) given the negotiated parameters, and that the target got the data.
func checkWrites(t *testing.T, cs *confSession, idx int) []*writeSeq {
	t.Helper()
	neg := cs.s.Negotiated()
	maxX := int(neg.MaxXmitDataSegmentLength)
	fb := int(neg.FirstBurstLength)
	ps := cs.rec.pdus(idx)
	ws := collectWrites(t, ps)
	for wi, w := range ws {
		c := w.c
		edtl := int(c.ExpectedDataTransferLength)
		name := fmt.Sprintf("write %d (ITT %#x, EDTL %d)", wi, c.ITT, edtl)
		require.True(t, c.Write && !c.Read, "%s: W=1 R=0", name)
		imm := len(c.Data)
		if !neg.ImmediateData {
			require.Zero(t, imm, "%s: immediate data with ImmediateData=No", name)
		}
		require.LessOrEqual(t, imm, min(fb, maxX, edtl), "%s: immediate data beyond FirstBurstLength/MaxRecvDataSegmentLength/EDTL", name)
		if imm == edtl {
			require.True(t, c.Final, "%s: all data immediate but F=0", name)
		}
		// Unsolicited Data-Out.
		if neg.InitialR2T || c.Final {
			require.Empty(t, w.unsol, "%s: unsolicited Data-Out with InitialR2T=Yes or F=1 on the command", name)
			if neg.InitialR2T {
				require.True(t, c.Final, "%s: F=0 on the command with InitialR2T=Yes", name)
			}
		} else {
			require.NotEmpty(t, w.unsol, "%s: F=0 on the command but no unsolicited Data-Out", name)
			off := imm
			for i, d := range w.unsol {
				require.Equal(t, uint32(i), d.DataSN, "%s: unsolicited DataSN", name)
				require.Equal(t, uint32(off), d.BufferOffset, "%s: unsolicited BufferOffset", name)
				require.LessOrEqual(t, len(d.Data), maxX, "%s: unsolicited Data-Out beyond the target's MaxRecvDataSegmentLength", name)
				require.Equal(t, i == len(w.unsol)-1, d.Final, "%s: F bit of unsolicited Data-Out %d", name, i)
				require.Equal(t, c.LUN, d.LUN, "%s: LUN of unsolicited Data-Out", name)
				off += len(d.Data)
			}
			require.Equal(t, min(fb, edtl), off, "%s: unsolicited data must be FirstBurstLength or all the data", name)
		}
		// Solicited Data-Out: each R2T answered after it arrived, DataSN
		// from 0, contiguous increasing offsets inside the R2T, F on the
		// last, TTT and LUN echoed.
		covered := imm
		for _, d := range w.unsol {
			covered += len(d.Data)
		}
		for _, r := range w.r2ts {
			ds := w.byTTT[r.TTT]
			require.NotEmpty(t, ds, "%s: R2T TTT %#x not answered", name, r.TTT)
			require.Greater(t, w.dataPos[r.TTT], w.r2tPos[r.TTT], "%s: Data-Out for TTT %#x before its R2T", name, r.TTT)
			off := r.BufferOffset
			for i, d := range ds {
				require.Equal(t, uint32(i), d.DataSN, "%s: DataSN in the sequence of TTT %#x", name, r.TTT)
				require.Equal(t, off, d.BufferOffset, "%s: BufferOffset in the sequence of TTT %#x", name, r.TTT)
				require.LessOrEqual(t, len(d.Data), maxX, "%s: Data-Out beyond the target's MaxRecvDataSegmentLength", name)
				require.Equal(t, i == len(ds)-1, d.Final, "%s: F bit of Data-Out %d of TTT %#x", name, i, r.TTT)
				require.Equal(t, c.LUN, d.LUN, "%s: LUN of Data-Out", name)
				off += uint32(len(d.Data))
			}
			require.Equal(t, r.BufferOffset+r.DesiredDataTransferLength, off, "%s: sequence of TTT %#x must cover the R2T exactly", name, r.TTT)
			covered += int(r.DesiredDataTransferLength)
		}
		for ttt := range w.byTTT {
			_, ok := w.r2tPos[ttt]
			require.True(t, ok, "%s: Data-Out with TTT %#x that no R2T gave", name, ttt)
		}
		require.Equal(t, edtl, covered, "%s: data sent does not cover the transfer", name)
		// R2Ts answered in the order they arrived (12.3, 12.4 within a task).
		var want []uint32
		for _, r := range w.r2ts {
			want = append(want, r.TTT)
		}
		require.Equal(t, want, w.order, "%s: R2Ts not answered in arrival order", name)
	}
	return ws
}

// TestUNH_DataTransfer covers the write-side tests of the plan: each case is
// the plan's negotiation; every write is checked by checkWrites and on the
// target's medium.
func TestUNH_DataTransfer(t *testing.T) {
	no, yes := iscsitest.Bool(false), iscsitest.Bool(true)
	cases := []struct {
		name  string // UNH test numbers
		neg   iscsitest.Negotiation
		opts  []initiator.Option
		sizes []int
		check func(t *testing.T, ws []*writeSeq)
	}{
		{name: "8.1 FB512 MB1024 InitialR2T=No ImmediateData=Yes",
			neg:   iscsitest.Negotiation{FirstBurstLength: 512, MaxBurstLength: 1024, InitialR2T: no, ImmediateData: yes},
			opts:  []initiator.Option{initiator.WithInitialR2T(false), initiator.WithImmediateData(true)},
			sizes: []int{512, 4096, 8192}},
		{name: "8.2 FB512 MB1024 InitialR2T=Yes ImmediateData=No",
			neg:   iscsitest.Negotiation{FirstBurstLength: 512, MaxBurstLength: 1024, InitialR2T: yes, ImmediateData: no},
			opts:  []initiator.Option{initiator.WithImmediateData(false)},
			sizes: []int{512, 4096}},
		{name: "8.3 FB512 MB1024 InitialR2T=No ImmediateData=No",
			neg:   iscsitest.Negotiation{FirstBurstLength: 512, MaxBurstLength: 1024, InitialR2T: no, ImmediateData: no},
			opts:  []initiator.Option{initiator.WithInitialR2T(false), initiator.WithImmediateData(false)},
			sizes: []int{512, 4096},
			check: func(t *testing.T, ws []*writeSeq) {
				for _, w := range ws {
					require.NotEmpty(t, w.unsol, "8.3: the unsolicited burst goes in separate Data-Out PDUs")
				}
			}},
		{name: "9.1 11.3 11.4 12.2 6.1 MRDSL1024 MB2048 InitialR2T=Yes ImmediateData=No",
			neg: iscsitest.Negotiation{MaxRecvDataSegmentLength: 1024, DeclareMaxRecvDataSegmentLength: true,
				FirstBurstLength: 65536, MaxBurstLength: 2048, InitialR2T: yes, ImmediateData: no},
			opts:  []initiator.Option{initiator.WithImmediateData(false)},
			sizes: []int{8192, 4096},
			check: func(t *testing.T, ws []*writeSeq) {
				for _, w := range ws {
					require.Len(t, w.r2ts, int(w.c.ExpectedDataTransferLength)/2048)
					for _, r := range w.r2ts {
						require.Len(t, w.byTTT[r.TTT], 2, "a 2048-byte R2T takes two 1024-byte Data-Out")
					}
				}
				require.NotEqual(t, ws[0].c.ITT, ws[1].c.ITT, "6.1: second write has a new ITT")
			}},
		{name: "11.1.1 target MRDSL512 InitialR2T=No ImmediateData=Yes FB65536",
			neg: iscsitest.Negotiation{MaxRecvDataSegmentLength: 512, DeclareMaxRecvDataSegmentLength: true,
				FirstBurstLength: 65536, MaxBurstLength: 262144, InitialR2T: no, ImmediateData: yes},
			opts:  []initiator.Option{initiator.WithInitialR2T(false)},
			sizes: []int{4096, 131072}},
		{name: "11.2.1 16.2.4 InitialR2T=No ImmediateData=Yes FB65536",
			neg:   iscsitest.Negotiation{FirstBurstLength: 65536, MaxBurstLength: 262144, InitialR2T: no, ImmediateData: yes},
			opts:  []initiator.Option{initiator.WithInitialR2T(false)},
			sizes: []int{4096, 65536, 300 * 1024}},
		{name: "11.2.2 12.1 16.2.2 16.3.1 InitialR2T=Yes ImmediateData=No MB65536",
			neg:   iscsitest.Negotiation{FirstBurstLength: 65536, MaxBurstLength: 65536, InitialR2T: yes, ImmediateData: no},
			opts:  []initiator.Option{initiator.WithImmediateData(false)},
			sizes: []int{2048, 65536, 131072},
			check: func(t *testing.T, ws []*writeSeq) {
				for _, w := range ws {
					require.Empty(t, w.c.Data)
				}
			}},
		{name: "12.1 single Data-Out per R2T: MRDSL8192 MB2048",
			neg: iscsitest.Negotiation{MaxRecvDataSegmentLength: 8192, DeclareMaxRecvDataSegmentLength: true,
				MaxBurstLength: 2048, FirstBurstLength: 2048, InitialR2T: yes, ImmediateData: no},
			opts:  []initiator.Option{initiator.WithImmediateData(false)},
			sizes: []int{8192},
			check: func(t *testing.T, ws []*writeSeq) {
				for _, r := range ws[0].r2ts {
					ds := ws[0].byTTT[r.TTT]
					require.Len(t, ds, 1)
					require.Equal(t, r.BufferOffset, ds[0].BufferOffset)
					require.Equal(t, int(r.DesiredDataTransferLength), len(ds[0].Data))
				}
			}},
		{name: "12.3 MaxOutstandingR2T=4 MB1024",
			neg:   iscsitest.Negotiation{MaxBurstLength: 1024, FirstBurstLength: 1024, MaxOutstandingR2T: 4, InitialR2T: yes, ImmediateData: no},
			opts:  []initiator.Option{initiator.WithImmediateData(false)},
			sizes: []int{8192}},
		{name: "16.2.1 InitialR2T=Yes ImmediateData=Yes FB16777215",
			neg:   iscsitest.Negotiation{FirstBurstLength: 16777215, MaxBurstLength: 16777215, InitialR2T: yes, ImmediateData: yes},
			sizes: []int{512, 8192},
			check: func(t *testing.T, ws []*writeSeq) {
				for _, w := range ws {
					require.Len(t, w.c.Data, int(w.c.ExpectedDataTransferLength), "all fits in immediate data")
					require.True(t, w.c.Final)
				}
			}},
		{name: "16.2.3 InitialR2T=No ImmediateData=No",
			neg:   iscsitest.Negotiation{InitialR2T: no, ImmediateData: no},
			opts:  []initiator.Option{initiator.WithInitialR2T(false), initiator.WithImmediateData(false)},
			sizes: []int{4096, 200 * 1024}},
		{name: "16.6 InitialR2T=Yes ImmediateData=Yes EDTL>FB",
			neg:   iscsitest.Negotiation{FirstBurstLength: 4096, MaxBurstLength: 8192, InitialR2T: yes, ImmediateData: yes},
			sizes: []int{32768},
			check: func(t *testing.T, ws []*writeSeq) {
				w := ws[0]
				require.Len(t, w.c.Data, 4096, "immediate data is FirstBurstLength (< target MRDSL 8192)")
				require.True(t, w.c.Final)
				require.Empty(t, w.unsol)
				require.NotEmpty(t, w.r2ts)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := confServer(t, tc.neg)
			cs := confDial(t, srv, tc.opts...)
			off := int64(0)
			for i, n := range tc.sizes {
				data := pattern(n, byte(i+1))
				_, err := cs.lun.WriteAt(data, off)
				require.NoError(t, err)
				got, err := srv.LUNData(confIQN, 1)
				require.NoError(t, err)
				require.True(t, bytes.Equal(data, got[off:off+int64(n)]), "medium differs after write of %d", n)
				off += int64(n)
			}
			ws := checkWrites(t, cs, 0)
			total := 0
			for _, w := range ws {
				total += int(w.c.ExpectedDataTransferLength)
			}
			require.Equal(t, off, int64(total), "the writes' EDTLs add up to what was written")
			if tc.check != nil {
				tc.check(t, ws)
			}
			checkNumbering(t, cs.rec, 0)
			checkExpStatSN(t, cs.rec, 0)
			noViolations(t, srv)
		})
	}
}

// 12.4: two writes in parallel; Data-Out follows R2T arrival order across
// tasks.
func TestUNH12_4_ParallelWrites(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{MaxBurstLength: 4096, FirstBurstLength: 4096, ImmediateData: iscsitest.Bool(false)})
	cs := confDial(t, srv, initiator.WithImmediateData(false))
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := cs.lun.WriteAt(pattern(16384, byte(i)), int64(i)*16384)
			assert.NoError(t, err)
		}(i)
	}
	wg.Wait()
	checkWrites(t, cs, 0)
	// Across tasks: the first Data-Out of each R2T leaves in R2T order.
	ps := cs.rec.pdus(0)
	var r2tOrder, dataOrder []uint32
	seen := map[uint32]bool{}
	for _, p := range ps {
		if !p.out && p.op() == pdu.OpR2T {
			r2tOrder = append(r2tOrder, p.u32(20))
		}
		if p.out && p.op() == pdu.OpDataOut && !seen[p.u32(20)] {
			seen[p.u32(20)] = true
			dataOrder = append(dataOrder, p.u32(20))
		}
	}
	require.Len(t, r2tOrder, 16)
	require.Equal(t, r2tOrder, dataOrder, "R2Ts on a connection are answered in the order they arrived")
	noViolations(t, srv)
}

// 1.1, 16.1.1, 16.1.2: command numbering from login, first command fields,
// task attribute, LUN encoding, reserved fields.
func TestUNH16_1_SCSICommandFields(t *testing.T) {
	for _, imm := range []bool{true, false} {
		t.Run(fmt.Sprintf("ImmediateData=%v", imm), func(t *testing.T) {
			srv := confServer(t, iscsitest.Negotiation{ImmediateData: iscsitest.Bool(imm)})
			cs := confDial(t, srv, initiator.WithImmediateData(imm))
			_, err := cs.lun.WriteAt(pattern(4096, 1), 0)
			require.NoError(t, err)
			_, err = cs.lun.ReadAt(make([]byte, 4096), 0)
			require.NoError(t, err)

			req, resp := loginFinal(t, cs.rec, 0)
			loginITT := req.u32(16)
			all := cs.rec.pdus(0)
			cmds := scsiCmds(t, all)
			require.NotEmpty(t, cmds)
			first := cmds[0]
			require.Equal(t, resp.u32(28), first.CmdSN, "16.1: first CmdSN = ExpCmdSN of the final Login Response")
			require.Equal(t, resp.u32(24)+1, first.ExpStatSN, "16.1: first ExpStatSN = StatSN of the final Login Response + 1")
			require.NotEqual(t, loginITT, first.ITT, "16.1: ITT differs from the login's")
			checkNumbering(t, cs.rec, 0)
			checkExpStatSN(t, cs.rec, 0)

			itts := map[uint32]bool{}
			for _, p := range filter(all, true, pdu.OpSCSICommand) {
				c := p.msg.(*pdu.SCSICommand)
				require.False(t, itts[c.ITT], "ITT %#x reused while... (all commands here complete one at a time, so reuse is only legal after completion)", c.ITT)
				itts[c.ITT] = true
				require.NotEqual(t, pdu.ReservedTag, c.ITT)
				require.Zero(t, p.raw[4], "TotalAHSLength: no extended CDB for CDBs of 16 bytes or less")
				require.Equal(t, len(c.Data), p.dsl(), "DataSegmentLength is the immediate data")
				require.Zero(t, p.raw[1]&0x18, "byte 1 bits 3-4 reserved")
				require.Zero(t, p.raw[2]|p.raw[3], "bytes 2-3 reserved")
				require.Equal(t, pdu.AttrSimple, c.Attr, "task attribute SIMPLE")
				require.Equal(t, scsi.EncodeLUN(1), c.LUN, "LUN 1 in SAM flat/peripheral encoding")
				require.Equal(t, uint64(0x0001000000000000), c.LUN, "LUN 1 on the wire")
				require.False(t, c.Read && c.Write)
				if c.ExpectedDataTransferLength > 0 {
					require.True(t, c.Read || c.Write, "R or W set when data is expected")
				}
				require.False(t, c.Immediate, "SCSI commands are never immediate")
				if !imm {
					require.Zero(t, p.dsl(), "16.1.2: no data with ImmediateData=No")
				}
			}
			// Reserved fields of Data-Out: bytes 2-3, 4 (no AHS), 24-27, 32-35, 44-47; byte 1 only F.
			for _, p := range filter(all, true, pdu.OpDataOut) {
				require.Zero(t, p.raw[1]&0x7f, "Data-Out byte 1: only F")
				require.Zero(t, p.raw[2]|p.raw[3]|p.raw[4], "Data-Out bytes 2-4")
				require.Zero(t, p.u32(24), "Data-Out bytes 24-27 reserved")
				require.Zero(t, p.u32(32), "Data-Out bytes 32-35 reserved")
				require.Zero(t, p.u32(44), "Data-Out bytes 44-47 reserved")
			}
			noViolations(t, srv)
		})
	}
}

// 3.1, 16.5: the login grants a window of one; a response then carries
// MaxCmdSN = ExpCmdSN-1 (ExpCmdSN = MaxCmdSN+1: window closed). No command
// may leave until a NOP-In raises MaxCmdSN. (A target cannot shrink a
// window it granted: RFC 7143 4.2.2.1 has the initiator ignore a smaller
// MaxCmdSN, so the window is closed by consuming it.)
func TestUNH3_1_16_5_WindowClosed(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{CmdWindow: 1})
	cs := confDial(t, srv)
	// The read's status carries MaxCmdSN = ExpCmdSN-1. (iscsitest's
	// SetCmdWindow(0) would instead shrink the granted window and ignore
	// the command the initiator may still send.)
	mutateOnce(srv, func(hdr, _ []byte) bool {
		op := pdu.Opcode(hdr[0] & 0x3f)
		if op != pdu.OpSCSIResponse && !(op == pdu.OpDataIn && hdr[1]&0x01 != 0) {
			return false
		}
		binary.BigEndian.PutUint32(hdr[32:], binary.BigEndian.Uint32(hdr[28:])-1)
		return true
	})
	_, err := cs.lun.ReadAt(make([]byte, 512), 0)
	require.NoError(t, err, "the granted slot is still usable")
	before := count(cs.rec.sent(0), pdu.OpSCSICommand)
	done := make(chan error, 1)
	go func() {
		_, err := cs.lun.ReadAt(make([]byte, 512), 0)
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, before, count(cs.rec.sent(0), pdu.OpSCSICommand), "a command left while the window was closed")
	select {
	case err := <-done:
		t.Fatalf("read finished with the window closed: %v", err)
	default:
	}
	srv.SetCmdWindow(4) // NOP-In with MaxCmdSN = ExpCmdSN+3
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("read did not proceed after the NOP-In opened the window")
	}
	ps := cs.rec.pdus(0)
	var nopAt, cmdAt int
	for i, p := range ps {
		if !p.out && p.op() == pdu.OpNOPIn {
			nopAt = i
		}
		if p.out && p.op() == pdu.OpSCSICommand {
			cmdAt = i
		}
	}
	require.Greater(t, cmdAt, nopAt, "the command left only after the NOP-In")
	checkNumbering(t, cs.rec, 0)
	noViolations(t, srv)
}

// 3.3: with a window of one, one command at a time.
func TestUNH3_3_WindowOfOne(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{CmdWindow: 1})
	cs := confDial(t, srv)
	before := count(cs.rec.sent(0), pdu.OpSCSICommand)
	stall(t, cs)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := cs.lun.ReadAt(make([]byte, 512), int64(i)*512)
			assert.NoError(t, err)
		}(i)
	}
	cs.rec.waitSent(t, 0, "one command", func(ps []wirePDU) bool { return count(ps, pdu.OpSCSICommand) > before })
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, before+1, count(cs.rec.sent(0), pdu.OpSCSICommand), "more than one command in a window of one")
	srv.Faults().Release()
	wg.Wait()
	checkNumbering(t, cs.rec, 0)
	noViolations(t, srv)
}

// 3.2: a large window lets several commands leave before any answer.
func TestUNH3_2_WindowMany(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{CmdWindow: 100})
	cs := confDial(t, srv)
	before := count(cs.rec.sent(0), pdu.OpSCSICommand)
	stall(t, cs)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := cs.lun.ReadAt(make([]byte, 4096), int64(i)*4096)
			assert.NoError(t, err)
		}(i)
	}
	cs.rec.waitSent(t, 0, "8 commands before any response", func(ps []wirePDU) bool { return count(ps, pdu.OpSCSICommand) >= before+8 })
	srv.Faults().Release()
	wg.Wait()
	checkNumbering(t, cs.rec, 0)
	noViolations(t, srv)
}

// stall makes the target stop reading. iscsitest checks its stall before
// reading the next PDU, so a connection already blocked in a read handles
// one more PDU: a ping sent now is that PDU (or, if the connection had not
// yet gone back to reading, it waits with everything else until Release).
// The ping runs in the background so that neither case blocks the test.
func stall(t *testing.T, cs *confSession) {
	t.Helper()
	nops := count(cs.rec.sent(0), pdu.OpNOPOut)
	cs.srv.Faults().StallUntilReleased()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cs.s.Ping(ctx)
	}()
	cs.rec.waitSent(t, 0, "the stall ping", func(ps []wirePDU) bool { return count(ps, pdu.OpNOPOut) > nops })
	time.Sleep(20 * time.Millisecond) // let the target read it if it is going to
}

// mutateOnce installs a MutateOutgoing hook that applies f to the first
// PDU for which f returns true.
func mutateOnce(srv *iscsitest.Server, f func(hdr, data []byte) bool) {
	var mu sync.Mutex
	done := false
	srv.Faults().MutateOutgoing(func(hdr, data []byte) []byte {
		mu.Lock()
		defer mu.Unlock()
		if !done && f(hdr, data) {
			done = true
		}
		return data
	})
}

// 5.1: a StatSN 2^31 away from ExpStatSN must make the initiator recover
// (at ERL 0: fail the connection/session), not carry on.
func TestUNH5_1_StatSNFarOff(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	cs := confDial(t, srv)
	mutateOnce(srv, func(hdr, _ []byte) bool {
		if pdu.Opcode(hdr[0]&0x3f) != pdu.OpSCSIResponse && !(pdu.Opcode(hdr[0]&0x3f) == pdu.OpDataIn && hdr[1]&1 != 0) {
			return false
		}
		binary.BigEndian.PutUint32(hdr[24:], binary.BigEndian.Uint32(hdr[24:])+1<<31)
		return true
	})
	_, err := cs.lun.ReadAt(make([]byte, 512), 0)
	// The read itself may complete (the status arrived); what must not
	// happen is the session going on as if nothing were wrong.
	_, err2 := cs.lun.ReadAt(make([]byte, 512), 0)
	require.True(t, err != nil || err2 != nil || cs.s.Err() != nil,
		"StatSN jumped by 2^31 and the initiator carried on (RFC 7143 4.2.2.2: MUST undertake recovery)")
}

// 10.1: status in the last Data-In (S=1, F=1) completes a read; the next
// command goes out without a SCSI Response.
func TestUNH10_1_StatusInDataIn(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	cs := confDial(t, srv, initiator.WithMaxRecvDataSegmentLength(4096))
	want := pattern(65536, 9)
	require.NoError(t, srv.WriteLUN(confIQN, 1, 0, want))
	got := make([]byte, 65536)
	_, err := cs.lun.ReadAt(got, 0)
	require.NoError(t, err)
	require.Equal(t, want, got)
	_, err = cs.lun.ReadAt(got[:512], 0)
	require.NoError(t, err)
	ps := cs.rec.pdus(0)
	cmds := filter(ps, true, pdu.OpSCSICommand)
	last2 := cmds[len(cmds)-2:]
	itt := last2[0].u32(16)
	var dataIns []wirePDU
	for _, p := range filter(ps, false, pdu.OpDataIn) {
		if p.u32(16) == itt {
			dataIns = append(dataIns, p)
		}
	}
	require.Len(t, dataIns, 16, "64 KiB at our MaxRecvDataSegmentLength of 4 KiB")
	for i, d := range dataIns {
		require.LessOrEqual(t, d.dsl(), 4096)
		require.Equal(t, i == 15, d.raw[1]&0x01 != 0, "S bit only on the last")
	}
	for _, p := range filter(ps, false, pdu.OpSCSIResponse) {
		require.NotEqual(t, itt, p.u32(16), "no SCSI Response expected for the read")
	}
	noViolations(t, srv)
}

// 11.1.2: a Data-In with DataSegmentLength 0 (carrying status) is not an
// error. The target's SCSI Response to TEST UNIT READY is rewritten into
// an equivalent Data-In with S=1 F=1 and no data.
func TestUNH11_1_2_ZeroLengthDataIn(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	cs := confDial(t, srv)
	mutateOnce(srv, func(hdr, data []byte) bool {
		if pdu.Opcode(hdr[0]&0x3f) != pdu.OpSCSIResponse || hdr[3] != 0 || len(data) != 0 {
			return false
		}
		hdr[0] = byte(pdu.OpDataIn)
		hdr[1] = 0x80 | 0x01 // F, S
		hdr[2] = 0
		binary.BigEndian.PutUint32(hdr[20:], pdu.ReservedTag) // TTT
		binary.BigEndian.PutUint32(hdr[36:], 0)               // DataSN
		binary.BigEndian.PutUint32(hdr[40:], 0)               // BufferOffset
		binary.BigEndian.PutUint32(hdr[44:], 0)               // residual
		return true
	})
	res, err := cs.lun.Execute(ctxT(t, 5*time.Second), []byte{0x00, 0, 0, 0, 0, 0}, nil, nil) // TEST UNIT READY
	require.NoError(t, err)
	require.Equal(t, scsi.StatusGood, res.Status)
	require.NotEmpty(t, filter(cs.rec.pdus(0), false, pdu.OpDataIn), "the rewritten Data-In reached the initiator")
	_, err = cs.lun.ReadAt(make([]byte, 512), 0)
	require.NoError(t, err, "session usable afterwards")
	require.NoError(t, cs.s.Err())
}

// 14.1, 17.1, 20.1: the target asks for logout; the initiator logs out in
// time with the right fields and sends nothing after the Logout Request.
func TestUNH14_1_AsyncLogoutRequest(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{ImmediateData: iscsitest.Bool(false)})
	cs := confDial(t, srv, initiator.WithImmediateData(false))
	_, err := cs.lun.WriteAt(pattern(4096, 3), 0)
	require.NoError(t, err)
	start := time.Now()
	require.Equal(t, 1, srv.SendAsync(pdu.AsyncLogoutRequest, 0, 0, 1))
	ps := cs.rec.waitSent(t, 0, "a Logout Request", func(ps []wirePDU) bool { return count(ps, pdu.OpLogoutRequest) > 0 })
	require.Less(t, time.Since(start), time.Second, "20.1: logout within Parameter3 = 1 s")
	all := cs.rec.pdus(0)
	var lo wirePDU
	var at int
	for i, p := range all {
		if p.out && p.op() == pdu.OpLogoutRequest {
			lo, at = p, i
			break
		}
	}
	req := lo.msg.(*pdu.LogoutRequest)
	require.Contains(t, []pdu.LogoutReason{pdu.LogoutCloseSession, pdu.LogoutCloseConnection}, req.Reason)
	loginReq, _ := loginFinal(t, cs.rec, 0)
	if req.Reason != pdu.LogoutCloseSession {
		require.Equal(t, binary.BigEndian.Uint16(loginReq.raw[20:]), req.CID, "CID of this connection")
	}
	sn, ok := lastStatSN(all, at)
	require.True(t, ok)
	require.Equal(t, sn+1, req.ExpStatSN, "ExpStatSN acknowledges the Async Message")
	require.Zero(t, lo.raw[4], "TotalAHSLength 0")
	require.Zero(t, lo.dsl(), "DataSegmentLength 0")
	require.True(t, req.Immediate || true) // either is legal
	require.NotEqual(t, pdu.ReservedTag, req.ITT)
	_ = ps
	// 17.1: nothing but the logout after the Logout Request, and the
	// connection ends.
	require.Eventually(t, func() bool { return cs.s.Err() != nil }, 3*time.Second, 10*time.Millisecond, "session still usable after the target-requested logout")
	after := cs.rec.sent(0)
	var tail []pdu.Opcode
	seenLogout := false
	for _, p := range after {
		if p.op() == pdu.OpLogoutRequest {
			seenLogout = true
			continue
		}
		if seenLogout {
			tail = append(tail, p.op())
		}
	}
	require.Empty(t, tail, "requests after the Logout Request")
	_, err = cs.lun.ReadAt(make([]byte, 512), 0)
	require.Error(t, err)
	checkNumbering(t, cs.rec, 0)
}

// 15.1: NOP-In pings (valid TTT) are answered with a NOP-Out copying TTT
// and LUN, ITT 0xffffffff, I=1, no data, CmdSN not advanced.
func TestUNH15_1_NOPInAnswered(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	cs := confDial(t, srv)
	// Give the pings a LUN so that copying it is observable.
	srv.Faults().MutateOutgoing(func(hdr, data []byte) []byte {
		if pdu.Opcode(hdr[0]&0x3f) == pdu.OpNOPIn && binary.BigEndian.Uint32(hdr[20:]) != pdu.ReservedTag {
			binary.BigEndian.PutUint64(hdr[8:], 0x0001000000000000)
		}
		return data
	})
	srv.Faults().PingEvery(30 * time.Millisecond)
	cs.rec.waitSent(t, 0, "3 NOP-Out answers", func(ps []wirePDU) bool { return count(ps, pdu.OpNOPOut) >= 3 })
	srv.Faults().PingEvery(0)
	_, err := cs.lun.ReadAt(make([]byte, 512), 0)
	require.NoError(t, err)
	pings := map[uint32]bool{}
	for _, p := range cs.rec.got(0, pdu.OpNOPIn) {
		if p.u32(20) != pdu.ReservedTag {
			pings[p.u32(20)] = true
		}
	}
	nops := cs.rec.sent(0, pdu.OpNOPOut)
	require.GreaterOrEqual(t, len(nops), 3)
	for _, p := range nops {
		require.True(t, pings[p.u32(20)], "NOP-Out TTT %#x copies a NOP-In's", p.u32(20))
		require.Equal(t, uint64(0x0001000000000000), binary.BigEndian.Uint64(p.raw[8:]), "LUN copied from the NOP-In")
		require.Equal(t, pdu.ReservedTag, p.u32(16), "ITT 0xffffffff")
		require.True(t, p.bhs().Immediate(), "I bit")
		require.True(t, p.bhs().Final(), "F bit")
		require.Zero(t, p.dsl(), "no data")
	}
	checkNumbering(t, cs.rec, 0)
	checkExpStatSN(t, cs.rec, 0)
	noViolations(t, srv)
}

// 15.2: a ping request has a valid ITT, TTT 0xffffffff, LUN 0.
func TestUNH15_2_PingRequest(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	cs := confDial(t, srv)
	require.NoError(t, cs.s.Ping(ctxT(t, 5*time.Second)))
	_, err := cs.lun.ReadAt(make([]byte, 512), 0)
	require.NoError(t, err)
	nops := cs.rec.sent(0, pdu.OpNOPOut)
	require.Len(t, nops, 1)
	p := nops[0]
	require.NotEqual(t, pdu.ReservedTag, p.u32(16), "ITT valid: a response is wanted")
	require.Equal(t, pdu.ReservedTag, p.u32(20), "TTT 0xffffffff")
	require.Zero(t, binary.BigEndian.Uint64(p.raw[8:]), "LUN 0")
	checkNumbering(t, cs.rec, 0)
	noViolations(t, srv)
}

// 16.4.x: error statuses are not taken for success, the command is not
// retried with its old CmdSN, and the session continues.
func TestUNH16_4_TargetFailureStatus(t *testing.T) {
	readCDB := func(cdb []byte) bool { return len(cdb) > 0 && (cdb[0] == 0x28 || cdb[0] == 0x88) }
	cases := []struct {
		name  string
		arm   func(srv *iscsitest.Server)
		check func(t *testing.T, err error)
	}{
		{"16.4.1 CRC error sense 0B/47/05", func(srv *iscsitest.Server) {
			srv.Faults().CheckCondition(1, readCDB, iscsitest.Sense{Key: scsi.SenseAbortedCommand, ASC: 0x47, ASCQ: 0x05})
		}, func(t *testing.T, err error) {
			var se *scsi.SenseError
			require.ErrorAs(t, err, &se)
			require.Equal(t, uint8(0x47), se.ASC)
		}},
		{"16.4.3 unexpected unsolicited data 0B/0C/0C", func(srv *iscsitest.Server) {
			srv.Faults().CheckCondition(1, readCDB, iscsitest.Sense{Key: scsi.SenseAbortedCommand, ASC: 0x0c, ASCQ: 0x0c})
		}, func(t *testing.T, err error) {
			var se *scsi.SenseError
			require.ErrorAs(t, err, &se)
		}},
		{"16.4.4 not enough unsolicited data 0B/0C/0D", func(srv *iscsitest.Server) {
			srv.Faults().CheckCondition(1, readCDB, iscsitest.Sense{Key: scsi.SenseAbortedCommand, ASC: 0x0c, ASCQ: 0x0d})
		}, func(t *testing.T, err error) {
			var se *scsi.SenseError
			require.ErrorAs(t, err, &se)
		}},
		{"16.4.5 BUSY", func(srv *iscsitest.Server) { statusOnce(srv, uint8(scsi.StatusBusy)) }, func(t *testing.T, err error) {
			require.Error(t, err)
		}},
		{"16.4.6 RESERVATION CONFLICT", func(srv *iscsitest.Server) { statusOnce(srv, uint8(scsi.StatusReservationConflict)) }, func(t *testing.T, err error) {
			require.Error(t, err)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := confServer(t, iscsitest.Negotiation{})
			cs := confDial(t, srv)
			tc.arm(srv)
			_, err := cs.lun.ReadAt(make([]byte, 512), 0)
			tc.check(t, err)
			// The session goes on; the reissued command has a new CmdSN.
			_, err = cs.lun.ReadAt(make([]byte, 512), 0)
			require.NoError(t, err)
			cmds := scsiCmds(t, cs.rec.pdus(0))
			sns := map[uint32]bool{}
			for _, c := range cmds {
				require.False(t, sns[c.CmdSN], "CmdSN %d sent twice (retry is only for plugging CmdSN gaps)", c.CmdSN)
				sns[c.CmdSN] = true
			}
			checkNumbering(t, cs.rec, 0)
		})
	}
}

// statusOnce turns the status of the next GOOD READ completion (carried in
// the last Data-In) into st, dropping its data as a target would.
func statusOnce(srv *iscsitest.Server, st uint8) {
	mutateOnce(srv, func(hdr, data []byte) bool {
		op := pdu.Opcode(hdr[0] & 0x3f)
		if op == pdu.OpDataIn && hdr[1]&0x01 != 0 && hdr[3] == 0 {
			hdr[3] = st
			return true
		}
		return false
	})
}

// 16.4.2 at ERL 0: a hole in the Data-In sequence must not be taken as a
// complete read.
func TestUNH16_4_2_DataInHole(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	cs := confDial(t, srv, initiator.WithMaxRecvDataSegmentLength(1024))
	mutateOnce(srv, func(hdr, _ []byte) bool {
		if pdu.Opcode(hdr[0]&0x3f) == pdu.OpDataIn && binary.BigEndian.Uint32(hdr[36:]) == 1 {
			binary.BigEndian.PutUint32(hdr[36:], 2) // DataSN 1 "lost"
			return true
		}
		return false
	})
	_, err := cs.lun.ReadAt(make([]byte, 4096), 0)
	require.Error(t, err, "a read with a DataSN hole reported success")
}

// 19.1, 19.2, 19.3, 2.2: cancelling a read sends ABORT TASK, immediate,
// with the CmdSN of the next command, RefCmdSN and ReferencedTaskTag of the
// read, and its LUN.
func TestUNH19_AbortTaskFields(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	cs := confDial(t, srv)
	before := count(cs.rec.sent(0), pdu.OpSCSICommand)
	stall(t, cs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := cs.lun.ReadAtContext(ctx, make([]byte, 4096), 0)
		done <- err
	}()
	cs.rec.waitSent(t, 0, "the read", func(ps []wirePDU) bool { return count(ps, pdu.OpSCSICommand) > before })
	cancel()
	cs.rec.waitSent(t, 0, "ABORT TASK", func(ps []wirePDU) bool { return count(ps, pdu.OpTaskMgmtRequest) > 0 })
	srv.Faults().Release()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled read did not return")
	}
	_, err := cs.lun.ReadAt(make([]byte, 512), 0)
	require.NoError(t, err)

	all := cs.rec.pdus(0)
	cmds := filter(all, true, pdu.OpSCSICommand)
	read := cmds[before].msg.(*pdu.SCSICommand)
	tmfP := filter(all, true, pdu.OpTaskMgmtRequest)[0]
	tmf := tmfP.msg.(*pdu.TaskMgmtRequest)
	require.Equal(t, pdu.TMFAbortTask, tmf.Function)
	require.True(t, tmfP.raw[1]&0x80 != 0, "byte 1 bit 7 is 1")
	require.True(t, tmf.Immediate, "2.2: TMF sent for immediate delivery")
	require.Equal(t, read.CmdSN+1, tmf.CmdSN, "19.1: TMF CmdSN is the next command's")
	require.Equal(t, read.ITT, tmf.ReferencedTaskTag, "ReferencedTaskTag is the read's ITT")
	require.Equal(t, read.CmdSN, tmf.RefCmdSN, "19.3: RefCmdSN is the read's CmdSN")
	require.Equal(t, read.LUN, tmf.LUN, "19.2: LUN of the read")
	require.NotEqual(t, read.ITT, tmf.ITT)
	require.Zero(t, tmfP.dsl())
	require.Zero(t, tmfP.raw[4])
	next := cmds[len(cmds)-1].msg.(*pdu.SCSICommand)
	require.Equal(t, tmf.CmdSN, next.CmdSN, "2.2: the command after an immediate TMF has the TMF's CmdSN")
	checkNumbering(t, cs.rec, 0)
}

// 19.2 for the LU-wide functions, 19.4.1, 19.4.3: ABORT TASK SET and LUN
// RESET carry the LUN and ReferencedTaskTag 0xffffffff; R2Ts and NOP-In
// pings that arrive after the TMF was sent are still answered.
func TestUNH19_4_AbortTaskSetKeepsAnswering(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{ImmediateData: iscsitest.Bool(false)})
	cs := confDial(t, srv, initiator.WithImmediateData(false))
	before := count(cs.rec.sent(0), pdu.OpSCSICommand)
	stall(t, cs)
	wdone := make(chan error, 1)
	go func() {
		_, err := cs.lun.WriteAt(pattern(8192, 5), 0)
		wdone <- err
	}()
	cs.rec.waitSent(t, 0, "the write", func(ps []wirePDU) bool { return count(ps, pdu.OpSCSICommand) > before })
	tdone := make(chan error, 1)
	go func() { tdone <- cs.s.AbortTaskSet(context.Background(), 1) }()
	cs.rec.waitSent(t, 0, "ABORT TASK SET", func(ps []wirePDU) bool { return count(ps, pdu.OpTaskMgmtRequest) > 0 })
	srv.Faults().PingEvery(20 * time.Millisecond)
	srv.Faults().Release()
	select {
	case err := <-tdone:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("ABORT TASK SET did not complete")
	}
	// 19.4.3: the TMF response concludes every task of the affected task
	// set, so the write must return (with an error: it was aborted).
	select {
	case err := <-wdone:
		require.Error(t, err, "an aborted write reported success")
	case <-time.After(3 * time.Second):
		t.Fatal("19.4.3: WriteAt still blocked after ABORT TASK SET completed; the initiator does not conclude the tasks of the aborted task set")
	}
	cs.rec.waitSent(t, 0, "a NOP-Out answer after the TMF", func(ps []wirePDU) bool {
		seen := false
		for _, p := range ps {
			if p.op() == pdu.OpTaskMgmtRequest {
				seen = true
			}
			if seen && p.op() == pdu.OpNOPOut {
				return true
			}
		}
		return false
	})
	srv.Faults().PingEvery(0)
	all := cs.rec.pdus(0)
	var tmfAt int
	for i, p := range all {
		if p.out && p.op() == pdu.OpTaskMgmtRequest {
			tmfAt = i
			tmf := p.msg.(*pdu.TaskMgmtRequest)
			require.Equal(t, pdu.TMFAbortTaskSet, tmf.Function)
			require.Equal(t, scsi.EncodeLUN(1), tmf.LUN, "19.2: LUN field of ABORT TASK SET")
			require.Equal(t, pdu.ReservedTag, tmf.ReferencedTaskTag, "ReferencedTaskTag reserved for ABORT TASK SET")
			break
		}
	}
	// Every R2T the initiator read after sending the TMF was answered.
	for _, p := range all[tmfAt:] {
		if !p.out && p.op() == pdu.OpR2T {
			ttt := p.u32(20)
			answered := false
			for _, q := range all {
				if q.out && q.op() == pdu.OpDataOut && q.u32(20) == ttt {
					answered = true
				}
			}
			require.True(t, answered, "19.4.1: R2T TTT %#x after ABORT TASK SET not answered", ttt)
		}
	}
	for _, p := range cs.rec.sent(0) {
		require.NotEqual(t, pdu.OpReject, p.op(), "19.4.3: the initiator rejects nothing")
	}
	require.NoError(t, cs.s.LUNReset(ctxT(t, 5*time.Second), 1))
	tmfs := cs.rec.sent(0, pdu.OpTaskMgmtRequest)
	lr := tmfs[len(tmfs)-1].msg.(*pdu.TaskMgmtRequest)
	require.Equal(t, pdu.TMFLogicalUnitReset, lr.Function)
	require.Equal(t, scsi.EncodeLUN(1), lr.LUN)
	require.Equal(t, pdu.ReservedTag, lr.ReferencedTaskTag)
	checkNumbering(t, cs.rec, 0)
}

// 18.1: the discovery session's Text Request: CmdSN from the login, TTT
// 0xffffffff, fresh ITT, F=1; then a Logout to close the session (18.3.1).
func TestUNH18_1_DiscoveryText(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	rec := &recorder{}
	targets, err := initiator.Discover(ctxT(t, 10*time.Second), srv.Addr(), initiator.WithDialer(rec), initiator.WithInitiatorName(confInitiator))
	require.NoError(t, err)
	require.Len(t, targets, 1)
	require.Equal(t, confIQN, targets[0].TargetName)
	req, resp := loginFinal(t, rec, 0)
	texts := rec.sent(0, pdu.OpTextRequest)
	require.Len(t, texts, 1)
	tr := texts[0].msg.(*pdu.TextRequest)
	require.Equal(t, resp.u32(28), tr.CmdSN, "CmdSN = ExpCmdSN of the Login Response")
	require.Equal(t, resp.u32(24)+1, tr.ExpStatSN)
	require.Equal(t, pdu.ReservedTag, tr.TTT)
	require.NotEqual(t, req.u32(16), tr.ITT, "ITT differs from the login's")
	require.True(t, tr.Final)
	require.False(t, tr.Continue)
	los := rec.sent(0, pdu.OpLogoutRequest)
	require.Len(t, los, 1, "discovery ends with a Logout")
	lo := los[0].msg.(*pdu.LogoutRequest)
	require.Equal(t, pdu.LogoutCloseSession, lo.Reason)
	require.NotEqual(t, tr.ITT, lo.ITT, "Logout has its own ITT")
	checkNumbering(t, rec, 0)
	noViolations(t, srv)
}

// 18.2: a SendTargets answer spread over several Text Responses: the
// initiator continues with the same ITT and copies TTT and LUN.
func TestUNH18_2_TextContinuation(t *testing.T) {
	var tgts []iscsitest.Target
	for i := 0; i < 30; i++ {
		tgts = append(tgts, iscsitest.Target{Name: fmt.Sprintf("%s-%02d-with-a-rather-long-name-for-splitting", confIQN, i),
			LUNs: []iscsitest.LUN{{Number: 1, Blocks: 8}}})
	}
	srv := iscsitest.NewTestServer(t, iscsitest.Config{Targets: tgts})
	srv.Faults().MutateOutgoing(func(hdr, data []byte) []byte {
		if pdu.Opcode(hdr[0]&0x3f) == pdu.OpTextResponse {
			binary.BigEndian.PutUint64(hdr[8:], 0x0002000000000000) // a LUN to copy
		}
		return data
	})
	rec := &recorder{}
	targets, err := initiator.Discover(ctxT(t, 10*time.Second), srv.Addr(), initiator.WithDialer(rec),
		initiator.WithInitiatorName(confInitiator), initiator.WithMaxRecvDataSegmentLength(512))
	require.NoError(t, err)
	require.Len(t, targets, 30)
	all := rec.pdus(0)
	var reqs []*pdu.TextRequest
	var resps []*pdu.TextResponse
	for _, p := range all {
		switch m := p.msg.(type) {
		case *pdu.TextRequest:
			reqs = append(reqs, m)
		case *pdu.TextResponse:
			resps = append(resps, m)
		}
	}
	require.Greater(t, len(resps), 1, "the answer needs several responses at 512 bytes")
	require.Len(t, reqs, len(resps))
	for i := 1; i < len(reqs); i++ {
		require.Equal(t, reqs[0].ITT, reqs[i].ITT, "same ITT for the whole exchange")
		require.Equal(t, resps[i-1].TTT, reqs[i].TTT, "TTT copied from the previous response")
		require.Equal(t, resps[i-1].LUN, reqs[i].LUN, "LUN copied from the previous response")
		require.Equal(t, reqs[0].Immediate, reqs[i].Immediate, "same I bit in the sequence")
		require.Zero(t, len(reqs[i].Data), "continuation requests are empty")
	}
	checkNumbering(t, rec, 0)
}

// 18.3.1: a final Text Response with a TTT other than 0xffffffff: the TTT
// is ignored and the session ends with a normal logout.
func TestUNH18_3_1_FinalResponseTTTIgnored(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	srv.Faults().MutateOutgoing(func(hdr, data []byte) []byte {
		if pdu.Opcode(hdr[0]&0x3f) == pdu.OpTextResponse {
			binary.BigEndian.PutUint32(hdr[20:], 0x12345678)
		}
		return data
	})
	rec := &recorder{}
	targets, err := initiator.Discover(ctxT(t, 10*time.Second), srv.Addr(), initiator.WithDialer(rec), initiator.WithInitiatorName(confInitiator))
	require.NoError(t, err)
	require.Len(t, targets, 1)
	require.Len(t, rec.sent(0, pdu.OpTextRequest), 1, "no continuation after F=1")
	los := rec.sent(0, pdu.OpLogoutRequest)
	require.Len(t, los, 1)
	require.Equal(t, pdu.LogoutCloseSession, los[0].msg.(*pdu.LogoutRequest).Reason)
}

// 18.3.2: F=0 with TTT 0xffffffff is a protocol error: the initiator logs
// out or disconnects instead of continuing.
func TestUNH18_3_2_NonFinalResponseWithoutTTT(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	srv.Faults().MutateOutgoing(func(hdr, data []byte) []byte {
		if pdu.Opcode(hdr[0]&0x3f) == pdu.OpTextResponse {
			hdr[1] &^= 0x80 // F=0
			binary.BigEndian.PutUint32(hdr[20:], pdu.ReservedTag)
			binary.BigEndian.PutUint64(hdr[8:], 0x0001000000000000)
		}
		return data
	})
	rec := &recorder{}
	_, err := initiator.Discover(ctxT(t, 10*time.Second), srv.Addr(), initiator.WithDialer(rec), initiator.WithInitiatorName(confInitiator))
	require.Error(t, err, "a non-final Text Response without a TTT accepted")
	require.Len(t, rec.sent(0, pdu.OpTextRequest), 1, "no continuation with TTT 0xffffffff")
}

// 20.2: the target announces it will drop the connection and does: the
// session reports the failure and commands fail instead of hanging.
// (UNH also wants a reconnect within Parameter2/3: the initiator does not
// reconnect yet; see docs/conformance.md.)
func TestUNH20_2_AsyncDropConnection(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	cs := confDial(t, srv)
	require.Equal(t, 1, srv.SendAsync(pdu.AsyncDropConnection, 0, 0, 1))
	time.Sleep(50 * time.Millisecond)
	srv.DropConnections()
	require.Eventually(t, func() bool { return cs.s.Err() != nil }, 3*time.Second, 10*time.Millisecond, "session still claims to be usable")
	ctx := ctxT(t, 3*time.Second)
	_, err := cs.lun.ReadAtContext(ctx, make([]byte, 512), 0)
	require.Error(t, err)
	require.NoError(t, ctx.Err(), "the read waited for the deadline instead of failing")
}

// 20.4: the target asks for negotiation: the initiator answers with a Text
// Request (may be empty) or a Logout within Parameter3 seconds.
func TestUNH20_4_AsyncNegotiationRequest(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	cs := confDial(t, srv)
	require.Equal(t, 1, srv.SendAsync(pdu.AsyncNegotiationRequest, 0, 0, 3))
	cs.rec.waitSent(t, 0, "a Text Request or Logout Request (Parameter3 = 3 s)", func(ps []wirePDU) bool {
		return count(ps, pdu.OpTextRequest)+count(ps, pdu.OpLogoutRequest) > 0
	})
}

// Reject handling: a rejected command fails with *RejectError and the
// session stays usable; the rejected CmdSN is not reused for another task
// by mistake.
func TestUNH_RejectHandling(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	cs := confDial(t, srv)
	srv.Faults().RejectCommands(1, iscsitest.MatchOpcode(0x28), pdu.RejectInvalidPDUField)
	_, err := cs.lun.ReadAt(make([]byte, 512), 0)
	var re *initiator.RejectError
	require.ErrorAs(t, err, &re)
	require.Equal(t, pdu.RejectInvalidPDUField, re.Reason)
	_, err = cs.lun.ReadAt(make([]byte, 512), 0)
	require.NoError(t, err)
	require.NoError(t, cs.s.Err())
}

// Residuals: an INQUIRY whose allocation length exceeds the data reports
// underflow; one whose buffer is smaller than the data reports overflow.
func TestUNH_Residuals(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	cs := confDial(t, srv)
	ctx := ctxT(t, 5*time.Second)
	res, err := cs.lun.Execute(ctx, []byte{0x12, 0, 0, 0, 255, 0}, make([]byte, 255), nil)
	require.NoError(t, err)
	require.Equal(t, scsi.StatusGood, res.Status)
	require.True(t, res.Underflow, "standard INQUIRY is shorter than 255 bytes")
	require.Equal(t, 255-res.Transferred, res.Residual)
	res, err = cs.lun.Execute(ctx, []byte{0x12, 0, 0, 0, 96, 0}, make([]byte, 8), nil)
	require.NoError(t, err)
	if res.Overflow {
		require.Positive(t, res.Residual)
	}
	require.LessOrEqual(t, res.Transferred, 8, "never more than the buffer")
	var re *initiator.RejectError
	require.False(t, errors.As(err, &re))
}
