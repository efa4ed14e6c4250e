package scsi

import "encoding/binary"

// Operation codes of the commands this package builds.
const (
	OpTestUnitReady          = 0x00
	OpRequestSense           = 0x03
	OpInquiry                = 0x12
	OpModeSense6             = 0x1a
	OpStartStopUnit          = 0x1b
	OpReadCapacity10         = 0x25
	OpRead10                 = 0x28
	OpWrite10                = 0x2a
	OpSynchronizeCache10     = 0x35
	OpUnmap                  = 0x42
	OpModeSense10            = 0x5a
	OpPersistentReserveIn    = 0x5e
	OpPersistentReserveOut   = 0x5f
	OpRead16                 = 0x88
	OpCompareAndWrite        = 0x89
	OpWrite16                = 0x8a
	OpVerify16               = 0x8f
	OpSynchronizeCache16     = 0x91
	OpWriteSame16            = 0x93
	OpServiceActionIn16      = 0x9e
	OpReportLUNs             = 0xa0
	SAReadCapacity16         = 0x10 // service action of SERVICE ACTION IN(16)
	DefaultReadCapacity16Len = 32   // allocation length for READ CAPACITY(16)
)

// grow extends dst by n zero bytes and returns the whole slice and the new
// part. It allocates only when dst lacks capacity.
func grow(dst []byte, n int) ([]byte, []byte) {
	l := len(dst)
	if cap(dst)-l < n {
		nd := make([]byte, l, l+n)
		copy(nd, dst)
		dst = nd
	}
	dst = dst[:l+n]
	c := dst[l:]
	clear(c)
	return dst, c
}

// RWFlags are the cache-control bits of READ, WRITE, COMPARE AND WRITE and
// VERIFY (byte 1 of the CDB).
type RWFlags uint8

const (
	// FUA (force unit access): read from / write through to the medium.
	FUA RWFlags = 0x08
	// DPO (disable page out): do not keep the data in cache.
	DPO RWFlags = 0x10
)

func rwByte1(f RWFlags) byte { return byte(f & (FUA | DPO)) }

// TestUnitReadyCDB appends TEST UNIT READY (6 bytes).
func TestUnitReadyCDB(dst []byte) []byte {
	dst, _ = grow(dst, 6)
	return dst
}

// RequestSenseCDB appends REQUEST SENSE (6 bytes); desc asks for
// descriptor-format sense data.
func RequestSenseCDB(dst []byte, desc bool, allocLen uint8) []byte {
	dst, c := grow(dst, 6)
	c[0] = OpRequestSense
	if desc {
		c[1] = 1
	}
	c[4] = allocLen
	return dst
}

// InquiryCDB appends INQUIRY for standard inquiry data (6 bytes).
// 96 is a good allocation length; 36 is the minimum every device supports.
func InquiryCDB(dst []byte, allocLen uint16) []byte {
	dst, c := grow(dst, 6)
	c[0] = OpInquiry
	binary.BigEndian.PutUint16(c[3:], allocLen)
	return dst
}

// VPD page codes.
const (
	VPDSupportedPages             = 0x00
	VPDUnitSerialNumber           = 0x80
	VPDDeviceIdentification       = 0x83
	VPDBlockLimits                = 0xb0
	VPDBlockDeviceCharacteristics = 0xb1
	VPDLogicalBlockProvisioning   = 0xb2
)

// InquiryVPDCDB appends INQUIRY with EVPD=1 for the given VPD page.
func InquiryVPDCDB(dst []byte, page uint8, allocLen uint16) []byte {
	dst, c := grow(dst, 6)
	c[0] = OpInquiry
	c[1] = 1
	c[2] = page
	binary.BigEndian.PutUint16(c[3:], allocLen)
	return dst
}

// ReadCapacity10CDB appends READ CAPACITY(10) (10 bytes; 8 bytes of data).
func ReadCapacity10CDB(dst []byte) []byte {
	dst, c := grow(dst, 10)
	c[0] = OpReadCapacity10
	return dst
}

