package pdu

import "hash/crc32"

// castagnoli is a constant table (crc32.MakeTable caches it internally).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// DigestLen is the length of a header or data digest on the wire.
const DigestLen = 4

// CRC32C returns the CRC32C (Castagnoli) checksum of b, as used for iSCSI
// header and data digests.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// UpdateCRC32C continues a CRC32C over more bytes (start with 0).
func UpdateCRC32C(crc uint32, b []byte) uint32 { return crc32.Update(crc, castagnoli, b) }

// AppendDigest appends crc as it goes on the wire: least significant byte first.
func AppendDigest(dst []byte, crc uint32) []byte {
	return append(dst, byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24))
}

// ParseDigest reads a wire digest (least significant byte first).
func ParseDigest(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
