//go:build linux

package iscsinl

import "fmt"

// NLHeader is struct nlmsghdr.
type NLHeader struct {
	Len   uint32
	Type  uint16
	Flags uint16
	Seq   uint32
	PID   uint32
}

// Message is one parsed netlink message from the kernel: the nlmsghdr and,
// for everything but netlink control messages, the iscsi_uevent. Payload
// aliases the buffer given to ParseMessages.
type Message struct {
	Header NLHeader
	// NLError is the error of an NLMSG_ERROR control message (0 = ACK);
	// the uevent fields are zero for control messages.
	NLError int32

	Type            MsgType // iscsi_uevent.type
	IfError         int32   // iscsi_uevent.iferror (negative errno on IF_ERROR)
	TransportHandle uint64
	U               [sizeU]byte // union u: the request as echoed by the kernel
	R               [sizeR]byte // union r: reply or event data
	Payload         []byte      // bytes after the 56-byte struct, up to nlmsg_len
}

// IsControl reports whether m is a netlink core control message
// (NOOP, ERROR, DONE, OVERRUN).
func (m *Message) IsControl() bool {
	return m.Header.Type >= nlmsgNoop && m.Header.Type <= nlmsgOverrun
}

// IsReply reports whether m answers a request. Replies carry the request's
// nlmsg_type (ev.type may be IF_ERROR); GET_STATS, GET_CHAP and
// GET_HOST_STATS results are multicast with nlmsg_type 0 and the request
// type in ev.type.
func (m *Message) IsReply() bool {
	if m.IsControl() {
		return m.Header.Type == nlmsgError
	}
	if MsgType(m.Header.Type).isRequest() {
		return true
	}
	return m.Header.Type == 0 && m.Type.isRequest()
}

// ReplyTo is the request type a reply answers.
func (m *Message) ReplyTo() MsgType {
	if m.IsControl() {
		return m.Type // NLMSG_ERROR: type of the request it answers
	}
	if m.Header.Type != 0 {
		return MsgType(m.Header.Type)
	}
	return m.Type
}

// Err returns the kernel's refusal carried by a reply: a *KernelError for
// IF_ERROR and NLMSG_ERROR with a non-zero error, else nil.
func (m *Message) Err() error {
	if m.IsControl() {
		if m.Header.Type == nlmsgError && m.NLError != 0 {
			return &KernelError{Op: m.Type, Errno: errnoFromKernel(m.NLError)}
		}
		return nil
	}
	if m.Type == KEventIfError {
		return &KernelError{Op: m.ReplyTo(), Errno: errnoFromKernel(m.IfError)}
	}
	return nil
}

// Retcode is r.retcode (int at offset 40).
func (m *Message) Retcode() int32 { return int32(ne.Uint32(m.R[0:])) }

// rUint32 reads a uint32 of union r at byte offset off (0 = struct offset 40).
func (m *Message) rUint32(off int) uint32 { return ne.Uint32(m.R[off:]) }

// SessionResult is the reply to CREATE_SESSION (msg_create_session_ret).
type SessionResult struct{ SID, HostNo uint32 }

// ConnResult is the reply to CREATE_CONN (msg_create_conn_ret).
type ConnResult struct{ SID, CID uint32 }

// CIDFailed is the cid a CREATE_CONN reply carries on failure ((uint32)-1).
const CIDFailed = 0xffffffff

// SessionResult decodes r as msg_create_session_ret: sid @40, host_no @44.
func (m *Message) SessionResult() SessionResult {
	return SessionResult{SID: m.rUint32(0), HostNo: m.rUint32(4)}
}

// ConnResult decodes r as msg_create_conn_ret: sid @40, cid @44.
func (m *Message) ConnResult() ConnResult {
	return ConnResult{SID: m.rUint32(0), CID: m.rUint32(4)}
}

