package scsi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// SenseKey is the SENSE KEY field of sense data (SPC-4 table 27).
type SenseKey uint8

// Sense keys.
const (
	SenseNoSense        SenseKey = 0x0
	SenseRecoveredError SenseKey = 0x1
	SenseNotReady       SenseKey = 0x2
	SenseMediumError    SenseKey = 0x3
	SenseHardwareError  SenseKey = 0x4
	SenseIllegalRequest SenseKey = 0x5
	SenseUnitAttention  SenseKey = 0x6
	SenseDataProtect    SenseKey = 0x7
	SenseBlankCheck     SenseKey = 0x8
	SenseVendorSpecific SenseKey = 0x9
	SenseCopyAborted    SenseKey = 0xa
	SenseAbortedCommand SenseKey = 0xb
	SenseVolumeOverflow SenseKey = 0xd
	SenseMiscompare     SenseKey = 0xe
	SenseCompleted      SenseKey = 0xf
)

func (k SenseKey) String() string {
	switch k {
	case SenseNoSense:
		return "NO SENSE"
	case SenseRecoveredError:
		return "RECOVERED ERROR"
	case SenseNotReady:
		return "NOT READY"
	case SenseMediumError:
		return "MEDIUM ERROR"
	case SenseHardwareError:
		return "HARDWARE ERROR"
	case SenseIllegalRequest:
		return "ILLEGAL REQUEST"
	case SenseUnitAttention:
		return "UNIT ATTENTION"
	case SenseDataProtect:
		return "DATA PROTECT"
	case SenseBlankCheck:
		return "BLANK CHECK"
	case SenseVendorSpecific:
		return "VENDOR SPECIFIC"
	case SenseCopyAborted:
		return "COPY ABORTED"
	case SenseAbortedCommand:
		return "ABORTED COMMAND"
	case SenseVolumeOverflow:
		return "VOLUME OVERFLOW"
	case SenseMiscompare:
		return "MISCOMPARE"
	case SenseCompleted:
		return "COMPLETED"
	}
	return fmt.Sprintf("sense key 0x%x", uint8(k))
}

// Sentinel errors matched by *SenseError under errors.Is, one per sense key.
var (
	ErrRecoveredError = errors.New("scsi: RECOVERED ERROR")
	ErrNotReady       = errors.New("scsi: NOT READY")
	ErrMediumError    = errors.New("scsi: MEDIUM ERROR")
	ErrHardwareError  = errors.New("scsi: HARDWARE ERROR")
	ErrIllegalRequest = errors.New("scsi: ILLEGAL REQUEST")
	ErrUnitAttention  = errors.New("scsi: UNIT ATTENTION")
	ErrDataProtect    = errors.New("scsi: DATA PROTECT")
	ErrBlankCheck     = errors.New("scsi: BLANK CHECK")
	ErrCopyAborted    = errors.New("scsi: COPY ABORTED")
	ErrAbortedCommand = errors.New("scsi: ABORTED COMMAND")
	ErrVolumeOverflow = errors.New("scsi: VOLUME OVERFLOW")
	ErrMiscompare     = errors.New("scsi: MISCOMPARE")
)

func senseSentinel(k SenseKey) error {
	switch k {
	case SenseRecoveredError:
		return ErrRecoveredError
	case SenseNotReady:
		return ErrNotReady
	case SenseMediumError:
		return ErrMediumError
	case SenseHardwareError:
		return ErrHardwareError
	case SenseIllegalRequest:
		return ErrIllegalRequest
	case SenseUnitAttention:
		return ErrUnitAttention
	case SenseDataProtect:
		return ErrDataProtect
	case SenseBlankCheck:
		return ErrBlankCheck
	case SenseCopyAborted:
		return ErrCopyAborted
	case SenseAbortedCommand:
		return ErrAbortedCommand
	case SenseVolumeOverflow:
		return ErrVolumeOverflow
	case SenseMiscompare:
		return ErrMiscompare
	}
	return nil
}

