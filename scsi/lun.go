package scsi

import (
	"encoding/binary"
	"fmt"
)

// AddressMethod is the ADDRESS METHOD of the first level of a SAM LUN.
type AddressMethod uint8

// Address methods (SAM-5 4.7).
const (
	AddrPeripheral  AddressMethod = 0 // 00b
	AddrFlat        AddressMethod = 1 // 01b
	AddrLogicalUnit AddressMethod = 2 // 10b
	AddrExtended    AddressMethod = 3 // 11b
)

func (m AddressMethod) String() string {
	switch m {
	case AddrPeripheral:
		return "peripheral device"
	case AddrFlat:
		return "flat space"
	case AddrLogicalUnit:
		return "logical unit"
	}
	return "extended logical unit"
}

// Largest LUN numbers of each encoding EncodeLUN chooses.
const (
	MaxPeripheralLUN       = 0xff
	MaxFlatLUN             = 0x3fff
	MaxExtendedFlatLUN     = 0xffffff
	MaxLongExtendedFlatLUN = 0xffffffffff
)

// EncodeLUN returns the 8-byte SAM encoding (as a big-endian uint64, the
// form of the pdu LUN field) of LUN number n: peripheral device addressing
// for n < 256 (byte 0 = 0, byte 1 = n), flat space addressing for n < 16384
// (0x40|n>>8, n&0xff), extended flat space addressing (0xD2 + 3 bytes) for
// n < 2^24 and long extended flat space addressing (0xE2 + 5 bytes) for
// n < 2^40. A larger n cannot be a LUN number: it is taken to be an encoded
// value already (see DecodeLUN) and returned unchanged.
func EncodeLUN(n uint64) uint64 {
	switch {
	case n <= MaxPeripheralLUN:
		return n << 48
	case n <= MaxFlatLUN:
		return (0x4000 | n) << 48
	case n <= MaxExtendedFlatLUN:
		return (0xd2<<24 | n) << 32
	case n <= MaxLongExtendedFlatLUN:
		return (0xe2<<40 | n) << 16
	}
	return n
}

// DecodeLUN returns the LUN number of an 8-byte SAM LUN: the inverse of
// EncodeLUN. Addresses with no plain number (a bus other than 0,
// hierarchical levels, the logical unit address method, well-known LUNs)
// are returned unchanged, so that EncodeLUN(DecodeLUN(raw)) == raw for them
// too; ParseLUN describes them.
func DecodeLUN(raw uint64) uint64 {
	a := ParseLUN(raw)
	if a.Numbered {
		return a.LUN
	}
	return raw
}

// LUNAddress describes the first level of an 8-byte SAM LUN.
type LUNAddress struct {
	Raw      uint64
	Method   AddressMethod
	Numbered bool   // LUN is a plain LUN number (DecodeLUN returns it)
	LUN      uint64 // the number, or the LUN field of the method
	Bus      uint8  // peripheral device addressing: BUS IDENTIFIER; logical unit addressing: BUS NUMBER
	Target   uint8  // logical unit addressing: TARGET
	// Extended address method: LENGTH and EXTENDED ADDRESS METHOD.
	ExtLength, ExtMethod uint8
	WellKnown            bool // well-known logical unit (0xC1)
	MultiLevel           bool // bytes beyond the first level are not zero
}

// ParseLUN decodes the first level of an 8-byte SAM LUN.
func ParseLUN(raw uint64) LUNAddress {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], raw)
	a := LUNAddress{Raw: raw, Method: AddressMethod(b[0] >> 6)}
	rest := func(from int) bool {
		for _, x := range b[from:] {
			if x != 0 {
				return true
			}
		}
		return false
	}
	switch a.Method {
	case AddrPeripheral:
		a.Bus = b[0] & 0x3f
		a.LUN = uint64(b[1])
		a.MultiLevel = rest(2)
		a.Numbered = a.Bus == 0 && !a.MultiLevel
	case AddrFlat:
		a.LUN = uint64(b[0]&0x3f)<<8 | uint64(b[1])
		a.MultiLevel = rest(2)
		a.Numbered = !a.MultiLevel
	case AddrLogicalUnit:
		a.Target = b[0] & 0x3f
		a.Bus = b[1] >> 5
		a.LUN = uint64(b[1] & 0x1f)
		a.MultiLevel = rest(2)
	case AddrExtended:
		a.ExtLength = (b[0] >> 4) & 3
		a.ExtMethod = b[0] & 0x0f
		size := 2 + 2*int(a.ExtLength) // 2, 4, 6 or 8 bytes
		for _, x := range b[1:size] {
			a.LUN = a.LUN<<8 | uint64(x)
		}
		a.MultiLevel = rest(size)
		switch {
		case b[0] == 0xc1: // well-known LUN
			a.WellKnown = true
			a.LUN = uint64(b[1])
		case b[0] == 0xd2, b[0] == 0xe2: // (long) extended flat space
			a.Numbered = !a.MultiLevel
		}
	}
	return a
}

// String renders the address, e.g. "300 (flat space)".
func (a LUNAddress) String() string {
	switch {
	case a.Numbered:
		if a.Method == AddrExtended {
			return fmt.Sprintf("%d (extended flat space)", a.LUN)
		}
		return fmt.Sprintf("%d (%s)", a.LUN, a.Method)
	case a.WellKnown:
		return fmt.Sprintf("well-known LUN %d", a.LUN)
	case a.Method == AddrPeripheral && !a.MultiLevel:
		return fmt.Sprintf("bus %d LUN %d (peripheral device)", a.Bus, a.LUN)
	case a.Method == AddrLogicalUnit && !a.MultiLevel:
		return fmt.Sprintf("bus %d target %d LUN %d (logical unit)", a.Bus, a.Target, a.LUN)
	}
	return fmt.Sprintf("%016x (%s)", a.Raw, a.Method)
}

const reportLUNsWhat = "REPORT LUNS data"

// ReportLUNsLength returns the total length the REPORT LUNS data announces
// (8 + LUN LIST LENGTH), to re-issue the command with enough room.
func ReportLUNsLength(b []byte) (int, error) {
	if len(b) < 8 {
		return 0, truncated(reportLUNsWhat, 8, len(b))
	}
	return 8 + int(binary.BigEndian.Uint32(b)), nil
}

// ParseReportLUNs parses REPORT LUNS data into LUN numbers (DecodeLUN of
// each entry). A list cut by the allocation length gives a *ParseError
// (ErrTruncated) whose Need is the length to ask for.
func ParseReportLUNs(b []byte) ([]uint64, error) {
	raw, err := ParseReportLUNsRaw(b)
	for i, r := range raw {
		raw[i] = DecodeLUN(r)
	}
	return raw, err
}

// ParseReportLUNsRaw parses REPORT LUNS data into the 8-byte LUN values.
func ParseReportLUNsRaw(b []byte) ([]uint64, error) {
	if len(b) < 8 {
		return nil, truncated(reportLUNsWhat, 8, len(b))
	}
	l := binary.BigEndian.Uint32(b)
	if l%8 != 0 {
		return nil, malformed(reportLUNsWhat, len(b), "LUN list length %d not a multiple of 8", l)
	}
	if uint64(l) > uint64(len(b)-8) {
		return nil, truncated(reportLUNsWhat, int(min(uint64(l)+8, 1<<31)), len(b))
	}
	luns := make([]uint64, l/8)
	for i := range luns {
		luns[i] = binary.BigEndian.Uint64(b[8+8*i:])
	}
	return luns, nil
}
