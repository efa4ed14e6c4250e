package pdu

// SNACKType is the Type field of a SNACK Request.
type SNACKType uint8

// SNACK types (RFC 7143 §11.16.1).
const (
	SNACKDataR2T SNACKType = 0
	SNACKStatus  SNACKType = 1
	SNACKDataACK SNACKType = 2
	SNACKRData   SNACKType = 3
)

// String names the type.
func (t SNACKType) String() string {
	switch t {
	case SNACKDataR2T:
		return "Data/R2T"
	case SNACKStatus:
		return "Status"
	case SNACKDataACK:
		return "DataACK"
	case SNACKRData:
		return "R-Data"
	}
	return "SNACKType(" + itoa(int(t)) + ")"
}

// SNACK is a SNACK Request (opcode 0x10, RFC 7143 §11.16).
type SNACK struct {
	Type      SNACKType
	LUN       uint64
	ITT       uint32
	TTT       uint32 // TTT (DataACK) or SNACK Tag (R-Data), else ReservedTag
	ExpStatSN uint32
	BegRun    uint32
	RunLength uint32
	AHS       []byte
	Data      []byte
}

// Opcode returns OpSNACK.
func (*SNACK) Opcode() Opcode { return OpSNACK }

// DataSegment returns m.Data.
func (m *SNACK) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *SNACK) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpSNACK, false, 0x80|byte(m.Type)&0x0f, len(m.AHS), len(m.Data))
	h.SetLUN(m.LUN)
	h.putWord(16, m.ITT)
	h.putWord(20, m.TTT)
	h.putWord(28, m.ExpStatSN)
	h.putWord(36, m.BegRun)
	h.putWord(40, m.RunLength)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *SNACK) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *SNACK) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpSNACK)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *SNACK) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpSNACK); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *SNACK) set(h *BHS, ahs, data []byte) {
	*m = SNACK{
		Type:      SNACKType(h[1] & 0x0f),
		LUN:       h.LUN(),
		ITT:       h.word(16),
		TTT:       h.word(20),
		ExpStatSN: h.word(28),
		BegRun:    h.word(36),
		RunLength: h.word(40),
		AHS:       ahs,
		Data:      data,
	}
}
