package pdu

// DataOut is a SCSI Data-Out (opcode 0x05, RFC 7143 §11.7).
type DataOut struct {
	Final        bool
	LUN          uint64
	ITT          uint32
	TTT          uint32 // the R2T's TTT, or ReservedTag for unsolicited data
	ExpStatSN    uint32
	DataSN       uint32
	BufferOffset uint32
	AHS          []byte
	Data         []byte
}

// Opcode returns OpDataOut.
func (*DataOut) Opcode() Opcode { return OpDataOut }

// DataSegment returns m.Data.
func (m *DataOut) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *DataOut) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpDataOut, false, finalCont(m.Final, false), len(m.AHS), len(m.Data))
	h.SetLUN(m.LUN)
	h.putWord(16, m.ITT)
	h.putWord(20, m.TTT)
	h.putWord(28, m.ExpStatSN)
	h.putWord(36, m.DataSN)
	h.putWord(40, m.BufferOffset)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *DataOut) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *DataOut) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpDataOut)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *DataOut) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpDataOut); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *DataOut) set(h *BHS, ahs, data []byte) {
	*m = DataOut{
		Final:        h[1]&0x80 != 0,
		LUN:          h.LUN(),
		ITT:          h.word(16),
		TTT:          h.word(20),
		ExpStatSN:    h.word(28),
		DataSN:       h.word(36),
		BufferOffset: h.word(40),
		AHS:          ahs,
		Data:         data,
	}
}

// DataIn is a SCSI Data-In (opcode 0x25, RFC 7143 §11.7).
type DataIn struct {
	Final             bool // F
	Acknowledge       bool // A: the target wants a DataACK SNACK
	ResidualOverflow  bool // O (valid only with StatusPresent)
	ResidualUnderflow bool // U (valid only with StatusPresent)
	StatusPresent     bool // S: Status and StatSN are valid; the command is complete
	Status            uint8
	LUN               uint64
	ITT               uint32
	TTT               uint32
	StatSN            uint32
	ExpCmdSN          uint32
	MaxCmdSN          uint32
	DataSN            uint32
	BufferOffset      uint32
	ResidualCount     uint32
	AHS               []byte
	Data              []byte
}

// Opcode returns OpDataIn.
func (*DataIn) Opcode() Opcode { return OpDataIn }

// DataSegment returns m.Data.
func (m *DataIn) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *DataIn) AppendHeader(dst []byte) []byte {
	flags := finalCont(m.Final, m.Acknowledge)
	if m.ResidualOverflow {
		flags |= 0x04
	}
	if m.ResidualUnderflow {
		flags |= 0x02
	}
	if m.StatusPresent {
		flags |= 0x01
	}
	dst, h := beginHeader(dst, OpDataIn, false, flags, len(m.AHS), len(m.Data))
	h[3] = m.Status
	h.SetLUN(m.LUN)
	h.putWord(16, m.ITT)
	h.putWord(20, m.TTT)
	h.putWord(24, m.StatSN)
	h.putWord(28, m.ExpCmdSN)
	h.putWord(32, m.MaxCmdSN)
	h.putWord(36, m.DataSN)
	h.putWord(40, m.BufferOffset)
	h.putWord(44, m.ResidualCount)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *DataIn) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *DataIn) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpDataIn)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *DataIn) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpDataIn); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *DataIn) set(h *BHS, ahs, data []byte) {
	// Field by field rather than *m = DataIn{...}: the composite literal
	// would be built in a temporary and copied (h might alias m).
	flags := h[1]
	m.Final = flags&0x80 != 0
	m.Acknowledge = flags&0x40 != 0
	m.ResidualOverflow = flags&0x04 != 0
	m.ResidualUnderflow = flags&0x02 != 0
	m.StatusPresent = flags&0x01 != 0
	m.Status = h[3]
	m.LUN = h.LUN()
	m.ITT = h.word(16)
	m.TTT = h.word(20)
	m.StatSN = h.word(24)
	m.ExpCmdSN = h.word(28)
	m.MaxCmdSN = h.word(32)
	m.DataSN = h.word(36)
	m.BufferOffset = h.word(40)
	m.ResidualCount = h.word(44)
	m.AHS = ahs
	m.Data = data
}
