package pdu

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func cdb16() []byte {
	return []byte{0x88, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0, 0, 0, 8, 0, 0}
}

// roundTripCases sets every field of every PDU type to a distinct non-zero
// value, so a field dropped or misplaced by either direction shows up.
func roundTripCases() []Message {
	data := []byte("hello, iSCSI") // 12 bytes: no padding
	odd := []byte("odd!x")         // 5 bytes: 3 bytes of padding
	ahs := []byte{0, 5, 0x7f, 0, 1, 2, 3, 4}
	return []Message{
		&NOPOut{Immediate: true, LUN: 0x0001000000000000, ITT: 1, TTT: 0xffffffff, CmdSN: 3, ExpStatSN: 4, Data: odd},
		&NOPIn{LUN: 0x0102030405060708, ITT: 0xffffffff, TTT: 7, StatSN: 8, ExpCmdSN: 9, MaxCmdSN: 10, Data: data},
		&SCSICommand{Immediate: true, Final: true, Read: true, Attr: AttrSimple, LUN: 0x0001000000000000, ITT: 0x11,
			ExpectedDataTransferLength: 4096, CmdSN: 0x12, ExpStatSN: 0x13, CDB: cdb16()},
		&SCSICommand{Final: true, Read: true, Write: true, Attr: AttrACA, LUN: 1, ITT: 0x21,
			ExpectedDataTransferLength: 512, CmdSN: 0x22, ExpStatSN: 0x23,
			CDB:               append(cdb16(), 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0), // 32-byte CDB
			HasBidiReadLength: true, ExpectedBidiReadDataLength: 1024, AHS: ahs, Data: odd},
		&SCSICommand{Write: true, Attr: AttrHeadOfQueue, ITT: 0x31, CDB: append(cdb16(), 0xc1, 0xc2, 0xc3), Data: data}, // 19-byte CDB: padded AHS
		&SCSIResponse{BidiOverflow: true, BidiUnderflow: true, ResidualOverflow: true, ResidualUnderflow: true,
			Response: ResponseTargetFailure, Status: 0x02, ITT: 0x41, SNACKTag: 0x42, StatSN: 0x43, ExpCmdSN: 0x44,
			MaxCmdSN: 0x45, ExpDataSN: 0x46, BidiReadResidualCount: 0x47, ResidualCount: 0x48, Data: []byte{0, 3, 0x70, 0, 5}},
		&TaskMgmtRequest{Immediate: true, Function: TMFAbortTask, LUN: 2, ITT: 0x51, ReferencedTaskTag: 0x52, CmdSN: 0x53,
			ExpStatSN: 0x54, RefCmdSN: 0x55, ExpDataSN: 0x56},
		&TaskMgmtResponse{Response: TMFFunctionRejected, ITT: 0x61, StatSN: 0x62, ExpCmdSN: 0x63, MaxCmdSN: 0x64},
		&LoginRequest{Immediate: true, Transit: true, Continue: false, CSG: LoginOperationalNegotiation, NSG: FullFeaturePhase,
			VersionMax: 0, VersionMin: 0, ISID: [6]byte{0x40, 1, 2, 3, 4, 5}, TSIH: 0x7172, ITT: 0x73, CID: 0x7475,
			CmdSN: 0x76, ExpStatSN: 0x77, Data: AppendText(nil, KV{"InitiatorName", "iqn.2024-01.io.gosan:a"})},
		&LoginResponse{Transit: false, Continue: true, CSG: SecurityNegotiation, NSG: LoginOperationalNegotiation,
			VersionMax: 1, VersionActive: 0, ISID: [6]byte{0x80, 9, 8, 7, 6, 5}, TSIH: 0x8182, ITT: 0x83, StatSN: 0x84,
			ExpCmdSN: 0x85, MaxCmdSN: 0x86, StatusClass: StatusClassInitiatorError, StatusDetail: 0x01, Data: odd},
		&TextRequest{Immediate: true, Final: true, Continue: true, LUN: 3, ITT: 0x91, TTT: 0x92, CmdSN: 0x93, ExpStatSN: 0x94,
			Data: AppendText(nil, KV{"SendTargets", "All"})},
		&TextResponse{Final: false, Continue: true, LUN: 4, ITT: 0xa1, TTT: 0xa2, StatSN: 0xa3, ExpCmdSN: 0xa4, MaxCmdSN: 0xa5, Data: data},
		&DataOut{Final: true, LUN: 5, ITT: 0xb1, TTT: 0xb2, ExpStatSN: 0xb3, DataSN: 0xb4, BufferOffset: 0xb5, Data: odd},
		&DataIn{Final: true, Acknowledge: true, ResidualOverflow: true, ResidualUnderflow: true, StatusPresent: true, Status: 0x08,
			LUN: 6, ITT: 0xc1, TTT: 0xc2, StatSN: 0xc3, ExpCmdSN: 0xc4, MaxCmdSN: 0xc5, DataSN: 0xc6, BufferOffset: 0xc7,
			ResidualCount: 0xc8, Data: data},
		&LogoutRequest{Immediate: true, Reason: LogoutRemoveForRecovery, ITT: 0xd1, CID: 0xd2, CmdSN: 0xd3, ExpStatSN: 0xd4},
		&LogoutResponse{Response: LogoutCleanupFailed, ITT: 0xe1, StatSN: 0xe2, ExpCmdSN: 0xe3, MaxCmdSN: 0xe4, Time2Wait: 0xe5, Time2Retain: 0xe6},
		&SNACK{Type: SNACKRData, LUN: 7, ITT: 0xf1, TTT: 0xf2, ExpStatSN: 0xf3, BegRun: 0xf4, RunLength: 0xf5},
		&R2T{LUN: 8, ITT: 0x101, TTT: 0x102, StatSN: 0x103, ExpCmdSN: 0x104, MaxCmdSN: 0x105, R2TSN: 0x106, BufferOffset: 0x107,
			DesiredDataTransferLength: 0x108},
		&AsyncMessage{LUN: 9, ITT: ReservedTag, StatSN: 0x111, ExpCmdSN: 0x112, MaxCmdSN: 0x113, Event: AsyncVendorSpecific,
			VCode: 0x14, Parameter1: 0x115, Parameter2: 0x116, Parameter3: 0x117, Data: odd},
		&Reject{Reason: RejectInvalidPDUField, ITT: ReservedTag, StatSN: 0x121, ExpCmdSN: 0x122, MaxCmdSN: 0x123, DataSN: 0x124,
			Data: make([]byte, BHSLen)},
		&NOPOut{AHS: ahs}, // unknown AHS on a PDU that defines none is kept
	}
}

