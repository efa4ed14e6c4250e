package scsi

import (
	"fmt"
	"strings"
)

// PeripheralType is the PERIPHERAL DEVICE TYPE of INQUIRY data.
type PeripheralType uint8

// Peripheral device types (SPC-4 table 141).
const (
	TypeDisk             PeripheralType = 0x00 // direct access block device
	TypeTape             PeripheralType = 0x01 // sequential access
	TypePrinter          PeripheralType = 0x02
	TypeProcessor        PeripheralType = 0x03
	TypeWriteOnce        PeripheralType = 0x04
	TypeCDROM            PeripheralType = 0x05 // CD/DVD
	TypeScanner          PeripheralType = 0x06
	TypeOptical          PeripheralType = 0x07 // optical memory
	TypeMediumChanger    PeripheralType = 0x08
	TypeComm             PeripheralType = 0x09
	TypeRAID             PeripheralType = 0x0c // storage array controller
	TypeEnclosure        PeripheralType = 0x0d // enclosure services
	TypeRBC              PeripheralType = 0x0e // simplified direct access
	TypeOpticalCard      PeripheralType = 0x0f
	TypeBridge           PeripheralType = 0x10
	TypeOSD              PeripheralType = 0x11 // object-based storage
	TypeAutomation       PeripheralType = 0x12 // automation/drive interface
	TypeSecurityManager  PeripheralType = 0x13
	TypeZBC              PeripheralType = 0x14 // host managed zoned block
	TypeWellKnownLU      PeripheralType = 0x1e
	TypeUnknown          PeripheralType = 0x1f // unknown or no device type
	TypeStorageArrayCtrl                = TypeRAID
)

func (t PeripheralType) String() string {
	switch t {
	case TypeDisk:
		return "disk"
	case TypeTape:
		return "tape"
	case TypePrinter:
		return "printer"
	case TypeProcessor:
		return "processor"
	case TypeWriteOnce:
		return "write-once"
	case TypeCDROM:
		return "cd/dvd"
	case TypeScanner:
		return "scanner"
	case TypeOptical:
		return "optical memory"
	case TypeMediumChanger:
		return "medium changer"
	case TypeComm:
		return "communications"
	case TypeRAID:
		return "storage array controller"
	case TypeEnclosure:
		return "enclosure services"
	case TypeRBC:
		return "simplified direct access"
	case TypeOpticalCard:
		return "optical card"
	case TypeBridge:
		return "bridge controller"
	case TypeOSD:
		return "object storage"
	case TypeAutomation:
		return "automation/drive interface"
	case TypeSecurityManager:
		return "security manager"
	case TypeZBC:
		return "host managed zoned block"
	case TypeWellKnownLU:
		return "well known logical unit"
	case TypeUnknown:
		return "unknown or no device type"
	}
	return fmt.Sprintf("peripheral type 0x%02x", uint8(t))
}

// Peripheral qualifiers.
const (
	QualifierConnected    = 0 // a device of the type is (or may be) connected
	QualifierNotConnected = 1 // supported but not connected now
	QualifierNotSupported = 3 // no logical unit at this LUN
)

// Inquiry is standard INQUIRY data.
type Inquiry struct {
	Qualifier      uint8 // PERIPHERAL QUALIFIER
	Type           PeripheralType
	Removable      bool  // RMB
	Version        uint8 // 0x05 SPC-3, 0x06 SPC-4, 0x07 SPC-5
	NormACA        bool
	HiSup          bool
	ResponseFormat uint8 // 2
	SCCS           bool
	ACC            bool
	TPGS           uint8 // target port group support (0..3): ALUA
	ThirdPartyCopy bool  // 3PC
	Protect        bool  // protection information supported
	EncServ        bool
	MultiP         bool
	CmdQue         bool
	Vendor         string // T10 VENDOR IDENTIFICATION, trimmed
	Product        string // PRODUCT IDENTIFICATION, trimmed
	Revision       string // PRODUCT REVISION LEVEL, trimmed
}

// InquiryMinLen is the length of standard INQUIRY data up to the revision.
const InquiryMinLen = 36

// ParseInquiry parses standard INQUIRY data. At least 36 bytes (up to the
// product revision level) are required.
func ParseInquiry(b []byte) (Inquiry, error) {
	const what = "INQUIRY data"
	var q Inquiry
	if len(b) < 5 {
		return q, truncated(what, InquiryMinLen, len(b))
	}
	n := min(len(b), 5+int(b[4]))
	if n < InquiryMinLen {
		if len(b) < InquiryMinLen {
			return q, truncated(what, InquiryMinLen, len(b))
		}
		return q, malformed(what, len(b), "additional length %d shorter than 31", b[4])
	}
	q.Qualifier = b[0] >> 5
	q.Type = PeripheralType(b[0] & 0x1f)
	q.Removable = b[1]&0x80 != 0
	q.Version = b[2]
	q.NormACA = b[3]&0x20 != 0
	q.HiSup = b[3]&0x10 != 0
	q.ResponseFormat = b[3] & 0x0f
	q.SCCS = b[5]&0x80 != 0
	q.ACC = b[5]&0x40 != 0
	q.TPGS = (b[5] >> 4) & 3
	q.ThirdPartyCopy = b[5]&0x08 != 0
	q.Protect = b[5]&0x01 != 0
	q.EncServ = b[6]&0x40 != 0
	q.MultiP = b[6]&0x10 != 0
	q.CmdQue = b[7]&0x02 != 0
	q.Vendor = trimASCII(b[8:16])
	q.Product = trimASCII(b[16:32])
	q.Revision = trimASCII(b[32:36])
	return q, nil
}

// trimASCII trims spaces and NULs at both ends.
func trimASCII(b []byte) string {
	return strings.Trim(string(b), " \x00")
}

// VersionString names the Version field.
func (q *Inquiry) VersionString() string {
	switch q.Version {
	case 0:
		return "none"
	case 3:
		return "SPC"
	case 4:
		return "SPC-2"
	case 5:
		return "SPC-3"
	case 6:
		return "SPC-4"
	case 7:
		return "SPC-5"
	}
	return fmt.Sprintf("version 0x%02x", q.Version)
}

// Connected reports that a logical unit is present at the LUN: qualifier
// "connected" and a peripheral type other than "unknown or no device type".
func (q *Inquiry) Connected() bool {
	return q.Qualifier == QualifierConnected && q.Type != TypeUnknown
}