// ReadCapacity16CDB appends READ CAPACITY(16), i.e. SERVICE ACTION IN(16)
// with service action 0x10 (16 bytes). Use DefaultReadCapacity16Len.
func ReadCapacity16CDB(dst []byte, allocLen uint32) []byte {
	dst, c := grow(dst, 16)
	c[0] = OpServiceActionIn16
	c[1] = SAReadCapacity16
	binary.BigEndian.PutUint32(c[10:], allocLen)
	return dst
}

func rw10(dst []byte, op byte, lba uint32, blocks uint16, f RWFlags) []byte {
	dst, c := grow(dst, 10)
	c[0] = op
	c[1] = rwByte1(f)
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], blocks)
	return dst
}

func rw16(dst []byte, op byte, lba uint64, blocks uint32, b1 byte) []byte {
	dst, c := grow(dst, 16)
	c[0] = op
	c[1] = b1
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], blocks)
	return dst
}

// Read10CDB appends READ(10). blocks == 0 transfers nothing.
func Read10CDB(dst []byte, lba uint32, blocks uint16, f RWFlags) []byte {
	return rw10(dst, OpRead10, lba, blocks, f)
}

// Write10CDB appends WRITE(10).
func Write10CDB(dst []byte, lba uint32, blocks uint16, f RWFlags) []byte {
	return rw10(dst, OpWrite10, lba, blocks, f)
}

// Read16CDB appends READ(16).
func Read16CDB(dst []byte, lba uint64, blocks uint32, f RWFlags) []byte {
	return rw16(dst, OpRead16, lba, blocks, rwByte1(f))
}

// Write16CDB appends WRITE(16).
func Write16CDB(dst []byte, lba uint64, blocks uint32, f RWFlags) []byte {
	return rw16(dst, OpWrite16, lba, blocks, rwByte1(f))
}

// SynchronizeCache10CDB appends SYNCHRONIZE CACHE(10). lba 0 and blocks 0
// flush the whole medium; immed returns before the flush completes.
func SynchronizeCache10CDB(dst []byte, lba uint32, blocks uint16, immed bool) []byte {
	dst = rw10(dst, OpSynchronizeCache10, lba, blocks, 0)
	if immed {
		dst[len(dst)-9] = 0x02
	}
	return dst
}

// SynchronizeCache16CDB appends SYNCHRONIZE CACHE(16).
func SynchronizeCache16CDB(dst []byte, lba uint64, blocks uint32, immed bool) []byte {
	var b1 byte
	if immed {
		b1 = 0x02
	}
	return rw16(dst, OpSynchronizeCache16, lba, blocks, b1)
}

// REPORT LUNS SELECT REPORT values.
const (
	ReportLUNsAll           = 0x00 // every LUN but well-known LUNs
	ReportLUNsWellKnownOnly = 0x01
	ReportLUNsAllWithWKLUN  = 0x02
)

// ReportLUNsCDB appends REPORT LUNS (12 bytes). allocLen must be at least 16.
func ReportLUNsCDB(dst []byte, selectReport uint8, allocLen uint32) []byte {
	dst, c := grow(dst, 12)
	c[0] = OpReportLUNs
	c[2] = selectReport
	binary.BigEndian.PutUint32(c[6:], allocLen)
	return dst
}

// PageControl selects which values MODE SENSE returns.
type PageControl uint8

// Page control values.
const (
	PageCurrent    PageControl = 0
	PageChangeable PageControl = 1
	PageDefault    PageControl = 2
	PageSaved      PageControl = 3
)

// ModePageAll asks MODE SENSE for every page (with subpage 0x00: no
// subpages; 0xff: all subpages).
const ModePageAll = 0x3f

// ModeSense6CDB appends MODE SENSE(6). dbd disables block descriptors.
func ModeSense6CDB(dst []byte, dbd bool, pc PageControl, page, subpage, allocLen uint8) []byte {
	dst, c := grow(dst, 6)
	c[0] = OpModeSense6
	if dbd {
		c[1] = 0x08
	}
	c[2] = byte(pc&3)<<6 | page&0x3f
	c[3] = subpage
	c[4] = allocLen
	return dst
}