func TestRoundTripEveryPDU(t *testing.T) {
	seen := map[Opcode]bool{}
	for _, m := range roundTripCases() {
		t.Run(m.Opcode().String(), func(t *testing.T) {
			seen[m.Opcode()] = true
			wire := m.Encode(nil)
			require.Zero(t, len(wire)%4, "PDU not padded to 4")
			h := (*BHS)(wire[:BHSLen])
			assert.Equal(t, m.Opcode(), h.Opcode())
			assert.Equal(t, len(m.(DataSegmenter).DataSegment()), h.DataSegmentLength())
			assert.Equal(t, len(wire), BHSLen+h.TotalAHSLength()+h.PaddedDataLength())

			// AppendHeader is the prefix of Encode.
			hdr := m.AppendHeader([]byte{0xee})
			assert.Equal(t, wire[:len(hdr)-1], hdr[1:])

			// struct -> bytes -> struct
			got, err := Decode(wire)
			require.NoError(t, err)
			assert.True(t, reflect.DeepEqual(m, got), "decoded differs:\nwant %#v\ngot  %#v", m, got)

			// bytes -> struct -> bytes, with and without padding
			assert.Equal(t, wire, got.Encode(nil))
			unpadded := wire[:BHSLen+h.TotalAHSLength()+h.DataSegmentLength()]
			got2 := New(m.Opcode())
			require.NoError(t, got2.Decode(unpadded))
			assert.Equal(t, wire, got2.Encode(nil))
		})
	}
	for _, op := range allOpcodes {
		assert.True(t, seen[op], "no round-trip case for %v", op)
	}
}

