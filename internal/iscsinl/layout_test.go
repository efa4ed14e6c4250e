//go:build linux

package iscsinl

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// field is one expected integer at an offset of the iscsi_uevent (offsets
// from the start of the struct, as in docs/kernel-netlink reference).
type field struct {
	off, size int
	val       uint64
}

func u32(off int, v uint32) field { return field{off, 4, uint64(v)} }
func u16(off int, v uint16) field { return field{off, 2, uint64(v)} }
func u64(off int, v uint64) field { return field{off, 8, v} }

func readField(b []byte, f field) uint64 {
	switch f.size {
	case 2:
		return uint64(binary.NativeEndian.Uint16(b[f.off:]))
	case 4:
		return uint64(binary.NativeEndian.Uint32(b[f.off:]))
	}
	return binary.NativeEndian.Uint64(b[f.off:])
}

func TestRequestLayout(t *testing.T) {
	const handle = 0x1122334455667788
	bhs := make([]byte, 48)
	bhs[0] = 0x43
	tests := []struct {
		name    string
		req     Request
		typ     MsgType
		fields  []field
		payload []byte
	}{
		{"CreateSession", CreateSession{InitialCmdSN: 0xa1b2c3d4, CmdsMax: 128, QueueDepth: 32}, 11,
			[]field{u32(16, 0xa1b2c3d4), u16(20, 128), u16(22, 32)}, nil},
		{"DestroySession", DestroySession{SID: 7}, 12, []field{u32(16, 7)}, nil},
		{"CreateConn", CreateConn{SID: 7, CID: 3}, 13, []field{u32(16, 7), u32(20, 3)}, nil},
		{"DestroyConn", DestroyConn{SID: 7, CID: 3}, 14, []field{u32(16, 7), u32(20, 3)}, nil},
		{"BindConn", BindConn{SID: 7, CID: 3, TransportEPH: 42, IsLeading: true}, 15,
			[]field{u32(16, 7), u32(20, 3), u64(24, 42), u32(32, 1)}, nil},
		{"BindConnNotLeading", BindConn{SID: 7, CID: 1, TransportEPH: 9}, 15,
			[]field{u32(16, 7), u32(20, 1), u64(24, 9), u32(32, 0)}, nil},
		{"SetParam", SetParam{SID: 7, CID: 3, Param: ParamTargetName, Value: "iqn.x"}, 16,
			[]field{u32(16, 7), u32(20, 3), u32(24, 15), u32(28, 6)}, []byte("iqn.x\x00")},
		{"SetParamEmpty", SetParam{SID: 1, CID: 0, Param: ParamMaxRecvDLength, Value: ""}, 16,
			[]field{u32(16, 1), u32(20, 0), u32(24, 0), u32(28, 1)}, []byte{0}},
		{"StartConn", StartConn{SID: 7, CID: 3}, 17, []field{u32(16, 7), u32(20, 3)}, nil},
		{"StopConn", StopConn{SID: 7, CID: 3, ConnHandle: 0xdead, Flag: StopConnRecover}, 18,
			[]field{u32(16, 7), u32(20, 3), u64(24, 0xdead), u32(32, 3)}, nil},
		{"SendPDU", SendPDU{SID: 7, CID: 3, Hdr: bhs, Data: []byte("abcde")}, 19,
			[]field{u32(16, 7), u32(20, 3), u32(24, 48), u32(28, 5)}, append(append([]byte{}, bhs...), "abcde"...)},
		{"GetStats", GetStats{SID: 7, CID: 3}, 20, []field{u32(16, 7), u32(20, 3)}, nil},
		{"SetHostParam", SetHostParam{HostNo: 5, Param: HostParamInitiatorName, Value: "iqn.i"}, 26,
			[]field{u32(16, 5), u32(20, 1), u32(24, 6)}, []byte("iqn.i\x00")},
		{"UnbindSession", UnbindSession{SID: 9}, 27, []field{u32(16, 9)}, nil},
		{"DestroySessionAsync", DestroySessionAsync{SID: 9}, 43, []field{u32(16, 9)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.typ, tt.req.Type())
			prefix := []byte("xy")
			b, err := AppendRequest(prefix, tt.req, handle, 77, 4242)
			require.NoError(t, err)
			require.Equal(t, "xy", string(b[:2]), "AppendRequest keeps dst")
			b = b[2:]
			want := 16 + 56 + len(tt.payload)
			aligned := (want + 3) &^ 3
			require.Len(t, b, aligned, "datagram is NLMSG_ALIGNed")
			// nlmsghdr
			assert.Equal(t, uint32(aligned), binary.NativeEndian.Uint32(b[0:]), "nlmsg_len")
			assert.Equal(t, uint16(tt.typ), binary.NativeEndian.Uint16(b[4:]), "nlmsg_type = ev.type")
			assert.Equal(t, uint16(0), binary.NativeEndian.Uint16(b[6:]), "nlmsg_flags = 0 like iscsid")
			assert.Equal(t, uint32(77), binary.NativeEndian.Uint32(b[8:]), "nlmsg_seq")
			assert.Equal(t, uint32(4242), binary.NativeEndian.Uint32(b[12:]), "nlmsg_pid")
			ev := b[16:]
			assert.Equal(t, uint32(tt.typ), binary.NativeEndian.Uint32(ev[0:]), "type @0")
			assert.Equal(t, uint32(0), binary.NativeEndian.Uint32(ev[4:]), "iferror @4")
			assert.Equal(t, uint64(handle), binary.NativeEndian.Uint64(ev[8:]), "transport_handle @8")
			// Every byte of u not named by a field, and all of r, must be zero.
			named := map[int]bool{}
			for _, f := range tt.fields {
				assert.Equal(t, f.val, readField(ev, f), "field @%d", f.off)
				for i := 0; i < f.size; i++ {
					named[f.off+i] = true
				}
			}
			for i := 16; i < 56; i++ {
				if !named[i] {
					assert.Zero(t, ev[i], "unnamed byte @%d", i)
				}
			}
			assert.Equal(t, tt.payload, nilIfEmpty(ev[56:56+len(tt.payload)]), "payload after the 56-byte struct")
			for _, p := range ev[56+len(tt.payload):] {
				assert.Zero(t, p, "alignment padding")
			}
		})
	}
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func TestRequestValidation(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"short BHS", SendPDU{Hdr: make([]byte, 47)}, "at least 48"},
		{"NUL in value", SetParam{Param: ParamTargetName, Value: "a\x00b"}, "NUL"},
		{"value too long", SetParam{Param: ParamTargetName, Value: strings.Repeat("a", 4096)}, "at most 4095"},
		{"unknown param", SetParam{Param: ParamMax}, "unknown parameter"},
		{"unknown host param", SetHostParam{Param: HostParamMax}, "unknown parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := AppendRequest(nil, tt.req, 1, 0, 0)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestSetParamStringRedactsPasswords(t *testing.T) {
	p := SetParam{SID: 1, Param: ParamPassword, Value: "s3cret"}
	assert.NotContains(t, p.String(), "s3cret")
	assert.NotContains(t, p.GoString(), "s3cret")
	p.Param = ParamPasswordIn
	assert.NotContains(t, p.String(), "s3cret")
	p.Param = ParamUsername
	assert.Contains(t, p.String(), "s3cret")
}