// Sense is decoded sense data, from either format.
type Sense struct {
	ResponseCode uint8 // 0x70, 0x71, 0x72 or 0x73
	Deferred     bool  // 0x71/0x73: the error belongs to an earlier command
	Descriptor   bool  // descriptor format (0x72/0x73)
	Key          SenseKey
	ASC, ASCQ    uint8
	// InfoValid tells whether Information holds a value (fixed format VALID
	// bit; descriptor format: an information descriptor with VALID set).
	InfoValid   bool
	Information uint64 // e.g. the first LBA in error, or the miscompare offset
	// CommandSpecific is the COMMAND-SPECIFIC INFORMATION field (fixed
	// format bytes 8-11, or descriptor type 1).
	CommandSpecific uint64
	// SenseKeySpecific holds the three SENSE KEY SPECIFIC bytes; check Valid.
	SenseKeySpecific SenseKeySpecific
	FRU              uint8 // FIELD REPLACEABLE UNIT CODE
	FileMark         bool
	EOM              bool
	ILI              bool
}

// SenseKeySpecific is the SENSE KEY SPECIFIC field. Its meaning depends on
// the sense key; see FieldPointer and Progress.
type SenseKeySpecific struct {
	Valid bool    // SKSV
	Raw   [3]byte // with the SKSV bit cleared
}

// FieldPointer decodes the field pointer of an ILLEGAL REQUEST: inCDB tells
// whether the bad field is in the CDB (else in the parameter list), byteOff
// is its byte, and bit (when bitValid) the bit within it.
func (s SenseKeySpecific) FieldPointer() (inCDB bool, byteOff uint16, bit uint8, bitValid bool) {
	return s.Raw[0]&0x40 != 0, binary.BigEndian.Uint16(s.Raw[1:3]), s.Raw[0] & 7, s.Raw[0]&0x08 != 0
}

// Progress decodes the progress indication (NOT READY, NO SENSE) as a
// fraction numerator of 65536.
func (s SenseKeySpecific) Progress() uint16 { return binary.BigEndian.Uint16(s.Raw[1:3]) }

// ASCText returns the description of ASC/ASCQ, or "" if not in the table.
func (s *Sense) ASCText() string { return ASCText(s.ASC, s.ASCQ) }

// String renders the sense data for humans, e.g.
// "UNIT ATTENTION: power on, reset, or bus device reset occurred (29/00)".
func (s *Sense) String() string {
	var b strings.Builder
	if s.Deferred {
		b.WriteString("deferred ")
	}
	b.WriteString(s.Key.String())
	b.WriteString(": ")
	if t := s.ASCText(); t != "" {
		b.WriteString(t)
	} else {
		b.WriteString("additional sense code")
	}
	fmt.Fprintf(&b, " (%02x/%02x)", s.ASC, s.ASCQ)
	if s.InfoValid {
		fmt.Fprintf(&b, ", information 0x%x", s.Information)
	}
	if s.SenseKeySpecific.Valid && s.Key == SenseIllegalRequest {
		cdb, off, bit, bv := s.SenseKeySpecific.FieldPointer()
		where := "parameter list"
		if cdb {
			where = "CDB"
		}
		fmt.Fprintf(&b, ", %s byte %d", where, off)
		if bv {
			fmt.Fprintf(&b, " bit %d", bit)
		}
	}
	return b.String()
}

const senseWhat = "sense data"

