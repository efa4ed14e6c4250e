package pdu

import "encoding/binary"

// BHSLen is the length of the Basic Header Segment.
const BHSLen = 48

// MaxAHSLength is the largest total AHS length expressible in the BHS
// (TotalAHSLength is one byte counting 4-byte words).
const MaxAHSLength = 255 * 4

// MaxDataSegmentLength is the largest DataSegmentLength expressible in the
// BHS (24 bits).
const MaxDataSegmentLength = 1<<24 - 1

// ReservedTag is the tag value 0xffffffff, used where RFC 7143 requires a
// reserved Initiator or Target Transfer Tag.
const ReservedTag uint32 = 0xffffffff

// BHS is a raw 48-byte Basic Header Segment. The accessors read and write
// the array in place and never allocate; they name the fields every PDU
// of a direction has at the same place (ITT, CmdSN/ExpStatSN for initiator
// PDUs, StatSN/ExpCmdSN/MaxCmdSN for target PDUs). Fields that depend on
// the opcode are read by decoding into the PDU's struct (DecodeHeader,
// which allocates nothing; reuse the struct per connection) and written by
// encoding one (AppendHeader(h[:0]) fills h in place).
type BHS [BHSLen]byte

// Opcode returns the opcode (byte 0, low 6 bits).
func (h *BHS) Opcode() Opcode { return Opcode(h[0] & 0x3f) }

// SetOpcode sets the opcode, keeping the Immediate bit.
func (h *BHS) SetOpcode(o Opcode) { h[0] = h[0]&0x40 | byte(o)&0x3f }

// Immediate reports the I bit (byte 0, 0x40) of initiator PDUs.
func (h *BHS) Immediate() bool { return h[0]&0x40 != 0 }

// SetImmediate sets or clears the I bit.
func (h *BHS) SetImmediate(v bool) { h[0] = setBit(h[0], 0x40, v) }

// Final reports the F bit (byte 1, 0x80). For Login PDUs this bit is T (Transit).
func (h *BHS) Final() bool { return h[1]&0x80 != 0 }

// SetFinal sets or clears the F bit.
func (h *BHS) SetFinal(v bool) { h[1] = setBit(h[1], 0x80, v) }

// Flags returns byte 1, the opcode-specific flags.
func (h *BHS) Flags() byte { return h[1] }

// TotalAHSLength returns the length of the additional header segments in
// bytes (byte 4 times 4).
func (h *BHS) TotalAHSLength() int { return int(h[4]) * 4 }

// SetTotalAHSLength sets byte 4 to n/4 (n must be a multiple of 4, at most MaxAHSLength).
func (h *BHS) SetTotalAHSLength(n int) { h[4] = byte(n / 4) }

// DataSegmentLength returns the 24-bit data segment length (bytes 5..7),
// without padding.
func (h *BHS) DataSegmentLength() int {
	return int(h[5])<<16 | int(h[6])<<8 | int(h[7])
}

// SetDataSegmentLength sets bytes 5..7; n must be at most MaxDataSegmentLength.
func (h *BHS) SetDataSegmentLength(n int) {
	h[5] = byte(n >> 16)
	h[6] = byte(n >> 8)
	h[7] = byte(n)
}

// LUN returns bytes 8..15 as a big-endian uint64 (the raw SAM LUN).
func (h *BHS) LUN() uint64 { return binary.BigEndian.Uint64(h[8:16]) }

// SetLUN sets bytes 8..15.
func (h *BHS) SetLUN(v uint64) { binary.BigEndian.PutUint64(h[8:16], v) }

// ITT returns the Initiator Task Tag (bytes 16..19).
func (h *BHS) ITT() uint32 { return h.word(16) }

// SetITT sets the Initiator Task Tag.
func (h *BHS) SetITT(v uint32) { h.putWord(16, v) }

// TTT returns bytes 20..23, the Target Transfer Tag in the PDUs that have one.
func (h *BHS) TTT() uint32 { return h.word(20) }

// CmdSN returns bytes 24..27 of an initiator PDU.
func (h *BHS) CmdSN() uint32 { return h.word(24) }

// ExpStatSN returns bytes 28..31 of an initiator PDU.
func (h *BHS) ExpStatSN() uint32 { return h.word(28) }

// SetCmdSN sets bytes 24..27 of an initiator PDU (a Data-Out or SNACK
// has no CmdSN: leave them zero).
func (h *BHS) SetCmdSN(v uint32) { h.putWord(24, v) }

// SetExpStatSN sets bytes 28..31 of an initiator PDU.
func (h *BHS) SetExpStatSN(v uint32) { h.putWord(28, v) }

// StatSN returns bytes 24..27 of a target PDU.
func (h *BHS) StatSN() uint32 { return h.word(24) }

// ExpCmdSN returns bytes 28..31 of a target PDU.
func (h *BHS) ExpCmdSN() uint32 { return h.word(28) }

// MaxCmdSN returns bytes 32..35 of a target PDU.
func (h *BHS) MaxCmdSN() uint32 { return h.word(32) }

// SetStatSN sets bytes 24..27 of a target PDU.
func (h *BHS) SetStatSN(v uint32) { h.putWord(24, v) }

// SetExpCmdSN sets bytes 28..31 of a target PDU.
func (h *BHS) SetExpCmdSN(v uint32) { h.putWord(28, v) }

// SetMaxCmdSN sets bytes 32..35 of a target PDU.
func (h *BHS) SetMaxCmdSN(v uint32) { h.putWord(32, v) }

// AdvancesStatSN reports whether the target PDU h carries status, so that
// its StatSN advances the connection's ExpStatSN (RFC 7143 section
// 4.2.2.2): a SCSI Response, a Data-In with the S bit, a NOP-In that
// answers a NOP-Out (not a target ping, ITT ReservedTag), and the Task
// Management, Login, Text and Logout Responses, Asynchronous Messages and
// Rejects. An R2T's StatSN only repeats the next one.
func (h *BHS) AdvancesStatSN() bool {
	switch h.Opcode() {
	case OpSCSIResponse, OpTaskMgmtResponse, OpLoginResponse, OpTextResponse,
		OpLogoutResponse, OpAsyncMessage, OpReject:
		return true
	case OpDataIn:
		return h[1]&0x01 != 0
	case OpNOPIn:
		return h.ITT() != ReservedTag
	}
	return false
}

// word returns the big-endian 32-bit word at byte offset off (0..44).
// It is unexported on purpose: code outside this package reads and writes
// fields through the named accessors and the PDU structs, never by offset
// (TestNoRawHeaderOffsetsOutsidePDU also keeps indexing out).
func (h *BHS) word(off int) uint32 { return binary.BigEndian.Uint32(h[off : off+4]) }

// putWord stores v big-endian at byte offset off (0..44).
func (h *BHS) putWord(off int, v uint32) { binary.BigEndian.PutUint32(h[off:off+4], v) }

// PaddedDataLength returns DataSegmentLength rounded up to a multiple of 4.
func (h *BHS) PaddedDataLength() int { return pad4(h.DataSegmentLength()) }

func setBit(b, mask byte, v bool) byte {
	if v {
		return b | mask
	}
	return b &^ mask
}

func pad4(n int) int { return (n + 3) &^ 3 }
