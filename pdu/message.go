package pdu

import "encoding/binary"

// Message is one PDU type. Every PDU struct in this package implements it
// with a pointer receiver.
type Message interface {
	// Opcode returns the PDU's opcode.
	Opcode() Opcode
	// AppendHeader appends the BHS and any AHS to dst, with TotalAHSLength
	// and DataSegmentLength (len(Data)) filled in.
	AppendHeader(dst []byte) []byte
	// Encode appends AppendHeader, the data segment and padding to a
	// multiple of 4 bytes. Digests are not added: the Writer adds them.
	Encode(dst []byte) []byte
	// Decode parses src = BHS + AHS + data segment (padding optional).
	// Slices in the result (Data, AHS, CDB) alias src. Errors are *FormatError.
	Decode(src []byte) error
}

// DataSegmenter is implemented by every PDU struct in this package. The
// Writer uses it to send the data segment without copying it.
type DataSegmenter interface {
	DataSegment() []byte
}

// Decode decodes one PDU (BHS + AHS + data, padding optional), dispatching
// on its opcode. An unknown opcode yields a *FormatError wrapping
// ErrUnknownOpcode. The returned message's slices alias src.
func Decode(src []byte) (Message, error) {
	if len(src) < BHSLen {
		return nil, formatErr(0, ErrTruncated, "%d bytes, shorter than a BHS", len(src))
	}
	m := New(Opcode(src[0] & 0x3f))
	if m == nil {
		return nil, formatErr(Opcode(src[0]&0x3f), ErrUnknownOpcode, "opcode 0x%02x", src[0]&0x3f)
	}
	if err := m.Decode(src); err != nil {
		return nil, err
	}
	return m, nil
}

// HeaderDecoder is implemented by every PDU struct in this package:
// DecodeHeader fills the struct from a BHS and AHS as Reader.ReadHeader
// returns them, leaving Data nil. Fields that alias ahs (AHS, and a 16-byte
// CDB aliases h) are valid only as long as h and ahs are.
type HeaderDecoder interface {
	DecodeHeader(h *BHS, ahs []byte) error
}

// DecodeHeader decodes a BHS and AHS (as Reader.ReadHeader returns them)
// into a new message of the right type, with Data nil.
func DecodeHeader(h *BHS, ahs []byte) (Message, error) {
	if h == nil {
		return nil, formatErr(0, ErrTruncated, "nil header")
	}
	m := New(h.Opcode())
	if m == nil {
		return nil, formatErr(h.Opcode(), ErrUnknownOpcode, "opcode 0x%02x", byte(h.Opcode()))
	}
	if err := m.(HeaderDecoder).DecodeHeader(h, ahs); err != nil {
		return nil, err
	}
	return m, nil
}

// New returns a new zero message for opcode o, or nil if o is unknown.
func New(o Opcode) Message {
	switch o {
	case OpNOPOut:
		return new(NOPOut)
	case OpSCSICommand:
		return new(SCSICommand)
	case OpTaskMgmtRequest:
		return new(TaskMgmtRequest)
	case OpLoginRequest:
		return new(LoginRequest)
	case OpTextRequest:
		return new(TextRequest)
	case OpDataOut:
		return new(DataOut)
	case OpLogoutRequest:
		return new(LogoutRequest)
	case OpSNACK:
		return new(SNACK)
	case OpNOPIn:
		return new(NOPIn)
	case OpSCSIResponse:
		return new(SCSIResponse)
	case OpTaskMgmtResponse:
		return new(TaskMgmtResponse)
	case OpLoginResponse:
		return new(LoginResponse)
	case OpTextResponse:
		return new(TextResponse)
	case OpDataIn:
		return new(DataIn)
	case OpLogoutResponse:
		return new(LogoutResponse)
	case OpR2T:
		return new(R2T)
	case OpAsyncMessage:
		return new(AsyncMessage)
	case OpReject:
		return new(Reject)
	}
	return nil
}

