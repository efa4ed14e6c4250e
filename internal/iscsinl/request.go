//go:build linux

package iscsinl

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// ne is the byte order of every integer in nlmsghdr and iscsi_uevent: the
// host's (iSCSI PDU headers carried as payload stay big-endian).
var ne = binary.NativeEndian

// Request is one user-to-kernel message. The implementations are the types
// below; each writes its union u fields and optional payload.
type Request interface {
	// Type is the iscsi_uevent type, also used as nlmsg_type.
	Type() MsgType
	// encode writes the union u of ev (ev is the 56-byte iscsi_uevent)
	// and returns the payload that follows the struct.
	encode(ev []byte) (payload []byte, err error)
}

// CreateSession is ISCSI_UEVENT_CREATE_SESSION (msg_create_session).
type CreateSession struct {
	InitialCmdSN uint32
	CmdsMax      uint16 // iscsid default 128; the kernel rounds to a power of two
	QueueDepth   uint16 // per-LUN queue depth, iscsid default 32
}

// DestroySession is ISCSI_UEVENT_DESTROY_SESSION (msg_destroy_session). The
// kernel refuses with EBUSY while the session still has connections.
type DestroySession struct{ SID uint32 }

// DestroySessionAsync is ISCSI_UEVENT_DESTROY_SESSION_ASYNC: like
// DestroySession, but the kernel tears down in a work queue.
type DestroySessionAsync struct{ SID uint32 }

// UnbindSession is ISCSI_UEVENT_UNBIND_SESSION: remove the SCSI target and
// devices of the session (the kernel answers, then emits KEVENT_UNBIND_SESSION).
type UnbindSession struct{ SID uint32 }

// CreateConn is ISCSI_UEVENT_CREATE_CONN (msg_create_conn).
type CreateConn struct{ SID, CID uint32 }

// DestroyConn is ISCSI_UEVENT_DESTROY_CONN (msg_destroy_conn).
type DestroyConn struct{ SID, CID uint32 }

// BindConn is ISCSI_UEVENT_BIND_CONN (msg_bind_conn). TransportEPH is, for
// iscsi_tcp, the number of a connected TCP socket in the sending process's
// file table (the kernel does sockfd_lookup in the sender's context).
type BindConn struct {
	SID, CID     uint32
	TransportEPH uint64
	IsLeading    bool
}

// SetParam is ISCSI_UEVENT_SET_PARAM (msg_set_param). Value is sent as a
// NUL-terminated string, len = strlen+1.
type SetParam struct {
	SID, CID uint32
	Param    Param
	Value    string
}

// String hides password values.
func (p SetParam) String() string {
	v := p.Value
	if p.Param.secret() {
		v = "<redacted>"
	}
	return fmt.Sprintf("SetParam{SID:%d CID:%d %v=%q}", p.SID, p.CID, p.Param, v)
}

// GoString hides password values.
func (p SetParam) GoString() string { return p.String() }

// SetHostParam is ISCSI_UEVENT_SET_HOST_PARAM (msg_set_host_param).
type SetHostParam struct {
	HostNo uint32
	Param  HostParam
	Value  string
}

// StartConn is ISCSI_UEVENT_START_CONN (msg_start_conn).
type StartConn struct{ SID, CID uint32 }

// StopConn is ISCSI_UEVENT_STOP_CONN (msg_stop_conn). The kernel looks the
// connection up by SID/CID; ConnHandle is carried for ABI completeness.
type StopConn struct {
	SID, CID   uint32
	ConnHandle uint64
	Flag       StopFlag
}

// SendPDU is ISCSI_UEVENT_SEND_PDU (msg_send_pdu): Hdr is the BHS (+AHS), in
// network byte order as on the wire, Data the unpadded data segment.
type SendPDU struct {
	SID, CID uint32
	Hdr      []byte
	Data     []byte
}

// GetStats is ISCSI_UEVENT_GET_STATS (msg_get_stats).
type GetStats struct{ SID, CID uint32 }

// maxParamLen is the kernel's limit for SET_PARAM/SET_HOST_PARAM values
// (len > PAGE_SIZE is refused; 4096 is the smallest page size).
const maxParamLen = 4096

func (CreateSession) Type() MsgType       { return UEventCreateSession }
func (DestroySession) Type() MsgType      { return UEventDestroySession }
func (DestroySessionAsync) Type() MsgType { return UEventDestroySessionAsync }
func (UnbindSession) Type() MsgType       { return UEventUnbindSession }
func (CreateConn) Type() MsgType          { return UEventCreateConn }
func (DestroyConn) Type() MsgType         { return UEventDestroyConn }
func (BindConn) Type() MsgType            { return UEventBindConn }
func (SetParam) Type() MsgType            { return UEventSetParam }
func (SetHostParam) Type() MsgType        { return UEventSetHostParam }
func (StartConn) Type() MsgType           { return UEventStartConn }
func (StopConn) Type() MsgType            { return UEventStopConn }
func (SendPDU) Type() MsgType             { return UEventSendPDU }
func (GetStats) Type() MsgType            { return UEventGetStats }

func putSIDCID(ev []byte, sid, cid uint32) {
	ne.PutUint32(ev[offU:], sid)
	ne.PutUint32(ev[offU+4:], cid)
}

func (r CreateSession) encode(ev []byte) ([]byte, error) {
	ne.PutUint32(ev[offU:], r.InitialCmdSN)
	ne.PutUint16(ev[offU+4:], r.CmdsMax)
	ne.PutUint16(ev[offU+6:], r.QueueDepth)
	return nil, nil
}

func (r DestroySession) encode(ev []byte) ([]byte, error) {
	ne.PutUint32(ev[offU:], r.SID)
	return nil, nil
}

