package pdu

// ServiceResponse is the Response field of a SCSI Response (byte 2).
type ServiceResponse uint8

// SCSI Response codes (RFC 7143 §11.4.3).
const (
	ResponseCommandCompleted ServiceResponse = 0x00
	ResponseTargetFailure    ServiceResponse = 0x01
)

// SCSIResponse is a SCSI Response (opcode 0x21, RFC 7143 §11.4).
type SCSIResponse struct {
	BidiOverflow      bool // o: bidirectional read residual overflow
	BidiUnderflow     bool // u: bidirectional read residual underflow
	ResidualOverflow  bool // O
	ResidualUnderflow bool // U
	Response          ServiceResponse
	Status            uint8 // SCSI status byte (package scsi names them)
	// LUN is bytes 8..15, reserved in a SCSI Response; kept so that
	// captures re-encode byte-identically.
	LUN                   uint64
	ITT                   uint32
	SNACKTag              uint32
	StatSN                uint32
	ExpCmdSN              uint32
	MaxCmdSN              uint32
	ExpDataSN             uint32
	BidiReadResidualCount uint32
	ResidualCount         uint32
	AHS                   []byte
	// Data is the data segment: a 2-byte SenseLength, sense data and
	// optional response data. See SenseData.
	Data []byte
}

// Opcode returns OpSCSIResponse.
func (*SCSIResponse) Opcode() Opcode { return OpSCSIResponse }

// DataSegment returns m.Data.
func (m *SCSIResponse) DataSegment() []byte { return m.Data }

// SenseData returns the sense bytes in the data segment (after the 2-byte
// SenseLength), or nil if there are none. A SenseLength larger than the
// data segment yields a *FormatError.
func (m *SCSIResponse) SenseData() ([]byte, error) {
	if len(m.Data) == 0 {
		return nil, nil
	}
	if len(m.Data) < 2 {
		return nil, formatErr(OpSCSIResponse, ErrTruncated, "data segment of %d bytes has no SenseLength", len(m.Data))
	}
	n := int(be16(m.Data))
	if 2+n > len(m.Data) {
		return nil, formatErr(OpSCSIResponse, ErrTruncated, "SenseLength %d exceeds data segment of %d bytes", n, len(m.Data))
	}
	if n == 0 {
		return nil, nil
	}
	return m.Data[2 : 2+n : 2+n], nil
}

// AppendHeader appends the BHS and AHS.
func (m *SCSIResponse) AppendHeader(dst []byte) []byte {
	flags := byte(0x80)
	if m.BidiOverflow {
		flags |= 0x10
	}
	if m.BidiUnderflow {
		flags |= 0x08
	}
	if m.ResidualOverflow {
		flags |= 0x04
	}
	if m.ResidualUnderflow {
		flags |= 0x02
	}
	dst, h := beginHeader(dst, OpSCSIResponse, false, flags, len(m.AHS), len(m.Data))
	h[2] = byte(m.Response)
	h[3] = m.Status
	h.SetLUN(m.LUN)
	h.putWord(16, m.ITT)
	h.putWord(20, m.SNACKTag)
	h.putWord(24, m.StatSN)
	h.putWord(28, m.ExpCmdSN)
	h.putWord(32, m.MaxCmdSN)
	h.putWord(36, m.ExpDataSN)
	h.putWord(40, m.BidiReadResidualCount)
	h.putWord(44, m.ResidualCount)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *SCSIResponse) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *SCSIResponse) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpSCSIResponse)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *SCSIResponse) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpSCSIResponse); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *SCSIResponse) set(h *BHS, ahs, data []byte) {
	// Field by field: a composite literal would be built in a temporary
	// and copied (h might alias m).
	m.BidiOverflow = h[1]&0x10 != 0
	m.BidiUnderflow = h[1]&0x08 != 0
	m.ResidualOverflow = h[1]&0x04 != 0
	m.ResidualUnderflow = h[1]&0x02 != 0
	m.Response = ServiceResponse(h[2])
	m.Status = h[3]
	m.LUN = h.LUN()
	m.ITT = h.word(16)
	m.SNACKTag = h.word(20)
	m.StatSN = h.word(24)
	m.ExpCmdSN = h.word(28)
	m.MaxCmdSN = h.word(32)
	m.ExpDataSN = h.word(36)
	m.BidiReadResidualCount = h.word(40)
	m.ResidualCount = h.word(44)
	m.AHS = ahs
	m.Data = data
}
