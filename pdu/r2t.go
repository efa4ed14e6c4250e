package pdu

// R2T is a Ready To Transfer (opcode 0x31, RFC 7143 §11.8).
type R2T struct {
	LUN                       uint64
	ITT                       uint32
	TTT                       uint32
	StatSN                    uint32
	ExpCmdSN                  uint32
	MaxCmdSN                  uint32
	R2TSN                     uint32
	BufferOffset              uint32
	DesiredDataTransferLength uint32
	AHS                       []byte
	Data                      []byte
}

// Opcode returns OpR2T.
func (*R2T) Opcode() Opcode { return OpR2T }

// DataSegment returns m.Data.
func (m *R2T) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *R2T) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpR2T, false, 0x80, len(m.AHS), len(m.Data))
	h.SetLUN(m.LUN)
	h.putWord(16, m.ITT)
	h.putWord(20, m.TTT)
	h.putWord(24, m.StatSN)
	h.putWord(28, m.ExpCmdSN)
	h.putWord(32, m.MaxCmdSN)
	h.putWord(36, m.R2TSN)
	h.putWord(40, m.BufferOffset)
	h.putWord(44, m.DesiredDataTransferLength)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *R2T) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *R2T) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpR2T)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *R2T) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpR2T); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *R2T) set(h *BHS, ahs, data []byte) {
	// Field by field: a composite literal would be built in a temporary
	// and copied (h might alias m).
	m.LUN = h.LUN()
	m.ITT = h.word(16)
	m.TTT = h.word(20)
	m.StatSN = h.word(24)
	m.ExpCmdSN = h.word(28)
	m.MaxCmdSN = h.word(32)
	m.R2TSN = h.word(36)
	m.BufferOffset = h.word(40)
	m.DesiredDataTransferLength = h.word(44)
	m.AHS = ahs
	m.Data = data
}