// ParseSense decodes raw sense data in fixed (0x70/0x71) or descriptor
// (0x72/0x73) format. Data shorter than the additional sense length claims is
// accepted (devices truncate to the allocation length); fields beyond the end
// read as zero. At least 8 bytes are required.
func ParseSense(b []byte) (Sense, error) {
	var s Sense
	if len(b) < 1 {
		return s, truncated(senseWhat, 8, len(b))
	}
	code := b[0] & 0x7f
	switch code {
	case 0x70, 0x71, 0x72, 0x73:
	default:
		return s, malformed(senseWhat, len(b), "response code 0x%02x", code)
	}
	if len(b) < 8 {
		return s, truncated(senseWhat, 8, len(b))
	}
	s.ResponseCode = code
	s.Deferred = code == 0x71 || code == 0x73
	n := min(len(b), 8+int(b[7]))
	b = b[:n]
	if code == 0x70 || code == 0x71 {
		s.InfoValid = b[0]&0x80 != 0
		s.FileMark = b[2]&0x80 != 0
		s.EOM = b[2]&0x40 != 0
		s.ILI = b[2]&0x20 != 0
		s.Key = SenseKey(b[2] & 0x0f)
		s.Information = uint64(binary.BigEndian.Uint32(b[3:7]))
		if n >= 12 {
			s.CommandSpecific = uint64(binary.BigEndian.Uint32(b[8:12]))
		}
		if n >= 14 {
			s.ASC, s.ASCQ = b[12], b[13]
		}
		if n >= 15 {
			s.FRU = b[14]
		}
		if n >= 18 {
			s.SenseKeySpecific.Valid = b[15]&0x80 != 0
			s.SenseKeySpecific.Raw = [3]byte{b[15] & 0x7f, b[16], b[17]}
		}
		return s, nil
	}
	s.Descriptor = true
	s.Key = SenseKey(b[1] & 0x0f)
	s.ASC, s.ASCQ = b[2], b[3]
	for off := 8; off+2 <= n; {
		typ, l := b[off], int(b[off+1])
		end := off + 2 + l
		if end > n {
			break // truncated by the allocation length: keep what is whole
		}
		d := b[off:end]
		switch typ {
		case 0x00: // information
			if len(d) >= 12 {
				s.InfoValid = d[2]&0x80 != 0
				s.Information = binary.BigEndian.Uint64(d[4:12])
			}
		case 0x01: // command-specific information
			if len(d) >= 12 {
				s.CommandSpecific = binary.BigEndian.Uint64(d[4:12])
			}
		case 0x02: // sense key specific
			if len(d) >= 7 {
				s.SenseKeySpecific.Valid = d[4]&0x80 != 0
				s.SenseKeySpecific.Raw = [3]byte{d[4] & 0x7f, d[5], d[6]}
			}
		case 0x03: // field replaceable unit
			if len(d) >= 4 {
				s.FRU = d[3]
			}
		case 0x04: // stream commands
			if len(d) >= 4 {
				s.FileMark = d[3]&0x80 != 0
				s.EOM = d[3]&0x40 != 0
				s.ILI = d[3]&0x20 != 0
			}
		case 0x05: // block commands
			if len(d) >= 4 {
				s.ILI = d[3]&0x20 != 0
			}
		}
		off = end
	}
	return s, nil
}

// ParseSenseSegment decodes the data segment of an iSCSI SCSI Response PDU
// (RFC 7143 11.4.7): a 2-byte SenseLength, then that many bytes of sense
// data (then possibly response data, which is ignored).
func ParseSenseSegment(seg []byte) (Sense, error) {
	if len(seg) < 2 {
		return Sense{}, truncated("sense segment", 2, len(seg))
	}
	l := int(binary.BigEndian.Uint16(seg))
	if l == 0 {
		return Sense{}, malformed("sense segment", len(seg), "SenseLength is 0")
	}
	if 2+l > len(seg) {
		return Sense{}, truncated("sense segment", 2+l, len(seg))
	}
	return ParseSense(seg[2 : 2+l])
}

// SenseError is a command that ended in CHECK CONDITION with sense data.
// errors.Is matches the sentinel for its sense key (ErrUnitAttention,
// ErrNotReady, ErrMediumError, ErrIllegalRequest, ErrDataProtect,
// ErrAbortedCommand, ErrMiscompare, ErrHardwareError, ...) and
// ErrCheckCondition.
type SenseError struct {
	Status Status // normally StatusCheckCondition
	Sense         // Key, ASC, ASCQ, InfoValid, Information, ...
}

func (e *SenseError) Error() string {
	return "scsi: " + e.Status.String() + ": " + e.Sense.String()
}

// Is reports whether target is the sentinel for the sense key or status.
func (e *SenseError) Is(target error) bool {
	if t := senseSentinel(e.Key); t != nil && t == target {
		return true
	}
	t := statusSentinel(e.Status)
	return t != nil && t == target
}