// ParseMessages splits one datagram into netlink messages. It never panics
// and never allocates more than a slice header per 16 input bytes; on a
// malformed message it returns the messages before it and a *ProtocolError.
func ParseMessages(b []byte) ([]Message, error) {
	var msgs []Message
	for len(b) > 0 {
		if len(b) < NLMsgHdrLen {
			return msgs, protoErr("%d trailing bytes, shorter than a netlink header", len(b))
		}
		var m Message
		m.Header = NLHeader{
			Len:   ne.Uint32(b[0:]),
			Type:  ne.Uint16(b[4:]),
			Flags: ne.Uint16(b[6:]),
			Seq:   ne.Uint32(b[8:]),
			PID:   ne.Uint32(b[12:]),
		}
		l := m.Header.Len
		if l < NLMsgHdrLen || uint64(l) > uint64(len(b)) {
			return msgs, protoErr("nlmsg_len %d with %d bytes left", l, len(b))
		}
		body := b[NLMsgHdrLen:l]
		if m.IsControl() {
			if m.Header.Type == nlmsgError {
				if len(body) < 4 {
					return msgs, protoErr("NLMSG_ERROR body is %d bytes", len(body))
				}
				m.NLError = int32(ne.Uint32(body))
				if len(body) >= 4+NLMsgHdrLen { // the request's nlmsghdr follows
					m.Type = MsgType(ne.Uint16(body[8:]))
				}
			}
		} else {
			if len(body) < UEventSize {
				return msgs, protoErr("message of type %d has %d bytes, want at least %d for iscsi_uevent", m.Header.Type, len(body), UEventSize)
			}
			m.Type = MsgType(ne.Uint32(body[offType:]))
			m.IfError = int32(ne.Uint32(body[offIfError:]))
			m.TransportHandle = ne.Uint64(body[offTransportHandle:])
			copy(m.U[:], body[offU:offU+sizeU])
			copy(m.R[:], body[offR:offR+sizeR])
			m.Payload = body[UEventSize:]
		}
		msgs = append(msgs, m)
		next := nlmAlign(int(l))
		if next > len(b) {
			next = len(b)
		}
		b = b[next:]
	}
	return msgs, nil
}

// Event is an asynchronous kernel-to-user message. The concrete types are
// *RecvPDUEvent, *ConnErrorEvent, *ConnLoginStateEvent, *UnbindSessionEvent,
// *DestroySessionEvent, *CreateSessionEvent, *HostEvent, *PingCompEvent,
// *PathReqEvent, *IfDownEvent and *UnknownEvent.
type Event interface {
	EventType() MsgType
	// SessionID returns the session the event is about, ok=false for host
	// events.
	SessionID() (sid uint32, ok bool)
}

// RecvPDUEvent is ISCSI_KEVENT_RECV_PDU: a PDU the kernel passes up (login,
// text, logout responses, and anything else it does not handle itself).
type RecvPDUEvent struct {
	TransportHandle uint64
	SID, CID        uint32
	RecvHandle      uint64
	// PDU is the BHS followed by the data segment, trimmed to
	// 48 + TotalAHSLength + DataSegmentLength. Owned by the receiver.
	PDU []byte
}

// ConnErrorEvent is ISCSI_KEVENT_CONN_ERROR.
type ConnErrorEvent struct {
	TransportHandle uint64
	SID, CID        uint32
	Error           ErrCode
}

// ConnLoginStateEvent is ISCSI_KEVENT_CONN_LOGIN_STATE (offload drivers).
type ConnLoginStateEvent struct {
	TransportHandle uint64
	SID, CID        uint32
	State           ConnState
}

// UnbindSessionEvent is ISCSI_KEVENT_UNBIND_SESSION.
type UnbindSessionEvent struct {
	TransportHandle uint64
	SID, HostNo     uint32
}

// DestroySessionEvent is ISCSI_KEVENT_DESTROY_SESSION (msg_session_destroyed:
// host_no @40, sid @44).
type DestroySessionEvent struct {
	TransportHandle uint64
	HostNo, SID     uint32
}

// CreateSessionEvent is ISCSI_KEVENT_CREATE_SESSION (sessions created by the
// kernel itself, e.g. offload boot sessions).
type CreateSessionEvent struct {
	TransportHandle uint64
	SID, HostNo     uint32
}

// HostEvent is ISCSI_KEVENT_HOST_EVENT.
type HostEvent struct {
	TransportHandle uint64
	HostNo          uint32
	Code            uint32 // enum iscsi_host_event_code: 1 LINKUP, 2 LINKDOWN
	Data            []byte
}

// PingCompEvent is ISCSI_KEVENT_PING_COMP.
type PingCompEvent struct {
	TransportHandle     uint64
	HostNo, Status, PID uint32
	Data                []byte
}

// PathReqEvent is ISCSI_KEVENT_PATH_REQ (offload; group 2 only).
type PathReqEvent struct {
	TransportHandle uint64
	HostNo          uint32
	Data            []byte
}

// IfDownEvent is ISCSI_KEVENT_IF_DOWN (offload; group 2 only).
type IfDownEvent struct {
	TransportHandle uint64
	HostNo          uint32
	Data            []byte
}

