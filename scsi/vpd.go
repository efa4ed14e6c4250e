package scsi

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

func vpdWhat(page uint8) string { return fmt.Sprintf("VPD page 0x%02x", page) }

// VPDPageLength returns the total length (header included) that a VPD page
// announces, for re-issuing INQUIRY with a large enough allocation length.
func VPDPageLength(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, truncated("VPD page", 4, len(b))
	}
	return 4 + int(binary.BigEndian.Uint16(b[2:])), nil
}

// vpdBody checks the header of a VPD page and returns its body.
func vpdBody(b []byte, page uint8) ([]byte, error) {
	what := vpdWhat(page)
	if len(b) < 4 {
		return nil, truncated(what, 4, len(b))
	}
	if b[1] != page {
		return nil, malformed(what, len(b), "page code 0x%02x", b[1])
	}
	n := 4 + int(binary.BigEndian.Uint16(b[2:]))
	if n > len(b) {
		return nil, truncated(what, n, len(b))
	}
	return b[4:n], nil
}

// ParseVPDSupportedPages parses VPD page 0x00 and returns the page codes.
func ParseVPDSupportedPages(b []byte) ([]uint8, error) {
	body, err := vpdBody(b, VPDSupportedPages)
	if err != nil {
		return nil, err
	}
	return append([]uint8(nil), body...), nil
}

// ParseVPDUnitSerial parses VPD page 0x80 and returns the serial number with
// leading and trailing spaces (and NULs) removed.
func ParseVPDUnitSerial(b []byte) (string, error) {
	body, err := vpdBody(b, VPDUnitSerialNumber)
	if err != nil {
		return "", err
	}
	return trimASCII(body), nil
}

// CodeSet is the CODE SET of a designator.
type CodeSet uint8

// Code sets.
const (
	CodeSetBinary CodeSet = 1
	CodeSetASCII  CodeSet = 2
	CodeSetUTF8   CodeSet = 3
)

func (c CodeSet) String() string {
	switch c {
	case CodeSetBinary:
		return "binary"
	case CodeSetASCII:
		return "ASCII"
	case CodeSetUTF8:
		return "UTF-8"
	}
	return fmt.Sprintf("code set 0x%x", uint8(c))
}

// Association tells what a designator designates.
type Association uint8

// Associations.
const (
	AssocLU         Association = 0 // the logical unit
	AssocTargetPort Association = 1 // the target port the command came through
	AssocTarget     Association = 2 // the SCSI target device
)

func (a Association) String() string {
	switch a {
	case AssocLU:
		return "logical unit"
	case AssocTargetPort:
		return "target port"
	case AssocTarget:
		return "target device"
	}
	return "reserved association"
}

// DesignatorType is the DESIGNATOR TYPE of a designator.
type DesignatorType uint8

// Designator types.
const (
	DesigVendor           DesignatorType = 0x0
	DesigT10Vendor        DesignatorType = 0x1
	DesigEUI64            DesignatorType = 0x2
	DesigNAA              DesignatorType = 0x3
	DesigRelativePort     DesignatorType = 0x4
	DesigTargetPortGroup  DesignatorType = 0x5
	DesigLUGroup          DesignatorType = 0x6
	DesigMD5LUID          DesignatorType = 0x7
	DesigSCSINameString   DesignatorType = 0x8
	DesigProtocolSpecific DesignatorType = 0x9
	DesigUUID             DesignatorType = 0xa
)

func (t DesignatorType) String() string {
	switch t {
	case DesigVendor:
		return "vendor specific"
	case DesigT10Vendor:
		return "T10 vendor ID"
	case DesigEUI64:
		return "EUI-64"
	case DesigNAA:
		return "NAA"
	case DesigRelativePort:
		return "relative target port"
	case DesigTargetPortGroup:
		return "target port group"
	case DesigLUGroup:
		return "logical unit group"
	case DesigMD5LUID:
		return "MD5 logical unit identifier"
	case DesigSCSINameString:
		return "SCSI name string"
	case DesigProtocolSpecific:
		return "protocol specific port identifier"
	case DesigUUID:
		return "UUID"
	}
	return fmt.Sprintf("designator type 0x%x", uint8(t))
}

// ProtocolID is a SCSI transport protocol identifier.
type ProtocolID uint8

// Protocol identifiers.
const (
	ProtoFC    ProtocolID = 0x0
	ProtoSPI   ProtocolID = 0x1
	ProtoSSA   ProtocolID = 0x2
	ProtoSBP   ProtocolID = 0x3
	ProtoSRP   ProtocolID = 0x4
	ProtoISCSI ProtocolID = 0x5
	ProtoSAS   ProtocolID = 0x6
	ProtoADT   ProtocolID = 0x7
	ProtoATA   ProtocolID = 0x8
	ProtoUAS   ProtocolID = 0x9
	ProtoSOP   ProtocolID = 0xa
	ProtoNone  ProtocolID = 0xf
)

