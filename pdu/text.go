package pdu

// TextRequest is a Text Request (opcode 0x04, RFC 7143 §11.10).
type TextRequest struct {
	Immediate bool
	Final     bool // F
	Continue  bool // C
	LUN       uint64
	ITT       uint32
	TTT       uint32 // ReservedTag to start; the target's TTT to continue
	CmdSN     uint32
	ExpStatSN uint32
	AHS       []byte
	Data      []byte // text key=value pairs
}

// Opcode returns OpTextRequest.
func (*TextRequest) Opcode() Opcode { return OpTextRequest }

// DataSegment returns m.Data.
func (m *TextRequest) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *TextRequest) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpTextRequest, m.Immediate, finalCont(m.Final, m.Continue), len(m.AHS), len(m.Data))
	h.SetLUN(m.LUN)
	h.putWord(16, m.ITT)
	h.putWord(20, m.TTT)
	h.putWord(24, m.CmdSN)
	h.putWord(28, m.ExpStatSN)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *TextRequest) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *TextRequest) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpTextRequest)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *TextRequest) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpTextRequest); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *TextRequest) set(h *BHS, ahs, data []byte) {
	*m = TextRequest{
		Immediate: h.Immediate(),
		Final:     h[1]&0x80 != 0,
		Continue:  h[1]&0x40 != 0,
		LUN:       h.LUN(),
		ITT:       h.word(16),
		TTT:       h.word(20),
		CmdSN:     h.word(24),
		ExpStatSN: h.word(28),
		AHS:       ahs,
		Data:      data,
	}
}

// TextResponse is a Text Response (opcode 0x24, RFC 7143 §11.11).
type TextResponse struct {
	Final    bool
	Continue bool
	LUN      uint64
	ITT      uint32
	TTT      uint32 // ReservedTag on the final response
	StatSN   uint32
	ExpCmdSN uint32
	MaxCmdSN uint32
	AHS      []byte
	Data     []byte
}

// Opcode returns OpTextResponse.
func (*TextResponse) Opcode() Opcode { return OpTextResponse }

// DataSegment returns m.Data.
func (m *TextResponse) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *TextResponse) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpTextResponse, false, finalCont(m.Final, m.Continue), len(m.AHS), len(m.Data))
	h.SetLUN(m.LUN)
	h.putWord(16, m.ITT)
	h.putWord(20, m.TTT)
	h.putWord(24, m.StatSN)
	h.putWord(28, m.ExpCmdSN)
	h.putWord(32, m.MaxCmdSN)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *TextResponse) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *TextResponse) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpTextResponse)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *TextResponse) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpTextResponse); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *TextResponse) set(h *BHS, ahs, data []byte) {
	*m = TextResponse{
		Final:    h[1]&0x80 != 0,
		Continue: h[1]&0x40 != 0,
		LUN:      h.LUN(),
		ITT:      h.word(16),
		TTT:      h.word(20),
		StatSN:   h.word(24),
		ExpCmdSN: h.word(28),
		MaxCmdSN: h.word(32),
		AHS:      ahs,
		Data:     data,
	}
}

func finalCont(f, c bool) byte {
	var b byte
	if f {
		b |= 0x80
	}
	if c {
		b |= 0x40
	}
	return b
}
