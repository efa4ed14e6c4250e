//go:build linux

package iscsinl

import (
	"encoding/binary"
	"errors"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kmsg builds a kernel-to-user message by hand: nlmsghdr + iscsi_uevent +
// payload, with r written at struct offset 40 and u at 16.
type kmsg struct {
	nlType  uint16
	typ     MsgType
	iferror int32
	handle  uint64
	u       []uint32 // u32s from offset 16
	r       []uint32 // u32s from offset 40
	r8      uint64   // u64 at offset 48 (recv_handle)
	payload []byte
	lenAdj  int // added to nlmsg_len (hostile lengths)
}

func (k kmsg) bytes() []byte {
	n := 16 + 56 + len(k.payload)
	b := make([]byte, nlmAlign(n))
	binary.NativeEndian.PutUint32(b[0:], uint32(n+k.lenAdj))
	binary.NativeEndian.PutUint16(b[4:], k.nlType)
	ev := b[16:]
	binary.NativeEndian.PutUint32(ev[0:], uint32(k.typ))
	binary.NativeEndian.PutUint32(ev[4:], uint32(k.iferror))
	binary.NativeEndian.PutUint64(ev[8:], k.handle)
	for i, v := range k.u {
		binary.NativeEndian.PutUint32(ev[16+4*i:], v)
	}
	for i, v := range k.r {
		binary.NativeEndian.PutUint32(ev[40+4*i:], v)
	}
	if k.r8 != 0 {
		binary.NativeEndian.PutUint64(ev[48:], k.r8)
	}
	copy(ev[56:], k.payload)
	return b
}

func loginRsp(data string) []byte {
	b := make([]byte, 48+len(data))
	b[0] = 0x23
	b[5], b[6], b[7] = byte(len(data)>>16), byte(len(data)>>8), byte(len(data))
	copy(b[48:], data)
	return b
}

func parseOne(t *testing.T, b []byte) *Message {
	t.Helper()
	msgs, err := ParseMessages(b)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	return &msgs[0]
}

func TestParseReplies(t *testing.T) {
	t.Run("create session", func(t *testing.T) {
		m := parseOne(t, kmsg{nlType: 11, typ: 11, handle: 5, r: []uint32{3, 9}}.bytes())
		require.True(t, m.IsReply())
		require.NoError(t, m.Err())
		assert.Equal(t, UEventCreateSession, m.ReplyTo())
		assert.Equal(t, uint64(5), m.TransportHandle)
		assert.Equal(t, SessionResult{SID: 3, HostNo: 9}, m.SessionResult())
	})
	t.Run("create conn", func(t *testing.T) {
		m := parseOne(t, kmsg{nlType: 13, typ: 13, r: []uint32{3, 0}}.bytes())
		assert.Equal(t, ConnResult{SID: 3, CID: 0}, m.ConnResult())
		m = parseOne(t, kmsg{nlType: 13, typ: 13, r: []uint32{3, CIDFailed}}.bytes())
		assert.Equal(t, uint32(CIDFailed), m.ConnResult().CID)
	})
	t.Run("retcode", func(t *testing.T) {
		m := parseOne(t, kmsg{nlType: 15, typ: 15, r: []uint32{uint32(0xffffffff - 21 + 1)}}.bytes()) // -EISDIR(21)
		assert.Equal(t, int32(-21), m.Retcode())
		err := retcodeErr(m, UEventBindConn)
		var ke *KernelError
		require.ErrorAs(t, err, &ke)
		assert.True(t, ke.Retcode)
		assert.ErrorIs(t, err, syscall.EISDIR)
	})
	t.Run("if error", func(t *testing.T) {
		m := parseOne(t, kmsg{nlType: 12, typ: KEventIfError, iferror: -22}.bytes())
		require.True(t, m.IsReply(), "IF_ERROR keeps the request's nlmsg_type")
		assert.Equal(t, UEventDestroySession, m.ReplyTo())
		err := m.Err()
		var ke *KernelError
		require.ErrorAs(t, err, &ke)
		assert.Equal(t, UEventDestroySession, ke.Op)
		assert.Equal(t, syscall.EINVAL, ke.Errno)
		assert.ErrorIs(t, err, syscall.EINVAL)
		assert.NotErrorIs(t, err, ErrPermission)
		assert.Contains(t, err.Error(), "DESTROY_SESSION")
	})
	t.Run("if error EPERM", func(t *testing.T) {
		m := parseOne(t, kmsg{nlType: 11, typ: KEventIfError, iferror: -1}.bytes())
		err := m.Err()
		assert.ErrorIs(t, err, ErrPermission)
		assert.ErrorIs(t, err, syscall.EPERM)
		assert.Contains(t, err.Error(), "need CAP_SYS_ADMIN")
	})
	t.Run("stats multicast", func(t *testing.T) {
		p := make([]byte, 96+72)
		binary.NativeEndian.PutUint64(p[0:], 1000)
		binary.NativeEndian.PutUint64(p[8:], 2000)
		binary.NativeEndian.PutUint32(p[16+4*3:], 4)  // login pdus
		binary.NativeEndian.PutUint32(p[16+4*18:], 2) // timeout_err
		binary.NativeEndian.PutUint32(p[16+4*19:], 1) // custom_length
		copy(p[96:], "eh_abort_cnt")
		binary.NativeEndian.PutUint64(p[96+64:], 77)
		m := parseOne(t, kmsg{nlType: 0, typ: UEventGetStats, u: []uint32{3, 0}, payload: p}.bytes())
		require.True(t, m.IsReply(), "nlmsg_type 0 with ev.type GET_STATS is a reply")
		assert.Equal(t, UEventGetStats, m.ReplyTo())
		s, err := ParseStats(m.Payload)
		require.NoError(t, err)
		assert.Equal(t, uint64(1000), s.TxDataOctets)
		assert.Equal(t, uint64(2000), s.RxDataOctets)
		assert.Equal(t, uint32(4), s.Login)
		assert.Equal(t, uint32(2), s.TimeoutErr)
		assert.Equal(t, []CustomStat{{Desc: "eh_abort_cnt", Value: 77}}, s.Custom)
		_, err = ParseStats(p[:95])
		assert.ErrorIs(t, err, ErrProtocol)
		_, err = ParseStats(p[:96+71])
		assert.ErrorIs(t, err, ErrProtocol)
		binary.NativeEndian.PutUint32(p[16+4*19:], 33)
		_, err = ParseStats(p)
		assert.ErrorIs(t, err, ErrProtocol)
	})
	t.Run("nlmsg error", func(t *testing.T) {
		b := make([]byte, 36)
		binary.NativeEndian.PutUint32(b[0:], 36)
		binary.NativeEndian.PutUint16(b[4:], 2)
		binary.NativeEndian.PutUint32(b[16:], uint32(0xffffffff)) // -1
		binary.NativeEndian.PutUint16(b[24:], 11)                 // original nlmsg_type
		m := parseOne(t, b)
		assert.True(t, m.IsControl())
		assert.True(t, m.IsReply())
		assert.Equal(t, UEventCreateSession, m.ReplyTo())
		assert.ErrorIs(t, m.Err(), syscall.EPERM)
	})
}

func TestParseEvents(t *testing.T) {
	pdu := loginRsp("TargetAlias=x\x00")
	tests := []struct {
		name string
		msg  kmsg
		want Event
	}{
		{"recv pdu", kmsg{typ: KEventRecvPDU, handle: 8, r: []uint32{3, 0}, r8: 0xabc, payload: append(append([]byte{}, pdu...), 0, 0)},
			&RecvPDUEvent{TransportHandle: 8, SID: 3, CID: 0, RecvHandle: 0xabc, PDU: pdu}},
		{"conn error", kmsg{typ: KEventConnError, r: []uint32{3, 1, 1011}},
			&ConnErrorEvent{SID: 3, CID: 1, Error: ErrConnFailed}},
		{"conn login state", kmsg{typ: KEventConnLoginState, r: []uint32{3, 1, 3}},
			&ConnLoginStateEvent{SID: 3, CID: 1, State: ConnStateLoggedIn}},
		{"unbind session", kmsg{typ: KEventUnbindSession, r: []uint32{3, 9}},
			&UnbindSessionEvent{SID: 3, HostNo: 9}},
		{"destroy session (host_no first)", kmsg{typ: KEventDestroySession, r: []uint32{9, 3}},
			&DestroySessionEvent{HostNo: 9, SID: 3}},
		{"create session", kmsg{typ: KEventCreateSession, r: []uint32{3, 9}},
			&CreateSessionEvent{SID: 3, HostNo: 9}},
		{"host event", kmsg{typ: KEventHostEvent, r: []uint32{9, 2, 1}, payload: []byte{1, 2, 3, 4}},
			&HostEvent{HostNo: 9, Code: 1, Data: []byte{1, 2}}},
		{"ping comp", kmsg{typ: KEventPingComp, r: []uint32{9, 0, 5, 0}},
			&PingCompEvent{HostNo: 9, Status: 0, PID: 5, Data: []byte{}}},
		{"path req", kmsg{typ: KEventPathReq, r: []uint32{9}}, &PathReqEvent{HostNo: 9, Data: []byte{}}},
		{"if down", kmsg{typ: KEventIfDown, r: []uint32{9}}, &IfDownEvent{HostNo: 9, Data: []byte{}}},
		{"unknown", kmsg{typ: 150, r: []uint32{1}}, &UnknownEvent{Type: 150, R: [16]byte{1}, Payload: []byte{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := parseOne(t, tt.msg.bytes())
			require.False(t, m.IsReply())
			ev, err := m.Event()
			require.NoError(t, err)
			assert.Equal(t, tt.want, ev)
			assert.Equal(t, tt.want.EventType(), ev.EventType())
		})
	}
}

func TestParseHostile(t *testing.T) {
	good := kmsg{nlType: 11, typ: 11}.bytes()
	tests := []struct {
		name  string
		in    []byte
		nGood int
	}{
		{"short header", make([]byte, 15), 0},
		{"nlmsg_len below header", kmsg{typ: 101, lenAdj: -70}.bytes(), 0},
		{"nlmsg_len beyond datagram", kmsg{typ: 101, lenAdj: 100}.bytes(), 0},
		{"body shorter than uevent", kmsg{typ: 101, lenAdj: -1}.bytes()[:71], 0},
		{"good then garbage", append(append([]byte{}, good...), 1, 2, 3), 1},
		{"nlmsg error too short", func() []byte {
			b := make([]byte, 18)
			binary.NativeEndian.PutUint32(b, 18)
			binary.NativeEndian.PutUint16(b[4:], 2)
			return b
		}(), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := ParseMessages(tt.in)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrProtocol))
			assert.Len(t, msgs, tt.nGood)
		})
	}

	t.Run("two messages in one datagram", func(t *testing.T) {
		b := append(kmsg{nlType: 11, typ: 11, payload: []byte{1}}.bytes(), kmsg{typ: KEventConnError, r: []uint32{1, 2, 1020}}.bytes()...)
		msgs, err := ParseMessages(b)
		require.NoError(t, err)
		require.Len(t, msgs, 2)
		assert.Equal(t, []byte{1}, msgs[0].Payload)
		assert.Equal(t, KEventConnError, msgs[1].Type)
	})

	eventErrs := []struct {
		name string
		msg  kmsg
	}{
		{"recv pdu without BHS", kmsg{typ: KEventRecvPDU, payload: make([]byte, 47)}},
		{"recv pdu shorter than announced", kmsg{typ: KEventRecvPDU, payload: loginRsp("abcd")[:50]}},
		{"recv pdu huge dlength", kmsg{typ: KEventRecvPDU, payload: func() []byte {
			b := make([]byte, 48)
			b[4], b[5], b[6], b[7] = 255, 255, 255, 255
			return b
		}()}},
		{"host event data_size beyond payload", kmsg{typ: KEventHostEvent, r: []uint32{1, 1 << 31, 1}}},
		{"ping comp data_size beyond payload", kmsg{typ: KEventPingComp, r: []uint32{1, 0, 0, 9}}},
		{"if error outside a reply", kmsg{typ: KEventIfError}},
	}
	for _, tt := range eventErrs {
		t.Run(tt.name, func(t *testing.T) {
			m := parseOne(t, tt.msg.bytes())
			_, err := m.Event()
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrProtocol)
		})
	}
	t.Run("reply is not an event", func(t *testing.T) {
		m := parseOne(t, good)
		_, err := m.Event()
		assert.ErrorIs(t, err, ErrProtocol)
	})
}