// beginHeader appends a zeroed BHS to dst and fills byte 0 (opcode and I
// bit), byte 1 (flags), TotalAHSLength (rounded up to words) and
// DataSegmentLength. It returns the grown slice and a pointer to the BHS.
// The pointer is valid until dst is appended to again.
func beginHeader(dst []byte, op Opcode, immediate bool, flags byte, ahsLen, dataLen int) ([]byte, *BHS) {
	start := len(dst)
	if cap(dst)-start >= BHSLen { // encoding in place (AppendHeader(h[:0])): no append
		dst = dst[:start+BHSLen]
		clear(dst[start:])
	} else {
		dst = append(dst, make([]byte, BHSLen)...)
	}
	h := (*BHS)(dst[start : start+BHSLen])
	h[0] = byte(op) & 0x3f
	if immediate {
		h[0] |= 0x40
	}
	h[1] = flags
	h[4] = byte(pad4(ahsLen) / 4)
	h.SetDataSegmentLength(dataLen)
	return dst, h
}

// appendAHS appends raw AHS bytes padded to a multiple of 4.
func appendAHS(dst, ahs []byte) []byte {
	if len(ahs) == 0 {
		return dst
	}
	dst = append(dst, ahs...)
	return appendPad(dst, len(ahs))
}

// appendPad appends zero bytes to round n up to a multiple of 4.
func appendPad(dst []byte, n int) []byte {
	var zero [3]byte
	return append(dst, zero[:pad4(n)-n]...)
}

// encode appends header, data and padding.
func encode(dst []byte, m Message, data []byte) []byte {
	dst = m.AppendHeader(dst)
	dst = append(dst, data...)
	return appendPad(dst, len(data))
}

// split validates the lengths of src for opcode op and returns its BHS,
// AHS and data segment (aliasing src, capacity-limited).
func split(src []byte, op Opcode) (h *BHS, ahs, data []byte, err error) {
	if len(src) < BHSLen {
		return nil, nil, nil, formatErr(op, ErrTruncated, "%d bytes, shorter than a BHS", len(src))
	}
	h = (*BHS)(src[:BHSLen])
	if got := h.Opcode(); got != op {
		return nil, nil, nil, formatErr(got, nil, "opcode 0x%02x, want 0x%02x (%v)", byte(got), byte(op), op)
	}
	ahsLen := h.TotalAHSLength()
	dsl := h.DataSegmentLength()
	end := BHSLen + ahsLen + dsl
	if len(src) < end {
		return nil, nil, nil, formatErr(op, ErrTruncated, "%d bytes, header says %d (AHS %d, data %d)", len(src), end, ahsLen, dsl)
	}
	if len(src) > BHSLen+ahsLen+pad4(dsl) {
		return nil, nil, nil, formatErr(op, nil, "%d bytes, header says %d (AHS %d, data %d, padding %d)", len(src), end, ahsLen, dsl, pad4(dsl)-dsl)
	}
	if ahsLen > 0 {
		ahs = src[BHSLen : BHSLen+ahsLen : BHSLen+ahsLen]
	}
	if dsl > 0 {
		data = src[BHSLen+ahsLen : end : end]
	}
	return h, ahs, data, nil
}

// checkHeader validates a BHS and AHS given separately.
func checkHeader(h *BHS, ahs []byte, op Opcode) error {
	if h == nil {
		return formatErr(op, ErrTruncated, "nil header")
	}
	if got := h.Opcode(); got != op {
		return formatErr(got, nil, "opcode 0x%02x, want 0x%02x (%v)", byte(got), byte(op), op)
	}
	if len(ahs) != h.TotalAHSLength() {
		return formatErr(op, ErrTruncated, "%d AHS bytes, header says %d", len(ahs), h.TotalAHSLength())
	}
	return nil
}

func be32(b []byte) uint32     { return binary.BigEndian.Uint32(b) }
func be16(b []byte) uint16     { return binary.BigEndian.Uint16(b) }
func put32(b []byte, v uint32) { binary.BigEndian.PutUint32(b, v) }
func put16(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }
func be64(b []byte) uint64     { return binary.BigEndian.Uint64(b) }
func put64(b []byte, v uint64) { binary.BigEndian.PutUint64(b, v) }