var allOpcodes = []Opcode{OpNOPOut, OpSCSICommand, OpTaskMgmtRequest, OpLoginRequest, OpTextRequest, OpDataOut,
	OpLogoutRequest, OpSNACK, OpNOPIn, OpSCSIResponse, OpTaskMgmtResponse, OpLoginResponse, OpTextResponse, OpDataIn,
	OpLogoutResponse, OpR2T, OpAsyncMessage, OpReject}

func TestSCSICommandCDBSplit(t *testing.T) {
	cdb := make([]byte, 32)
	for i := range cdb {
		cdb[i] = byte(i + 1)
	}
	m := &SCSICommand{CDB: cdb}
	wire := m.Encode(nil)
	h := (*BHS)(wire[:BHSLen])
	// 16 CDB bytes in the BHS, 16 in an AHS: 4-byte AHS header + 16 = 20.
	require.Equal(t, 20, h.TotalAHSLength())
	assert.Equal(t, cdb[:16], wire[32:48])
	assert.Equal(t, []byte{0, 17, AHSExtendedCDB, 0}, wire[48:52])
	assert.Equal(t, cdb[16:], wire[52:68])

	// A short CDB is zero-padded to 16 bytes in the BHS.
	short := (&SCSICommand{CDB: []byte{0x12, 0, 0, 0, 36, 0}}).Encode(nil)
	assert.Equal(t, []byte{0x12, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, short[32:48])
	assert.Zero(t, short[4])

	// 17-byte CDB: AHSLength 2, padded to 8 bytes.
	w17 := (&SCSICommand{CDB: cdb[:17]}).Encode(nil)
	assert.Equal(t, 2, int(w17[4]))
	assert.Equal(t, []byte{0, 2, AHSExtendedCDB, 0, 17, 0, 0, 0}, w17[48:56])

	// Bidi read length AHS.
	wb := (&SCSICommand{Read: true, Write: true, HasBidiReadLength: true, ExpectedBidiReadDataLength: 0x01020304}).Encode(nil)
	assert.Equal(t, []byte{0, 5, AHSBidiReadDataLength, 0, 1, 2, 3, 4}, wb[48:56])
}

func TestSCSICommandKeepsNonCanonicalAHS(t *testing.T) {
	// Bidi AHS before extended CDB, and a malformed extended CDB length:
	// kept raw so re-encoding is byte-identical.
	for _, ahs := range [][]byte{
		{0, 5, 2, 0, 0, 0, 1, 0, 0, 2, 1, 0, 0xaa, 0, 0, 0},
		{0, 0x40, 1, 0, 1, 2, 3, 4},
		{0, 2, 1, 0, 9, 9, 0, 0}, // non-zero padding
	} {
		m := &SCSICommand{CDB: cdb16(), AHS: ahs}
		wire := m.Encode(nil)
		var got SCSICommand
		require.NoError(t, got.Decode(wire))
		assert.Equal(t, wire, got.Encode(nil))
	}
}

func TestDecodeErrors(t *testing.T) {
	good := (&DataIn{Data: []byte{1, 2, 3, 4, 5}}).Encode(nil)
	tests := []struct {
		name    string
		src     []byte
		op      Opcode
		wantIs  error
		wantMsg string
	}{
		{"empty", nil, 0, ErrTruncated, "shorter than a BHS"},
		{"short BHS", good[:47], 0, ErrTruncated, "shorter than a BHS"},
		{"short data", good[:52], OpDataIn, ErrTruncated, "header says 53"},
		{"too long", append(append([]byte{}, good...), 0, 0, 0, 0), OpDataIn, nil, "padding 3"},
		{"unknown opcode", append([]byte{0x3e}, good[1:]...), 0x3e, ErrUnknownOpcode, "opcode 0x3e"},
		{"AHS beyond input", func() []byte { b := append([]byte{}, good...); b[4] = 10; return b }(), OpDataIn, ErrTruncated, "AHS 40"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(tt.src)
			require.Error(t, err)
			assert.Nil(t, m)
			var fe *FormatError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tt.op, fe.Opcode)
			assert.Contains(t, err.Error(), tt.wantMsg)
			if tt.wantIs != nil {
				assert.ErrorIs(t, err, tt.wantIs)
			}
		})
	}
	// Wrong opcode for a typed Decode.
	var r2t R2T
	err := r2t.Decode(good)
	var fe *FormatError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, OpDataIn, fe.Opcode)
	assert.Contains(t, err.Error(), "want 0x31")
}