func (p ProtocolID) String() string {
	switch p {
	case ProtoFC:
		return "FC"
	case ProtoSPI:
		return "SPI"
	case ProtoSSA:
		return "SSA"
	case ProtoSBP:
		return "SBP"
	case ProtoSRP:
		return "SRP"
	case ProtoISCSI:
		return "iSCSI"
	case ProtoSAS:
		return "SAS"
	case ProtoADT:
		return "ADT"
	case ProtoATA:
		return "ATA"
	case ProtoUAS:
		return "UAS"
	case ProtoSOP:
		return "SOP"
	case ProtoNone:
		return "none"
	}
	return fmt.Sprintf("protocol 0x%x", uint8(p))
}

// Designator is one entry of VPD page 0x83.
type Designator struct {
	Protocol    ProtocolID // meaningful only when PIV
	CodeSet     CodeSet
	PIV         bool // protocol identifier valid
	Association Association
	Type        DesignatorType
	Value       []byte // DESIGNATOR bytes (a copy of the page)
}

// Number returns the value of a relative target port, target port group or
// logical unit group designator.
func (d *Designator) Number() (uint16, bool) {
	switch d.Type {
	case DesigRelativePort, DesigTargetPortGroup, DesigLUGroup:
		if len(d.Value) >= 4 {
			return binary.BigEndian.Uint16(d.Value[2:4]), true
		}
	}
	return 0, false
}

// String renders the designator value in its usual form: "naa.6001405...",
// "eui.0123...", "t10.VENDOR..." or the SCSI name string; numbers in decimal.
func (d *Designator) String() string {
	if n, ok := d.Number(); ok {
		return fmt.Sprintf("%s %d", d.Type, n)
	}
	text := d.CodeSet == CodeSetASCII || d.CodeSet == CodeSetUTF8
	switch d.Type {
	case DesigNAA:
		return "naa." + hex.EncodeToString(d.Value)
	case DesigEUI64:
		return "eui." + hex.EncodeToString(d.Value)
	case DesigT10Vendor:
		if text {
			return "t10." + strings.TrimRight(string(d.Value), " \x00")
		}
	case DesigSCSINameString:
		return strings.TrimRight(string(d.Value), "\x00")
	case DesigMD5LUID, DesigUUID:
		return hex.EncodeToString(d.Value)
	}
	if text {
		return strings.TrimRight(string(d.Value), " \x00")
	}
	return "0x" + hex.EncodeToString(d.Value)
}

// ParseVPDDeviceID parses VPD page 0x83 into its designators.
func ParseVPDDeviceID(b []byte) ([]Designator, error) {
	body, err := vpdBody(b, VPDDeviceIdentification)
	if err != nil {
		return nil, err
	}
	what := vpdWhat(VPDDeviceIdentification)
	// Count first so that one allocation of the exact size suffices.
	n := 0
	for off := 0; off < len(body); n++ {
		if off+4 > len(body) {
			return nil, malformed(what, len(b), "designator header at offset %d cut by the page end", 4+off)
		}
		end := off + 4 + int(body[off+3])
		if end > len(body) {
			return nil, malformed(what, len(b), "designator at offset %d runs past the page end", 4+off)
		}
		off = end
	}
	data := append([]byte(nil), body...)
	ds := make([]Designator, 0, n)
	for off := 0; off < len(data); {
		h := data[off : off+4]
		end := off + 4 + int(h[3])
		ds = append(ds, Designator{
			Protocol:    ProtocolID(h[0] >> 4),
			CodeSet:     CodeSet(h[0] & 0x0f),
			PIV:         h[1]&0x80 != 0,
			Association: Association((h[1] >> 4) & 3),
			Type:        DesignatorType(h[1] & 0x0f),
			Value:       data[off+4 : end : end],
		})
		off = end
	}
	return ds, nil
}

// BlockLimits is VPD page 0xB0. Fields the device did not return (older
// devices return a 12-byte page) are zero; zero generally means "no limit
// reported".
type BlockLimits struct {
	PageLength                      int // PAGE LENGTH as returned (0x3c for SBC-3)
	WSNZ                            bool
	MaxCompareAndWriteLength        uint8  // blocks
	OptimalTransferGranularity      uint16 // blocks
	MaxTransferLength               uint32 // blocks; 0: no limit
	OptimalTransferLength           uint32 // blocks
	MaxPrefetchLength               uint32
	MaxUnmapLBACount                uint32 // 0: UNMAP not supported
	MaxUnmapDescriptorCount         uint32
	OptimalUnmapGranularity         uint32
	UnmapGranularityAlignmentValid  bool
	UnmapGranularityAlignment       uint32
	MaxWriteSameLength              uint64
	MaxAtomicTransferLength         uint32
	AtomicAlignment                 uint32
	AtomicTransferLengthGranularity uint32
}

