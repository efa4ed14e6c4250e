package scsi

import "encoding/binary"

// Capacity is READ CAPACITY data, from either the (10) or the (16) form.
type Capacity struct {
	LastLBA     uint64 // RETURNED LOGICAL BLOCK ADDRESS: the last block
	BlockLength uint32 // bytes per logical block
	// The fields below come only from READ CAPACITY(16).
	ProtectionEnabled     bool  // PROT_EN
	ProtectionType        uint8 // P_TYPE (type = ProtectionType+1 when enabled)
	PIExponent            uint8 // P_I_EXPONENT
	LogicalPerPhysicalExp uint8 // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT
	LBPME                 bool  // logical block provisioning management enabled (thin)
	LBPRZ                 bool  // unmapped blocks read as zeros
	LowestAlignedLBA      uint16
}

// Blocks returns the number of logical blocks (LastLBA+1; saturates).
func (c *Capacity) Blocks() uint64 {
	if c.LastLBA == ^uint64(0) {
		return c.LastLBA
	}
	return c.LastLBA + 1
}

// Bytes returns the capacity in bytes (saturates at the maximum uint64).
func (c *Capacity) Bytes() uint64 {
	b := c.Blocks()
	if c.BlockLength != 0 && b > ^uint64(0)/uint64(c.BlockLength) {
		return ^uint64(0)
	}
	return b * uint64(c.BlockLength)
}

// PhysicalBlockLength returns the physical block size in bytes.
func (c *Capacity) PhysicalBlockLength() uint64 {
	return uint64(c.BlockLength) << (c.LogicalPerPhysicalExp & 0x0f)
}

// NeedsReadCapacity16 reports that READ CAPACITY(10) could not express the
// capacity (RETURNED LOGICAL BLOCK ADDRESS 0xFFFFFFFF).
func (c *Capacity) NeedsReadCapacity16() bool { return c.LastLBA == 0xffffffff }

// ParseReadCapacity10 parses the 8 bytes of READ CAPACITY(10) data.
func ParseReadCapacity10(b []byte) (Capacity, error) {
	if len(b) < 8 {
		return Capacity{}, truncated("READ CAPACITY(10) data", 8, len(b))
	}
	return Capacity{
		LastLBA:     uint64(binary.BigEndian.Uint32(b)),
		BlockLength: binary.BigEndian.Uint32(b[4:]),
	}, nil
}

// ParseReadCapacity16 parses READ CAPACITY(16) data (32 bytes; the first 12
// are required, the remaining fields read as zero when absent).
func ParseReadCapacity16(b []byte) (Capacity, error) {
	var c Capacity
	if len(b) < 12 {
		return c, truncated("READ CAPACITY(16) data", 12, len(b))
	}
	c.LastLBA = binary.BigEndian.Uint64(b)
	c.BlockLength = binary.BigEndian.Uint32(b[8:])
	if len(b) >= 13 {
		c.ProtectionType = (b[12] >> 1) & 7
		c.ProtectionEnabled = b[12]&1 != 0
	}
	if len(b) >= 14 {
		c.PIExponent = b[13] >> 4
		c.LogicalPerPhysicalExp = b[13] & 0x0f
	}
	if len(b) >= 16 {
		c.LBPME = b[14]&0x80 != 0
		c.LBPRZ = b[14]&0x40 != 0
		c.LowestAlignedLBA = binary.BigEndian.Uint16(b[14:]) & 0x3fff
	}
	return c, nil
}