func FuzzParseMessage(f *testing.F) {
	f.Add(kmsg{nlType: 11, typ: 11, r: []uint32{1, 2}}.bytes())
	f.Add(kmsg{nlType: 12, typ: KEventIfError, iferror: -22}.bytes())
	f.Add(kmsg{typ: KEventRecvPDU, r: []uint32{1, 0}, payload: loginRsp("a=b\x00")}.bytes())
	f.Add(kmsg{typ: KEventConnError, r: []uint32{1, 0, 1011}}.bytes())
	f.Add(kmsg{typ: KEventHostEvent, r: []uint32{1, 4, 1}, payload: []byte{1, 2, 3, 4}}.bytes())
	f.Add(kmsg{nlType: 0, typ: UEventGetStats, payload: make([]byte, 96)}.bytes())
	f.Add(append(kmsg{typ: KEventDestroySession}.bytes(), kmsg{typ: KEventUnbindSession}.bytes()...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := ParseMessages(b)
		if err == nil && len(b) > 0 && len(msgs) == 0 {
			t.Fatal("no messages and no error")
		}
		if len(msgs) > len(b)/NLMsgHdrLen {
			t.Fatalf("%d messages from %d bytes", len(msgs), len(b))
		}
		for i := range msgs {
			m := &msgs[i]
			_ = m.String()
			_ = m.Err()
			_ = m.Retcode()
			_ = m.SessionResult()
			_ = m.ConnResult()
			if m.IsReply() {
				_, _ = ParseStats(m.Payload)
				continue
			}
			if m.IsControl() {
				continue
			}
			ev, err := m.Event()
			if err != nil {
				continue
			}
			if e, ok := ev.(*RecvPDUEvent); ok {
				if len(e.PDU) < BHSLen || len(e.PDU) != PDULen(e.PDU) {
					t.Fatalf("RECV_PDU of %d bytes, header says %d", len(e.PDU), PDULen(e.PDU))
				}
			}
		}
	})
}
