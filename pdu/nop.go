package pdu

// NOPOut is a NOP-Out (opcode 0x00, RFC 7143 §11.18): a ping from the
// initiator, or the answer to a target's NOP-In.
type NOPOut struct {
	Immediate bool
	LUN       uint64 // bytes 8..15
	ITT       uint32 // ReservedTag when answering a NOP-In
	TTT       uint32 // ReservedTag for a ping; the NOP-In's TTT when answering
	CmdSN     uint32
	ExpStatSN uint32
	AHS       []byte // uninterpreted additional header segments
	Data      []byte // ping data
}

// Opcode returns OpNOPOut.
func (*NOPOut) Opcode() Opcode { return OpNOPOut }

// DataSegment returns m.Data.
func (m *NOPOut) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *NOPOut) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpNOPOut, m.Immediate, 0x80, len(m.AHS), len(m.Data))
	h.SetLUN(m.LUN)
	h.putWord(16, m.ITT)
	h.putWord(20, m.TTT)
	h.putWord(24, m.CmdSN)
	h.putWord(28, m.ExpStatSN)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *NOPOut) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *NOPOut) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpNOPOut)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *NOPOut) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpNOPOut); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *NOPOut) set(h *BHS, ahs, data []byte) {
	*m = NOPOut{
		Immediate: h.Immediate(),
		LUN:       h.LUN(),
		ITT:       h.word(16),
		TTT:       h.word(20),
		CmdSN:     h.word(24),
		ExpStatSN: h.word(28),
		AHS:       ahs,
		Data:      data,
	}
}

// NOPIn is a NOP-In (opcode 0x20, RFC 7143 §11.19): the answer to a
// NOP-Out, or a ping from the target (TTT not ReservedTag).
type NOPIn struct {
	LUN      uint64
	ITT      uint32 // the NOP-Out's ITT, or ReservedTag for a target ping
	TTT      uint32 // ReservedTag when answering a NOP-Out
	StatSN   uint32
	ExpCmdSN uint32
	MaxCmdSN uint32
	AHS      []byte
	Data     []byte
}

// Opcode returns OpNOPIn.
func (*NOPIn) Opcode() Opcode { return OpNOPIn }

// DataSegment returns m.Data.
func (m *NOPIn) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *NOPIn) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpNOPIn, false, 0x80, len(m.AHS), len(m.Data))
	h.SetLUN(m.LUN)
	h.putWord(16, m.ITT)
	h.putWord(20, m.TTT)
	h.putWord(24, m.StatSN)
	h.putWord(28, m.ExpCmdSN)
	h.putWord(32, m.MaxCmdSN)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *NOPIn) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *NOPIn) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpNOPIn)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *NOPIn) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpNOPIn); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *NOPIn) set(h *BHS, ahs, data []byte) {
	// Field by field: a composite literal would be built in a temporary
	// and copied (h might alias m).
	m.LUN = h.LUN()
	m.ITT = h.word(16)
	m.TTT = h.word(20)
	m.StatSN = h.word(24)
	m.ExpCmdSN = h.word(28)
	m.MaxCmdSN = h.word(32)
	m.AHS = ahs
	m.Data = data
}