func TestConstants(t *testing.T) {
	// Values from include/iscsi_if.h.
	assert.Equal(t, MsgType(11), UEventCreateSession)
	assert.Equal(t, MsgType(27), UEventUnbindSession)
	assert.Equal(t, MsgType(42), UEventGetHostStats)
	assert.Equal(t, MsgType(43), UEventDestroySessionAsync)
	assert.Equal(t, MsgType(101), KEventRecvPDU)
	assert.Equal(t, MsgType(103), KEventIfError)
	assert.Equal(t, MsgType(109), KEventConnLoginState)
	assert.Equal(t, MsgType(111), KEventPingComp)
	assert.Equal(t, Param(0), ParamMaxRecvDLength)
	assert.Equal(t, Param(14), ParamExpStatSN)
	assert.Equal(t, Param(15), ParamTargetName)
	assert.Equal(t, Param(19), ParamSessRecoveryTmo)
	assert.Equal(t, Param(24), ParamPassword)
	assert.Equal(t, Param(34), ParamInitiatorName)
	assert.Equal(t, Param(36), ParamTargetAlias)
	assert.Equal(t, Param(43), ParamDiscoverySess)
	assert.Equal(t, Param(49), ParamDefTime2Wait)
	assert.Equal(t, Param(71), ParamLocalIPAddr)
	assert.Equal(t, Param(72), ParamMax)
	assert.Len(t, paramNames, int(ParamMax))
	assert.Equal(t, HostParam(6), HostParamMax)
	assert.Equal(t, ErrCode(1011), ErrConnFailed)
	assert.Equal(t, ErrCode(1020), ErrTCPConnClose)
	assert.Equal(t, ErrCode(1022), ErrNOPTimedOut)
	assert.Equal(t, "ISCSI_ERR_CONN_FAILED", ErrConnFailed.String())
	assert.Equal(t, "ISCSI_ERR_NOP_TIMEDOUT", ErrNOPTimedOut.String())
	assert.Equal(t, "ISCSI_ERR_DATASN", ErrDataSN.String())
	assert.Equal(t, "ErrCode(1023)", ErrCode(1023).String())
	assert.Equal(t, "ISCSI_PARAM_LOCAL_IPADDR", ParamLocalIPAddr.String())
	assert.Equal(t, "ISCSI_PARAM_TARGET_NAME", ParamTargetName.String())
	assert.Equal(t, "CREATE_SESSION", UEventCreateSession.String())
	assert.Equal(t, "KEVENT_RECV_PDU", KEventRecvPDU.String())
	assert.Equal(t, "MsgType(99)", MsgType(99).String())
	assert.Equal(t, "STOP_CONN_TERM", StopConnTerm.String())
	assert.Equal(t, StopFlag(2), StopConnSuspend)
	assert.Equal(t, "ISCSI_CONN_STATE_LOGGED_IN", ConnStateLoggedIn.String())
	assert.Equal(t, 1, GroupISCSID)
}
