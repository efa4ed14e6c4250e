package pdu

// LogoutReason is the Reason Code of a Logout Request.
type LogoutReason uint8

// Logout reason codes (RFC 7143 §11.14.1).
const (
	LogoutCloseSession      LogoutReason = 0
	LogoutCloseConnection   LogoutReason = 1
	LogoutRemoveForRecovery LogoutReason = 2
)

// String names the reason.
func (r LogoutReason) String() string {
	switch r {
	case LogoutCloseSession:
		return "close the session"
	case LogoutCloseConnection:
		return "close the connection"
	case LogoutRemoveForRecovery:
		return "remove the connection for recovery"
	}
	return "LogoutReason(" + itoa(int(r)) + ")"
}

// LogoutResponseCode is the Response field of a Logout Response.
type LogoutResponseCode uint8

// Logout response codes (RFC 7143 §11.15.1).
const (
	LogoutSuccess              LogoutResponseCode = 0
	LogoutCIDNotFound          LogoutResponseCode = 1
	LogoutRecoveryNotSupported LogoutResponseCode = 2
	LogoutCleanupFailed        LogoutResponseCode = 3
)

// String names the response.
func (r LogoutResponseCode) String() string {
	switch r {
	case LogoutSuccess:
		return "connection or session closed successfully"
	case LogoutCIDNotFound:
		return "CID not found"
	case LogoutRecoveryNotSupported:
		return "connection recovery is not supported"
	case LogoutCleanupFailed:
		return "cleanup failed for various reasons"
	}
	return "LogoutResponseCode(" + itoa(int(r)) + ")"
}

// LogoutRequest is a Logout Request (opcode 0x06, RFC 7143 §11.14).
type LogoutRequest struct {
	Immediate bool
	Reason    LogoutReason
	ITT       uint32
	CID       uint16 // connection to close (reasons 1 and 2)
	CmdSN     uint32
	ExpStatSN uint32
	AHS       []byte
	Data      []byte
}

// Opcode returns OpLogoutRequest.
func (*LogoutRequest) Opcode() Opcode { return OpLogoutRequest }

// DataSegment returns m.Data.
func (m *LogoutRequest) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *LogoutRequest) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpLogoutRequest, m.Immediate, 0x80|byte(m.Reason)&0x7f, len(m.AHS), len(m.Data))
	h.putWord(16, m.ITT)
	put16(h[20:22], m.CID)
	h.putWord(24, m.CmdSN)
	h.putWord(28, m.ExpStatSN)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *LogoutRequest) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *LogoutRequest) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpLogoutRequest)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *LogoutRequest) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpLogoutRequest); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *LogoutRequest) set(h *BHS, ahs, data []byte) {
	*m = LogoutRequest{
		Immediate: h.Immediate(),
		Reason:    LogoutReason(h[1] & 0x7f),
		ITT:       h.word(16),
		CID:       be16(h[20:22]),
		CmdSN:     h.word(24),
		ExpStatSN: h.word(28),
		AHS:       ahs,
		Data:      data,
	}
}

// LogoutResponse is a Logout Response (opcode 0x26, RFC 7143 §11.15).
type LogoutResponse struct {
	Response    LogoutResponseCode
	ITT         uint32
	StatSN      uint32
	ExpCmdSN    uint32
	MaxCmdSN    uint32
	Time2Wait   uint16 // seconds
	Time2Retain uint16 // seconds
	AHS         []byte
	Data        []byte
}

// Opcode returns OpLogoutResponse.
func (*LogoutResponse) Opcode() Opcode { return OpLogoutResponse }

// DataSegment returns m.Data.
func (m *LogoutResponse) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *LogoutResponse) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpLogoutResponse, false, 0x80, len(m.AHS), len(m.Data))
	h[2] = byte(m.Response)
	h.putWord(16, m.ITT)
	h.putWord(24, m.StatSN)
	h.putWord(28, m.ExpCmdSN)
	h.putWord(32, m.MaxCmdSN)
	put16(h[40:42], m.Time2Wait)
	put16(h[42:44], m.Time2Retain)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *LogoutResponse) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *LogoutResponse) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpLogoutResponse)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *LogoutResponse) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpLogoutResponse); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *LogoutResponse) set(h *BHS, ahs, data []byte) {
	*m = LogoutResponse{
		Response:    LogoutResponseCode(h[2]),
		ITT:         h.word(16),
		StatSN:      h.word(24),
		ExpCmdSN:    h.word(28),
		MaxCmdSN:    h.word(32),
		Time2Wait:   be16(h[40:42]),
		Time2Retain: be16(h[42:44]),
		AHS:         ahs,
		Data:        data,
	}
}