func TestDecodeAliasesSource(t *testing.T) {
	wire := (&DataIn{Data: []byte{1, 2, 3, 4, 5, 6}}).Encode(nil)
	var m DataIn
	require.NoError(t, m.Decode(wire))
	wire[BHSLen] = 0x99
	assert.Equal(t, byte(0x99), m.Data[0], "Data must alias the input")
	assert.Equal(t, len(m.Data), cap(m.Data), "Data capacity limited so appends cannot clobber padding")
}

func TestBHSAccessors(t *testing.T) {
	var h BHS
	h.SetOpcode(OpSCSICommand)
	h.SetImmediate(true)
	h.SetFinal(true)
	h.SetTotalAHSLength(8)
	h.SetDataSegmentLength(0x123456)
	h.SetLUN(0x0102030405060708)
	h.SetITT(0xdeadbeef)
	h.putWord(24, 10)
	h.putWord(28, 11)
	h.putWord(32, 12)
	assert.Equal(t, OpSCSICommand, h.Opcode())
	assert.True(t, h.Immediate())
	assert.True(t, h.Final())
	assert.Equal(t, byte(0x41), h[0])
	assert.Equal(t, 8, h.TotalAHSLength())
	assert.Equal(t, 0x123456, h.DataSegmentLength())
	assert.Equal(t, 0x123458, h.PaddedDataLength())
	assert.Equal(t, []byte{2, 0x12, 0x34, 0x56}, h[4:8])
	assert.Equal(t, uint64(0x0102030405060708), h.LUN())
	assert.Equal(t, uint32(0xdeadbeef), h.ITT())
	assert.Equal(t, uint32(10), h.CmdSN())
	assert.Equal(t, uint32(10), h.StatSN())
	assert.Equal(t, uint32(11), h.ExpStatSN())
	assert.Equal(t, uint32(11), h.ExpCmdSN())
	assert.Equal(t, uint32(12), h.MaxCmdSN())
	h.SetImmediate(false)
	h.SetFinal(false)
	assert.False(t, h.Immediate())
	assert.False(t, h.Final())
	assert.Equal(t, OpSCSICommand, h.Opcode())
	allocs := testing.AllocsPerRun(100, func() {
		h.SetDataSegmentLength(h.DataSegmentLength() + 1)
		_ = h.LUN() + uint64(h.ITT())
	})
	assert.Zero(t, allocs)
}

func TestBHSSequenceSetters(t *testing.T) {
	var h BHS
	h.SetCmdSN(1)
	h.SetExpStatSN(2)
	assert.Equal(t, uint32(1), h.CmdSN())
	assert.Equal(t, uint32(2), h.ExpStatSN())
	h.SetStatSN(3)
	h.SetExpCmdSN(4)
	h.SetMaxCmdSN(5)
	assert.Equal(t, uint32(3), h.StatSN())
	assert.Equal(t, uint32(4), h.ExpCmdSN())
	assert.Equal(t, uint32(5), h.MaxCmdSN())
}

func TestAdvancesStatSN(t *testing.T) {
	hdr := func(m Message) *BHS { return (*BHS)(m.AppendHeader(nil)[:BHSLen]) }
	for _, tc := range []struct {
		m    Message
		want bool
	}{
		{&SCSIResponse{}, true},
		{&DataIn{}, false},
		{&DataIn{Final: true, StatusPresent: true}, true},
		{&R2T{}, false},
		{&NOPIn{ITT: 7}, true},
		{&NOPIn{ITT: ReservedTag}, false},
		{&TaskMgmtResponse{}, true},
		{&LogoutResponse{}, true},
		{&TextResponse{}, true},
		{&LoginResponse{}, true},
		{&AsyncMessage{}, true},
		{&Reject{}, true},
		{&SCSICommand{}, false},
	} {
		assert.Equal(t, tc.want, hdr(tc.m).AdvancesStatSN(), "%v %+v", tc.m.Opcode(), tc.m)
	}
}

