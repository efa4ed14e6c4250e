package pdu

// RejectReason is the Reason field of a Reject.
type RejectReason uint8

// Reject reasons (RFC 7143 §11.17.1).
const (
	RejectDataDigestError     RejectReason = 0x02
	RejectSNACKReject         RejectReason = 0x03
	RejectProtocolError       RejectReason = 0x04
	RejectCommandNotSupported RejectReason = 0x05
	RejectImmediateCommand    RejectReason = 0x06
	RejectTaskInProgress      RejectReason = 0x07
	RejectInvalidDataACK      RejectReason = 0x08
	RejectInvalidPDUField     RejectReason = 0x09
	RejectLongOperation       RejectReason = 0x0a
	RejectNegotiationReset    RejectReason = 0x0b
	RejectWaitingForLogout    RejectReason = 0x0c
)

// String names the reason.
func (r RejectReason) String() string {
	switch r {
	case RejectDataDigestError:
		return "data digest error"
	case RejectSNACKReject:
		return "SNACK reject"
	case RejectProtocolError:
		return "protocol error"
	case RejectCommandNotSupported:
		return "command not supported"
	case RejectImmediateCommand:
		return "immediate command reject"
	case RejectTaskInProgress:
		return "task in progress"
	case RejectInvalidDataACK:
		return "invalid data ACK"
	case RejectInvalidPDUField:
		return "invalid PDU field"
	case RejectLongOperation:
		return "long operation reject"
	case RejectNegotiationReset:
		return "negotiation reset"
	case RejectWaitingForLogout:
		return "waiting for logout"
	}
	return "RejectReason(" + itoa(int(r)) + ")"
}

// Reject is a Reject (opcode 0x3f, RFC 7143 §11.17). Data holds the
// complete header (BHS and AHS) of the rejected PDU.
type Reject struct {
	Reason   RejectReason
	ITT      uint32 // ReservedTag on the wire
	StatSN   uint32
	ExpCmdSN uint32
	MaxCmdSN uint32
	DataSN   uint32 // DataSN/R2TSN for a rejected SNACK, else 0
	AHS      []byte
	Data     []byte
}

// Opcode returns OpReject.
func (*Reject) Opcode() Opcode { return OpReject }

// DataSegment returns m.Data.
func (m *Reject) DataSegment() []byte { return m.Data }

// RejectedHeader returns the BHS of the rejected PDU carried in Data, or
// nil if Data is shorter than a BHS.
func (m *Reject) RejectedHeader() *BHS {
	if len(m.Data) < BHSLen {
		return nil
	}
	return (*BHS)(m.Data[:BHSLen])
}

// AppendHeader appends the BHS and AHS.
func (m *Reject) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpReject, false, 0x80, len(m.AHS), len(m.Data))
	h[2] = byte(m.Reason)
	h.putWord(16, m.ITT)
	h.putWord(24, m.StatSN)
	h.putWord(28, m.ExpCmdSN)
	h.putWord(32, m.MaxCmdSN)
	h.putWord(36, m.DataSN)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *Reject) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *Reject) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpReject)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *Reject) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpReject); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *Reject) set(h *BHS, ahs, data []byte) {
	*m = Reject{
		Reason:   RejectReason(h[2]),
		ITT:      h.word(16),
		StatSN:   h.word(24),
		ExpCmdSN: h.word(28),
		MaxCmdSN: h.word(32),
		DataSN:   h.word(36),
		AHS:      ahs,
		Data:     data,
	}
}