// UnknownEvent is any other message that is not a reply.
type UnknownEvent struct {
	Type    MsgType
	R       [sizeR]byte
	Payload []byte
}

func (*RecvPDUEvent) EventType() MsgType        { return KEventRecvPDU }
func (*ConnErrorEvent) EventType() MsgType      { return KEventConnError }
func (*ConnLoginStateEvent) EventType() MsgType { return KEventConnLoginState }
func (*UnbindSessionEvent) EventType() MsgType  { return KEventUnbindSession }
func (*DestroySessionEvent) EventType() MsgType { return KEventDestroySession }
func (*CreateSessionEvent) EventType() MsgType  { return KEventCreateSession }
func (*HostEvent) EventType() MsgType           { return KEventHostEvent }
func (*PingCompEvent) EventType() MsgType       { return KEventPingComp }
func (*PathReqEvent) EventType() MsgType        { return KEventPathReq }
func (*IfDownEvent) EventType() MsgType         { return KEventIfDown }
func (e *UnknownEvent) EventType() MsgType      { return e.Type }

func (e *RecvPDUEvent) SessionID() (uint32, bool)        { return e.SID, true }
func (e *ConnErrorEvent) SessionID() (uint32, bool)      { return e.SID, true }
func (e *ConnLoginStateEvent) SessionID() (uint32, bool) { return e.SID, true }
func (e *UnbindSessionEvent) SessionID() (uint32, bool)  { return e.SID, true }
func (e *DestroySessionEvent) SessionID() (uint32, bool) { return e.SID, true }
func (e *CreateSessionEvent) SessionID() (uint32, bool)  { return e.SID, true }
func (*HostEvent) SessionID() (uint32, bool)             { return 0, false }
func (*PingCompEvent) SessionID() (uint32, bool)         { return 0, false }
func (*PathReqEvent) SessionID() (uint32, bool)          { return 0, false }
func (*IfDownEvent) SessionID() (uint32, bool)           { return 0, false }
func (*UnknownEvent) SessionID() (uint32, bool)          { return 0, false }

// PDULen is the length of a PDU from its BHS: 48 + TotalAHSLength*4 +
// DataSegmentLength (unpadded). bhs must be at least 48 bytes.
func PDULen(bhs []byte) int {
	ahs := int(bhs[4]) * 4
	dsl := int(bhs[5])<<16 | int(bhs[6])<<8 | int(bhs[7])
	return BHSLen + ahs + dsl
}

// sized returns the first n bytes of payload described by a data_size field.
func sized(what string, payload []byte, n uint32) ([]byte, error) {
	if uint64(n) > uint64(len(payload)) {
		return nil, protoErr("%s data_size %d exceeds the %d payload bytes", what, n, len(payload))
	}
	return payload[:n], nil
}

// Event decodes m as an asynchronous event. Byte slices in the result alias
// m.Payload (copy them before reusing the receive buffer).
func (m *Message) Event() (Event, error) {
	if m.IsControl() || m.IsReply() {
		return nil, protoErr("message type %d/%v is not an event", m.Header.Type, m.Type)
	}
	th := m.TransportHandle
	switch m.Type {
	case KEventRecvPDU:
		if len(m.Payload) < BHSLen {
			return nil, protoErr("RECV_PDU carries %d bytes, shorter than a BHS", len(m.Payload))
		}
		n := PDULen(m.Payload)
		if n > len(m.Payload) {
			return nil, protoErr("RECV_PDU carries %d bytes, its BHS announces %d", len(m.Payload), n)
		}
		return &RecvPDUEvent{TransportHandle: th, SID: m.rUint32(0), CID: m.rUint32(4),
			RecvHandle: ne.Uint64(m.R[8:]), PDU: m.Payload[:n]}, nil
	case KEventConnError:
		return &ConnErrorEvent{TransportHandle: th, SID: m.rUint32(0), CID: m.rUint32(4), Error: ErrCode(m.rUint32(8))}, nil
	case KEventConnLoginState:
		return &ConnLoginStateEvent{TransportHandle: th, SID: m.rUint32(0), CID: m.rUint32(4), State: ConnState(m.rUint32(8))}, nil
	case KEventUnbindSession:
		return &UnbindSessionEvent{TransportHandle: th, SID: m.rUint32(0), HostNo: m.rUint32(4)}, nil
	case KEventDestroySession:
		return &DestroySessionEvent{TransportHandle: th, HostNo: m.rUint32(0), SID: m.rUint32(4)}, nil
	case KEventCreateSession:
		return &CreateSessionEvent{TransportHandle: th, SID: m.rUint32(0), HostNo: m.rUint32(4)}, nil
	case KEventHostEvent:
		d, err := sized("HOST_EVENT", m.Payload, m.rUint32(4))
		if err != nil {
			return nil, err
		}
		return &HostEvent{TransportHandle: th, HostNo: m.rUint32(0), Code: m.rUint32(8), Data: d}, nil
	case KEventPingComp:
		d, err := sized("PING_COMP", m.Payload, m.rUint32(12))
		if err != nil {
			return nil, err
		}
		return &PingCompEvent{TransportHandle: th, HostNo: m.rUint32(0), Status: m.rUint32(4), PID: m.rUint32(8), Data: d}, nil
	case KEventPathReq:
		return &PathReqEvent{TransportHandle: th, HostNo: m.rUint32(0), Data: m.Payload}, nil
	case KEventIfDown:
		return &IfDownEvent{TransportHandle: th, HostNo: m.rUint32(0), Data: m.Payload}, nil
	case KEventIfError:
		return nil, protoErr("IF_ERROR outside a reply (nlmsg_type %d)", m.Header.Type)
	}
	return &UnknownEvent{Type: m.Type, R: m.R, Payload: m.Payload}, nil
}

