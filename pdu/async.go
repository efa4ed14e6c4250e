package pdu

// AsyncEvent is the AsyncEvent field of an Asynchronous Message.
type AsyncEvent uint8

// Asynchronous events (RFC 7143 §11.9.1).
const (
	AsyncSCSIEvent          AsyncEvent = 0
	AsyncLogoutRequest      AsyncEvent = 1
	AsyncDropConnection     AsyncEvent = 2
	AsyncDropAllConnections AsyncEvent = 3
	AsyncNegotiationRequest AsyncEvent = 4
	AsyncTaskTermination    AsyncEvent = 5
	AsyncVendorSpecific     AsyncEvent = 255
)

// String names the event.
func (e AsyncEvent) String() string {
	switch e {
	case AsyncSCSIEvent:
		return "SCSI asynchronous event"
	case AsyncLogoutRequest:
		return "logout request"
	case AsyncDropConnection:
		return "drop connection"
	case AsyncDropAllConnections:
		return "drop all connections"
	case AsyncNegotiationRequest:
		return "negotiation request"
	case AsyncTaskTermination:
		return "task termination"
	case AsyncVendorSpecific:
		return "vendor specific"
	}
	return "AsyncEvent(" + itoa(int(e)) + ")"
}

// AsyncMessage is an Asynchronous Message (opcode 0x32, RFC 7143 §11.9).
// For AsyncSCSIEvent the data segment holds SenseLength and sense data.
type AsyncMessage struct {
	LUN        uint64
	ITT        uint32 // ReservedTag on the wire
	StatSN     uint32
	ExpCmdSN   uint32
	MaxCmdSN   uint32
	Event      AsyncEvent
	VCode      uint8
	Parameter1 uint16
	Parameter2 uint16
	Parameter3 uint16
	AHS        []byte
	Data       []byte
}

// Opcode returns OpAsyncMessage.
func (*AsyncMessage) Opcode() Opcode { return OpAsyncMessage }

// DataSegment returns m.Data.
func (m *AsyncMessage) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *AsyncMessage) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpAsyncMessage, false, 0x80, len(m.AHS), len(m.Data))
	h.SetLUN(m.LUN)
	h.putWord(16, m.ITT)
	h.putWord(24, m.StatSN)
	h.putWord(28, m.ExpCmdSN)
	h.putWord(32, m.MaxCmdSN)
	h[36] = byte(m.Event)
	h[37] = m.VCode
	put16(h[38:40], m.Parameter1)
	put16(h[40:42], m.Parameter2)
	put16(h[42:44], m.Parameter3)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *AsyncMessage) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *AsyncMessage) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpAsyncMessage)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *AsyncMessage) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpAsyncMessage); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *AsyncMessage) set(h *BHS, ahs, data []byte) {
	*m = AsyncMessage{
		LUN:        h.LUN(),
		ITT:        h.word(16),
		StatSN:     h.word(24),
		ExpCmdSN:   h.word(28),
		MaxCmdSN:   h.word(32),
		Event:      AsyncEvent(h[36]),
		VCode:      h[37],
		Parameter1: be16(h[38:40]),
		Parameter2: be16(h[40:42]),
		Parameter3: be16(h[42:44]),
		AHS:        ahs,
		Data:       data,
	}
}
