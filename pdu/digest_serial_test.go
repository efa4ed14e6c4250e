package pdu

import (
	"bytes"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCRC32CVectors(t *testing.T) {
	// RFC 3720 appendix B.4. The RFC prints the first two as the bytes on
	// the wire (CRC values 0x8a9136aa and 0x62a8ab43, least significant
	// byte first); the incrementing/decrementing vectors are the CRC values
	// 0x46dd794e and 0x113fdb5c, so their wire bytes are reversed here.
	tests := []struct {
		name string
		in   []byte
		wire []byte
	}{
		{"32 zero bytes", make([]byte, 32), []byte{0xaa, 0x36, 0x91, 0x8a}},
		{"32 0xff bytes", bytes.Repeat([]byte{0xff}, 32), []byte{0x43, 0xab, 0xa8, 0x62}},
		{"32 incrementing bytes", func() []byte {
			b := make([]byte, 32)
			for i := range b {
				b[i] = byte(i)
			}
			return b
		}(), []byte{0x4e, 0x79, 0xdd, 0x46}},
		{"32 decrementing bytes", func() []byte {
			b := make([]byte, 32)
			for i := range b {
				b[i] = byte(31 - i)
			}
			return b
		}(), []byte{0x5c, 0xdb, 0x3f, 0x11}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			crc := CRC32C(tt.in)
			assert.Equal(t, uint32(tt.wire[0])|uint32(tt.wire[1])<<8|uint32(tt.wire[2])<<16|uint32(tt.wire[3])<<24, crc)
			assert.Equal(t, tt.wire, AppendDigest(nil, crc))
			assert.Equal(t, crc, ParseDigest(tt.wire))
			assert.Equal(t, crc, UpdateCRC32C(CRC32C(tt.in[:7]), tt.in[7:]))
		})
	}
}

func TestSerialArithmetic(t *testing.T) {
	const max = math.MaxUint32
	tests := []struct {
		a, b                      uint32
		less, greater, comparable bool
	}{
		{1, 2, true, false, true},
		{2, 1, false, true, true},
		{5, 5, false, false, true},
		{max, 0, true, false, true},       // wrap-around: 0 follows 2^32-1
		{0, max, false, true, true},       // and precedes nothing before it
		{max - 10, 5, true, false, true},  // across the wrap
		{0, 1<<31 - 1, true, false, true}, // largest forward distance
		{1<<31 - 1, 0, false, true, true}, // and backward
		{0, 1 << 31, false, false, false}, // exactly 2^31 apart: undefined
		{1 << 31, 0, false, false, false}, // both ways
		{100, 100 + 1<<31, false, false, false},
		{0, 1<<31 + 1, false, true, true}, // just over half: 0 is "after"
	}
	for _, tt := range tests {
		assert.Equal(t, tt.less, SerialLess(tt.a, tt.b), "SerialLess(%d, %d)", tt.a, tt.b)
		assert.Equal(t, tt.greater, SerialGreater(tt.a, tt.b), "SerialGreater(%d, %d)", tt.a, tt.b)
		assert.Equal(t, tt.less || tt.a == tt.b, SerialLessEq(tt.a, tt.b), "SerialLessEq(%d, %d)", tt.a, tt.b)
		assert.Equal(t, tt.greater || tt.a == tt.b, SerialGreaterEq(tt.a, tt.b), "SerialGreaterEq(%d, %d)", tt.a, tt.b)
		if !tt.comparable {
			assert.False(t, SerialLessEq(tt.a, tt.b) || SerialGreaterEq(tt.a, tt.b))
		}
	}
	assert.Equal(t, uint32(4), SerialAdd(max-1, 6))
	assert.Equal(t, int32(6), SerialDiff(4, max-1))
	assert.Equal(t, int32(-6), SerialDiff(max-1, 4))
	assert.Equal(t, int32(math.MinInt32), SerialDiff(1<<31, 0))
	assert.True(t, SerialInWindow(max, max-1, 2))
	assert.True(t, SerialInWindow(2, max-1, 2))
	assert.False(t, SerialInWindow(3, max-1, 2))
	assert.False(t, SerialInWindow(5, 5, 4), "empty window MaxCmdSN = ExpCmdSN-1")
}
