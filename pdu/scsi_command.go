package pdu

// TaskAttribute is the ATTR field of a SCSI Command (byte 1, low 3 bits).
type TaskAttribute uint8

// Task attributes (RFC 7143 §11.3.1.2).
const (
	AttrUntagged    TaskAttribute = 0
	AttrSimple      TaskAttribute = 1
	AttrOrdered     TaskAttribute = 2
	AttrHeadOfQueue TaskAttribute = 3
	AttrACA         TaskAttribute = 4
)

// String names the attribute.
func (a TaskAttribute) String() string {
	switch a {
	case AttrUntagged:
		return "Untagged"
	case AttrSimple:
		return "Simple"
	case AttrOrdered:
		return "Ordered"
	case AttrHeadOfQueue:
		return "Head of Queue"
	case AttrACA:
		return "ACA"
	}
	return "TaskAttribute(" + itoa(int(a)) + ")"
}

// AHS types (RFC 7143 §11.2.2).
const (
	AHSExtendedCDB        = 1
	AHSBidiReadDataLength = 2
)

// SCSICommand is a SCSI Command (opcode 0x01, RFC 7143 §11.3).
//
// CDB holds the whole CDB. On encode the first 16 bytes go into the BHS
// (zero-padded) and the rest into an Extended CDB AHS; on decode CDB is the
// 16 BHS bytes (aliasing src), or a new slice joining BHS and AHS bytes
// when an Extended CDB AHS is present.
type SCSICommand struct {
	Immediate bool
	Final     bool // F: no unsolicited Data-Out follows this PDU
	Read      bool // R: data flows target to initiator
	Write     bool // W: data flows initiator to target
	Attr      TaskAttribute
	LUN       uint64
	ITT       uint32
	// ExpectedDataTransferLength is the write length for a bidirectional
	// command, otherwise the length of the transfer.
	ExpectedDataTransferLength uint32
	CmdSN                      uint32
	ExpStatSN                  uint32
	CDB                        []byte
	// HasBidiReadLength adds a Bidirectional Expected Read-Data Length AHS
	// (type 2) carrying ExpectedBidiReadDataLength. Set it for
	// bidirectional (Read and Write) commands.
	HasBidiReadLength          bool
	ExpectedBidiReadDataLength uint32
	// AHS holds additional header segments of other types, emitted after
	// the extended CDB and bidirectional AHS.
	AHS  []byte
	Data []byte // immediate data
}

// Opcode returns OpSCSICommand.
func (*SCSICommand) Opcode() Opcode { return OpSCSICommand }

// DataSegment returns m.Data.
func (m *SCSICommand) DataSegment() []byte { return m.Data }

func (m *SCSICommand) extCDBLen() int {
	if len(m.CDB) <= 16 {
		return 0
	}
	// AHSLength(2) + AHSType(1) + reserved(1) + CDB bytes after 16, padded.
	return pad4(4 + len(m.CDB) - 16)
}

func (m *SCSICommand) ahsLen() int {
	n := m.extCDBLen() + pad4(len(m.AHS))
	if m.HasBidiReadLength {
		n += 8
	}
	return n
}

// AppendHeader appends the BHS and AHS. CDBs longer than 16 bytes produce
// an Extended CDB AHS.
func (m *SCSICommand) AppendHeader(dst []byte) []byte {
	flags := byte(m.Attr & 7)
	if m.Final {
		flags |= 0x80
	}
	if m.Read {
		flags |= 0x40
	}
	if m.Write {
		flags |= 0x20
	}
	dst, h := beginHeader(dst, OpSCSICommand, m.Immediate, flags, m.ahsLen(), len(m.Data))
	h.SetLUN(m.LUN)
	h.putWord(16, m.ITT)
	h.putWord(20, m.ExpectedDataTransferLength)
	h.putWord(24, m.CmdSN)
	h.putWord(28, m.ExpStatSN)
	copy(h[32:48], m.CDB)
	if n := m.extCDBLen(); n > 0 {
		ext := m.CDB[16:]
		dst = append(dst, byte((len(ext)+1)>>8), byte(len(ext)+1), AHSExtendedCDB, 0)
		dst = append(dst, ext...)
		dst = appendPad(dst, len(ext))
	}
	if m.HasBidiReadLength {
		l := m.ExpectedBidiReadDataLength
		dst = append(dst, 0, 5, AHSBidiReadDataLength, 0, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
	}
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *SCSICommand) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src. Data, AHS and (for CDBs up to 16 bytes) CDB alias src.
func (m *SCSICommand) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpSCSICommand)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *SCSICommand) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpSCSICommand); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *SCSICommand) set(h *BHS, ahs, data []byte) {
	*m = SCSICommand{
		Immediate:                  h.Immediate(),
		Final:                      h[1]&0x80 != 0,
		Read:                       h[1]&0x40 != 0,
		Write:                      h[1]&0x20 != 0,
		Attr:                       TaskAttribute(h[1] & 7),
		LUN:                        h.LUN(),
		ITT:                        h.word(16),
		ExpectedDataTransferLength: h.word(20),
		CmdSN:                      h.word(24),
		ExpStatSN:                  h.word(28),
		CDB:                        h[32:48:48],
		Data:                       data,
	}
	// Recognise an Extended CDB AHS first, then a Bidirectional Read
	// length AHS, in the canonical form AppendHeader produces; anything
	// else stays in m.AHS verbatim so re-encoding is byte-identical.
	if len(ahs) >= 4 && ahs[2] == AHSExtendedCDB {
		l := int(be16(ahs))
		if l < 2 || 3+l > len(ahs) || ahs[3] != 0 || !allZero(ahs[3+l:pad4(3+l)]) {
			// Not the canonical form: keep everything raw.
			m.AHS = ahs
			return
		}
		ext := ahs[4 : 3+l]
		cdb := make([]byte, 16+len(ext))
		copy(cdb, h[32:48])
		copy(cdb[16:], ext)
		m.CDB = cdb
		ahs = ahs[pad4(3+l):]
	}
	if len(ahs) >= 8 && ahs[2] == AHSBidiReadDataLength && be16(ahs) == 5 && ahs[3] == 0 {
		m.HasBidiReadLength = true
		m.ExpectedBidiReadDataLength = be32(ahs[4:8])
		ahs = ahs[8:]
	}
	if len(ahs) > 0 {
		m.AHS = ahs
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