// ParseVPDBlockLimits parses VPD page 0xB0.
func ParseVPDBlockLimits(b []byte) (BlockLimits, error) {
	var l BlockLimits
	body, err := vpdBody(b, VPDBlockLimits)
	if err != nil {
		return l, err
	}
	l.PageLength = len(body)
	// p is the page with its header, cut at the page length; u32 reads a
	// field only when it is whole.
	p := b[:4+len(body)]
	u32 := func(off int) uint32 {
		if off+4 > len(p) {
			return 0
		}
		return binary.BigEndian.Uint32(p[off:])
	}
	if len(p) > 4 {
		l.WSNZ = p[4]&1 != 0
	}
	if len(p) > 5 {
		l.MaxCompareAndWriteLength = p[5]
	}
	if len(p) >= 8 {
		l.OptimalTransferGranularity = binary.BigEndian.Uint16(p[6:])
	}
	l.MaxTransferLength = u32(8)
	l.OptimalTransferLength = u32(12)
	l.MaxPrefetchLength = u32(16)
	l.MaxUnmapLBACount = u32(20)
	l.MaxUnmapDescriptorCount = u32(24)
	l.OptimalUnmapGranularity = u32(28)
	ua := u32(32)
	l.UnmapGranularityAlignmentValid = ua&0x80000000 != 0
	l.UnmapGranularityAlignment = ua & 0x7fffffff
	if len(p) >= 44 {
		l.MaxWriteSameLength = binary.BigEndian.Uint64(p[36:])
	}
	l.MaxAtomicTransferLength = u32(44)
	l.AtomicAlignment = u32(48)
	l.AtomicTransferLengthGranularity = u32(52)
	return l, nil
}

// BlockDeviceCharacteristics is VPD page 0xB1.
type BlockDeviceCharacteristics struct {
	// RotationRate: 0 not reported, 1 non-rotating (SSD), else RPM.
	RotationRate uint16
	ProductType  uint8
	WABEREQ      uint8
	WACEREQ      uint8
	// FormFactor: 0 not reported, 1 5.25", 2 3.5", 3 2.5", 4 1.8", 5 below 1.8".
	FormFactor uint8
	Zoned      uint8
	FUAB       bool
	VBULS      bool
}

// NonRotating reports a solid state device.
func (c *BlockDeviceCharacteristics) NonRotating() bool { return c.RotationRate == 1 }

// ParseVPDBlockDeviceCharacteristics parses VPD page 0xB1.
func ParseVPDBlockDeviceCharacteristics(b []byte) (BlockDeviceCharacteristics, error) {
	var c BlockDeviceCharacteristics
	body, err := vpdBody(b, VPDBlockDeviceCharacteristics)
	if err != nil {
		return c, err
	}
	if len(body) < 4 {
		return c, truncated(vpdWhat(VPDBlockDeviceCharacteristics), 8, 4+len(body))
	}
	c.RotationRate = binary.BigEndian.Uint16(body[0:])
	c.ProductType = body[2]
	c.WABEREQ = body[3] >> 6
	c.WACEREQ = (body[3] >> 4) & 3
	c.FormFactor = body[3] & 0x0f
	if len(body) >= 5 {
		c.Zoned = (body[4] >> 4) & 3
		c.FUAB = body[4]&0x02 != 0
		c.VBULS = body[4]&0x01 != 0
	}
	return c, nil
}

// Provisioning types (VPD 0xB2 PROVISIONING TYPE).
const (
	ProvisioningFull     = 0 // not reported or fully provisioned
	ProvisioningResource = 1 // resource provisioned
	ProvisioningThin     = 2 // thin provisioned
)

// LogicalBlockProvisioning is VPD page 0xB2.
type LogicalBlockProvisioning struct {
	ThresholdExponent uint8
	LBPU              bool  // UNMAP supported
	LBPWS             bool  // WRITE SAME(16) with UNMAP supported
	LBPWS10           bool  // WRITE SAME(10) with UNMAP supported
	LBPRZ             uint8 // 3-bit field (SBC-4); non-zero: unmapped blocks read as zero
	ANCSup            bool  // anchor supported
	DP                bool  // provisioning group descriptor present
	MinPercentage     uint8
	ProvisioningType  uint8
	ThresholdPercent  uint8
}

// ParseVPDLogicalBlockProvisioning parses VPD page 0xB2.
func ParseVPDLogicalBlockProvisioning(b []byte) (LogicalBlockProvisioning, error) {
	var p LogicalBlockProvisioning
	body, err := vpdBody(b, VPDLogicalBlockProvisioning)
	if err != nil {
		return p, err
	}
	if len(body) < 4 {
		return p, truncated(vpdWhat(VPDLogicalBlockProvisioning), 8, 4+len(body))
	}
	p.ThresholdExponent = body[0]
	p.LBPU = body[1]&0x80 != 0
	p.LBPWS = body[1]&0x40 != 0
	p.LBPWS10 = body[1]&0x20 != 0
	p.LBPRZ = (body[1] >> 2) & 7
	p.ANCSup = body[1]&0x02 != 0
	p.DP = body[1]&0x01 != 0
	p.MinPercentage = body[2] >> 3
	p.ProvisioningType = body[2] & 7
	p.ThresholdPercent = body[3]
	return p, nil
}