// ModeSense10CDB appends MODE SENSE(10). llbaa accepts long LBA block
// descriptors.
func ModeSense10CDB(dst []byte, llbaa, dbd bool, pc PageControl, page, subpage uint8, allocLen uint16) []byte {
	dst, c := grow(dst, 10)
	c[0] = OpModeSense10
	if llbaa {
		c[1] |= 0x10
	}
	if dbd {
		c[1] |= 0x08
	}
	c[2] = byte(pc&3)<<6 | page&0x3f
	c[3] = subpage
	binary.BigEndian.PutUint16(c[7:], allocLen)
	return dst
}

// UnmapDescriptor is one range of an UNMAP parameter list.
type UnmapDescriptor struct {
	LBA    uint64
	Blocks uint32
}

// UnmapParamLen returns the parameter list length for n descriptors.
func UnmapParamLen(n int) int { return 8 + 16*n }

// UnmapCDB appends UNMAP (10 bytes). paramLen is the length of the
// parameter list built by AppendUnmapParams (UnmapParamLen(n)).
func UnmapCDB(dst []byte, anchor bool, paramLen uint16) []byte {
	dst, c := grow(dst, 10)
	c[0] = OpUnmap
	if anchor {
		c[1] = 0x01
	}
	binary.BigEndian.PutUint16(c[7:], paramLen)
	return dst
}

// AppendUnmapParams appends the UNMAP parameter list for descs. The caller
// keeps len(descs) within the device's MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
// (and at most 4095 so the list length fits the CDB).
func AppendUnmapParams(dst []byte, descs []UnmapDescriptor) []byte {
	dst, c := grow(dst, UnmapParamLen(len(descs)))
	binary.BigEndian.PutUint16(c[0:], uint16(6+16*len(descs)))
	binary.BigEndian.PutUint16(c[2:], uint16(16*len(descs)))
	for i, d := range descs {
		o := 8 + 16*i
		binary.BigEndian.PutUint64(c[o:], d.LBA)
		binary.BigEndian.PutUint32(c[o+8:], d.Blocks)
	}
	return dst
}

// WriteSameFlags are the byte-1 bits of WRITE SAME(16).
type WriteSameFlags uint8

const (
	// WriteSameNDOB: no data-out buffer; the blocks are written with zeros.
	WriteSameNDOB WriteSameFlags = 0x01
	// WriteSameUnmap: unmap the blocks if possible (thin provisioning).
	WriteSameUnmap WriteSameFlags = 0x08
	// WriteSameAnchor: anchor rather than deallocate.
	WriteSameAnchor WriteSameFlags = 0x10
)

// WriteSame16CDB appends WRITE SAME(16). Unless WriteSameNDOB is set the
// command carries one logical block of data.
func WriteSame16CDB(dst []byte, lba uint64, blocks uint32, f WriteSameFlags) []byte {
	return rw16(dst, OpWriteSame16, lba, blocks, byte(f&(WriteSameNDOB|WriteSameUnmap|WriteSameAnchor)))
}

// CompareAndWriteCDB appends COMPARE AND WRITE (16 bytes). The data-out
// buffer holds 2*blocks logical blocks: the verify data, then the write data.
func CompareAndWriteCDB(dst []byte, lba uint64, blocks uint8, f RWFlags) []byte {
	dst, c := grow(dst, 16)
	c[0] = OpCompareAndWrite
	c[1] = rwByte1(f)
	binary.BigEndian.PutUint64(c[2:], lba)
	c[13] = blocks
	return dst
}

// Verify16CDB appends VERIFY(16). bytchk 0 verifies the medium only;
// 1 compares with blocks of data-out; 3 compares each block with one block
// of data-out.
func Verify16CDB(dst []byte, lba uint64, blocks uint32, bytchk uint8, f RWFlags) []byte {
	return rw16(dst, OpVerify16, lba, blocks, byte(f&DPO)|(bytchk&3)<<1)
}

// StartStopUnitCDB appends START STOP UNIT (6 bytes). powerCondition 0
// means "use start and loej".
func StartStopUnitCDB(dst []byte, immed bool, powerCondition uint8, loej, start bool) []byte {
	dst, c := grow(dst, 6)
	c[0] = OpStartStopUnit
	if immed {
		c[1] = 1
	}
	c[4] = powerCondition << 4
	if loej {
		c[4] |= 0x02
	}
	if start {
		c[4] |= 0x01
	}
	return dst
}