func (r DestroySessionAsync) encode(ev []byte) ([]byte, error) {
	ne.PutUint32(ev[offU:], r.SID)
	return nil, nil
}

func (r UnbindSession) encode(ev []byte) ([]byte, error) {
	ne.PutUint32(ev[offU:], r.SID)
	return nil, nil
}

func (r CreateConn) encode(ev []byte) ([]byte, error) {
	putSIDCID(ev, r.SID, r.CID)
	return nil, nil
}

func (r DestroyConn) encode(ev []byte) ([]byte, error) {
	putSIDCID(ev, r.SID, r.CID)
	return nil, nil
}

func (r StartConn) encode(ev []byte) ([]byte, error) {
	putSIDCID(ev, r.SID, r.CID)
	return nil, nil
}

func (r GetStats) encode(ev []byte) ([]byte, error) {
	putSIDCID(ev, r.SID, r.CID)
	return nil, nil
}

func (r BindConn) encode(ev []byte) ([]byte, error) {
	putSIDCID(ev, r.SID, r.CID)
	ne.PutUint64(ev[offU+8:], r.TransportEPH)
	var lead uint32
	if r.IsLeading {
		lead = 1
	}
	ne.PutUint32(ev[offU+16:], lead)
	return nil, nil
}

func (r StopConn) encode(ev []byte) ([]byte, error) {
	putSIDCID(ev, r.SID, r.CID)
	ne.PutUint64(ev[offU+8:], r.ConnHandle)
	ne.PutUint32(ev[offU+16:], uint32(r.Flag))
	return nil, nil
}

func paramPayload(what fmt.Stringer, v string) ([]byte, error) {
	if strings.IndexByte(v, 0) >= 0 {
		return nil, fmt.Errorf("iscsinl: %v value contains a NUL byte", what)
	}
	if len(v)+1 > maxParamLen {
		return nil, fmt.Errorf("iscsinl: %v value is %d bytes, the kernel accepts at most %d", what, len(v), maxParamLen-1)
	}
	b := make([]byte, len(v)+1)
	copy(b, v)
	return b, nil
}

func (r SetParam) encode(ev []byte) ([]byte, error) {
	if r.Param >= ParamMax {
		return nil, fmt.Errorf("iscsinl: SET_PARAM: unknown parameter %d", uint32(r.Param))
	}
	p, err := paramPayload(r.Param, r.Value)
	if err != nil {
		return nil, err
	}
	putSIDCID(ev, r.SID, r.CID)
	ne.PutUint32(ev[offU+8:], uint32(r.Param))
	ne.PutUint32(ev[offU+12:], uint32(len(p)))
	return p, nil
}

func (r SetHostParam) encode(ev []byte) ([]byte, error) {
	if r.Param >= HostParamMax {
		return nil, fmt.Errorf("iscsinl: SET_HOST_PARAM: unknown parameter %d", uint32(r.Param))
	}
	p, err := paramPayload(r.Param, r.Value)
	if err != nil {
		return nil, err
	}
	ne.PutUint32(ev[offU:], r.HostNo)
	ne.PutUint32(ev[offU+4:], uint32(r.Param))
	ne.PutUint32(ev[offU+8:], uint32(len(p)))
	return p, nil
}

// maxSendPDU bounds SEND_PDU payloads: BHS + 255*4 bytes of AHS + a 24-bit
// data segment.
const maxSendPDU = BHSLen + 255*4 + 1<<24 - 1

func (r SendPDU) encode(ev []byte) ([]byte, error) {
	if len(r.Hdr) < BHSLen {
		return nil, fmt.Errorf("iscsinl: SEND_PDU header is %d bytes, want at least %d", len(r.Hdr), BHSLen)
	}
	if len(r.Hdr)+len(r.Data) > maxSendPDU {
		return nil, fmt.Errorf("iscsinl: SEND_PDU of %d bytes is too large", len(r.Hdr)+len(r.Data))
	}
	putSIDCID(ev, r.SID, r.CID)
	ne.PutUint32(ev[offU+8:], uint32(len(r.Hdr)))
	ne.PutUint32(ev[offU+12:], uint32(len(r.Data)))
	p := make([]byte, 0, len(r.Hdr)+len(r.Data))
	p = append(p, r.Hdr...)
	return append(p, r.Data...), nil
}

// AppendRequest appends one complete netlink message carrying r to dst: the
// 16-byte nlmsghdr (nlmsg_type = r.Type(), flags 0 as iscsid sends, the
// given seq and pid), the 56-byte iscsi_uevent, the payload, and zero
// padding to NLMSG_ALIGN. All integers are in host byte order.
func AppendRequest(dst []byte, r Request, transportHandle uint64, seq, pid uint32) ([]byte, error) {
	var ev [UEventSize]byte
	ne.PutUint32(ev[offType:], uint32(r.Type()))
	ne.PutUint64(ev[offTransportHandle:], transportHandle)
	payload, err := r.encode(ev[:])
	if err != nil {
		return dst, err
	}
	total := nlmAlign(NLMsgHdrLen + UEventSize + len(payload))
	var h [NLMsgHdrLen]byte
	ne.PutUint32(h[0:], uint32(total))
	ne.PutUint16(h[4:], uint16(r.Type()))
	ne.PutUint16(h[6:], 0)
	ne.PutUint32(h[8:], seq)
	ne.PutUint32(h[12:], pid)
	start := len(dst)
	dst = append(dst, h[:]...)
	dst = append(dst, ev[:]...)
	dst = append(dst, payload...)
	for len(dst)-start < total {
		dst = append(dst, 0)
	}
	return dst, nil
}
