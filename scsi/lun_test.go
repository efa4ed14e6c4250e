package scsi

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestEncodeDecodeLUN(t *testing.T) {
	tests := []struct {
		n   uint64
		raw uint64
	}{
		{0, 0},
		{1, 0x0001_0000_0000_0000}, // as libiscsi and tgtd put LUN 1 in the BHS (pcap1)
		{255, 0x00ff_0000_0000_0000},
		{256, 0x4100_0000_0000_0000},
		{300, 0x412c_0000_0000_0000}, // as tgtd reports LUN 300 (pcap2)
		{16383, 0x7fff_0000_0000_0000},
		{16384, 0xd200_4000_0000_0000},
		{MaxExtendedFlatLUN, 0xd2ff_ffff_0000_0000},
		{MaxExtendedFlatLUN + 1, 0xe200_0100_0000_0000},
		{MaxLongExtendedFlatLUN, 0xe2ff_ffff_ffff_0000},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.raw, EncodeLUN(tt.n), "EncodeLUN(%d)", tt.n)
		assert.Equal(t, tt.n, DecodeLUN(tt.raw), "DecodeLUN(%#x)", tt.raw)
	}
}

func TestParseLUN(t *testing.T) {
	tests := []struct {
		raw      uint64
		numbered bool
		n        uint64
		method   AddressMethod
		text     string
	}{
		{0x0001_0000_0000_0000, true, 1, AddrPeripheral, "1 (peripheral device)"},
		{0x412c_0000_0000_0000, true, 300, AddrFlat, "300 (flat space)"},
		{0xd200_4000_0000_0000, true, 16384, AddrExtended, "16384 (extended flat space)"},
		// libiscsi's URL LUN 300 became 0x012c: bus 1, LUN 44 (pcap2).
		{0x012c_0000_0000_0000, false, 44, AddrPeripheral, "bus 1 LUN 44 (peripheral device)"},
		{0x8a45_0000_0000_0000, false, 5, AddrLogicalUnit, "bus 2 target 10 LUN 5 (logical unit)"},
		{0xc101_0000_0000_0000, false, 1, AddrExtended, "well-known LUN 1"},
		{0x0001_0002_0000_0000, false, 1, AddrPeripheral, "0001000200000000 (peripheral device)"},
		{0x4005_0001_0000_0000, false, 5, AddrFlat, "4005000100000000 (flat space)"},
		{0xf000_0000_0000_0000, false, 0, AddrExtended, "f000000000000000 (extended logical unit)"},
	}
	for _, tt := range tests {
		a := ParseLUN(tt.raw)
		assert.Equal(t, tt.numbered, a.Numbered, "%#x", tt.raw)
		assert.Equal(t, tt.n, a.LUN, "%#x", tt.raw)
		assert.Equal(t, tt.method, a.Method, "%#x", tt.raw)
		assert.Equal(t, tt.text, a.String(), "%#x", tt.raw)
		if !tt.numbered {
			assert.Equal(t, tt.raw, DecodeLUN(tt.raw), "undecodable returned as is")
			assert.Equal(t, tt.raw, EncodeLUN(DecodeLUN(tt.raw)), "round trip")
		}
	}
	assert.Equal(t, "flat space", AddrFlat.String())
	assert.Equal(t, "logical unit", AddrLogicalUnit.String())
}