// Stats is struct iscsi_stats, the GET_STATS result.
type Stats struct {
	TxDataOctets, RxDataOctets uint64
	// transmitted PDUs
	NOPTx, SCSICmd, TMFCmd, Login, Text, DataOut, Logout, SNACK uint32
	// received PDUs
	NOPRx, SCSIRsp, TMFRsp, TextRsp, DataIn, LogoutRsp, R2T, Async, Reject uint32
	DigestErr, TimeoutErr                                                  uint32
	Custom                                                                 []CustomStat
}

// CustomStat is struct iscsi_stats_custom.
type CustomStat struct {
	Desc  string
	Value uint64
}

const (
	statsFixedLen    = 96 // offsetof(struct iscsi_stats, custom)
	statsCustomLen   = 72 // sizeof(struct iscsi_stats_custom)
	statsCustomMax   = 32 // ISCSI_STATS_CUSTOM_MAX
	statsCustomDescN = 64
)

// ParseStats decodes the payload of a GET_STATS result.
func ParseStats(p []byte) (*Stats, error) {
	if len(p) < statsFixedLen {
		return nil, protoErr("GET_STATS payload is %d bytes, want at least %d", len(p), statsFixedLen)
	}
	s := &Stats{TxDataOctets: ne.Uint64(p[0:]), RxDataOctets: ne.Uint64(p[8:])}
	u := func(i int) uint32 { return ne.Uint32(p[16+4*i:]) }
	s.NOPTx, s.SCSICmd, s.TMFCmd, s.Login, s.Text, s.DataOut, s.Logout, s.SNACK = u(0), u(1), u(2), u(3), u(4), u(5), u(6), u(7)
	s.NOPRx, s.SCSIRsp, s.TMFRsp, s.TextRsp, s.DataIn, s.LogoutRsp, s.R2T, s.Async, s.Reject = u(8), u(9), u(10), u(11), u(12), u(13), u(14), u(15), u(16)
	s.DigestErr, s.TimeoutErr = u(17), u(18)
	n := u(19)
	if n > statsCustomMax {
		return nil, protoErr("GET_STATS custom_length %d exceeds %d", n, statsCustomMax)
	}
	if need := statsFixedLen + int(n)*statsCustomLen; len(p) < need {
		return nil, protoErr("GET_STATS payload is %d bytes, custom_length %d needs %d", len(p), n, need)
	}
	for i := 0; i < int(n); i++ {
		c := p[statsFixedLen+i*statsCustomLen:]
		d := c[:statsCustomDescN]
		for j, ch := range d {
			if ch == 0 {
				d = d[:j]
				break
			}
		}
		s.Custom = append(s.Custom, CustomStat{Desc: string(d), Value: ne.Uint64(c[statsCustomDescN:])})
	}
	return s, nil
}

// String renders m for debug logs (never includes payload bytes).
func (m *Message) String() string {
	if m.IsControl() {
		return fmt.Sprintf("nlmsg{type:%d len:%d error:%d}", m.Header.Type, m.Header.Len, m.NLError)
	}
	return fmt.Sprintf("nlmsg{type:%d len:%d ev:%v iferror:%d payload:%d}", m.Header.Type, m.Header.Len, m.Type, m.IfError, len(m.Payload))
}