func TestOpcodeString(t *testing.T) {
	names := map[string]bool{}
	for _, op := range allOpcodes {
		s := op.String()
		assert.NotContains(t, s, "Opcode(")
		assert.False(t, names[s], "duplicate name %q", s)
		names[s] = true
		assert.True(t, op.Known())
		assert.Equal(t, op < 0x20, op.Initiator())
		assert.NotNil(t, New(op))
		assert.Equal(t, op, New(op).Opcode())
	}
	assert.Equal(t, "Opcode(0x3e)", Opcode(0x3e).String())
	assert.False(t, Opcode(0x3e).Known())
	assert.Nil(t, New(0x3e))
	assert.Equal(t, "SCSI Data-In", OpDataIn.String())
}

func TestEnumStrings(t *testing.T) {
	assert.Equal(t, "Simple", AttrSimple.String())
	assert.Equal(t, "ABORT TASK", TMFAbortTask.String())
	assert.Equal(t, "Function rejected", TMFFunctionRejected.String())
	assert.Equal(t, "FullFeaturePhase", FullFeaturePhase.String())
	assert.Equal(t, "Authentication failure", LoginAuthenticationFailure.String())
	assert.Equal(t, "LoginStatus(0x0299)", LoginStatus(0x0299).String())
	assert.Equal(t, uint8(2), LoginAuthenticationFailure.Class())
	assert.Equal(t, uint8(1), LoginAuthenticationFailure.Detail())
	assert.Equal(t, "close the session", LogoutCloseSession.String())
	assert.Equal(t, "CID not found", LogoutCIDNotFound.String())
	assert.Equal(t, "R-Data", SNACKRData.String())
	assert.Equal(t, "drop connection", AsyncDropConnection.String())
	assert.Equal(t, "protocol error", RejectProtocolError.String())
	assert.Equal(t, "RejectReason(1)", RejectReason(1).String())
	lr := &LoginResponse{StatusClass: 2, StatusDetail: 3}
	assert.Equal(t, LoginNotFound, lr.Status())
}

func TestSCSIResponseSenseData(t *testing.T) {
	tests := []struct {
		data    []byte
		want    []byte
		wantErr bool
	}{
		{nil, nil, false},
		{[]byte{0, 0}, nil, false},
		{[]byte{0, 3, 0x70, 0, 5, 0xff}, []byte{0x70, 0, 5}, false},
		{[]byte{0}, nil, true},
		{[]byte{0, 9, 1}, nil, true},
	}
	for _, tt := range tests {
		m := &SCSIResponse{Data: tt.data}
		got, err := m.SenseData()
		if tt.wantErr {
			var fe *FormatError
			assert.ErrorAs(t, err, &fe)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tt.want, got)
	}
}

func TestRejectedHeader(t *testing.T) {
	inner := (&SCSICommand{ITT: 0x77, CDB: cdb16()}).AppendHeader(nil)
	r := &Reject{Reason: RejectProtocolError, Data: inner}
	require.NotNil(t, r.RejectedHeader())
	assert.Equal(t, uint32(0x77), r.RejectedHeader().ITT())
	assert.Nil(t, (&Reject{Data: []byte{1}}).RejectedHeader())
}

func TestErrorsFormat(t *testing.T) {
	e := &DataSegmentTooLargeError{Opcode: OpDataIn, Length: 100, Max: 10}
	assert.Contains(t, e.Error(), "100")
	d := &DigestError{Header: true, Got: 1, Want: 2}
	assert.Contains(t, d.Error(), "header digest")
	fe := formatErr(OpR2T, ErrTruncated, "x")
	assert.True(t, errors.Is(fe, ErrTruncated))
	assert.True(t, bytes.Contains([]byte(fe.Error()), []byte("R2T")))
}
