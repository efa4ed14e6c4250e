package scsi

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPlanRW(t *testing.T) {
	tests := []struct {
		name   string
		lba    uint64
		blocks uint32
		max    uint32
		want   []RWChunk
	}{
		{"nothing", 0, 0, 0, nil},
		{"small, no limit", 8, 16, 0, []RWChunk{{LBA: 8, Blocks: 16}}},
		{"65535 fits (10)", 0, 65535, 0, []RWChunk{{Blocks: 65535}}},
		{"65536 needs (16)", 0, 65536, 0, []RWChunk{{Blocks: 65536, Use16: true}}},
		{"high LBA needs (16)", 1 << 32, 8, 0, []RWChunk{{LBA: 1 << 32, Blocks: 8, Use16: true}}},
		{"last 32-bit LBA is (10)", 0xffffffff, 1, 0, []RWChunk{{LBA: 0xffffffff, Blocks: 1}}},
		{"split at the maximum transfer length", 100, 2500, 1024, []RWChunk{
			{LBA: 100, Blocks: 1024}, {LBA: 1124, Blocks: 1024, Offset: 1024}, {LBA: 2148, Blocks: 452, Offset: 2048}}},
		{"split crossing 2^32", 0xffffff00, 0x200, 0x100, []RWChunk{
			{LBA: 0xffffff00, Blocks: 0x100}, {LBA: 1 << 32, Blocks: 0x100, Offset: 0x100, Use16: true}}},
		{"large limit, big transfer uses (16) chunks", 0, 200000, 100000, []RWChunk{
			{Blocks: 100000, Use16: true}, {LBA: 100000, Blocks: 100000, Offset: 100000, Use16: true}}},
		{"max uint32 blocks", 0, 0xffffffff, 0, []RWChunk{{Blocks: 0xffffffff, Use16: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PlanRW(tt.lba, tt.blocks, tt.max)
			assert.Equal(t, uint64(len(tt.want)), p.Chunks())
			var got []RWChunk
			for c, ok := p.Next(); ok; c, ok = p.Next() {
				got = append(got, c)
				require.LessOrEqual(t, len(got), 10, "runaway plan")
			}
			assert.Equal(t, tt.want, got)
			assert.Zero(t, p.Remaining())
			_, ok := p.Next()
			assert.False(t, ok)
		})
	}
}

func TestRWChunkCDB(t *testing.T) {
	c := RWChunk{LBA: 2048, Blocks: 384}
	assert.Equal(t, unhex("28000000080000018000"), c.AppendReadCDB(nil, 0))
	assert.Equal(t, unhex("2a080000080000018000"), c.AppendWriteCDB(nil, FUA))
	c = RWChunk{LBA: 1 << 32, Blocks: 1, Use16: true}
	assert.Equal(t, unhex("88000000000100000000000000010000"), c.AppendReadCDB(nil, 0))
	assert.Equal(t, unhex("8a000000000100000000000000010000"), c.AppendWriteCDB(nil, 0))
	// A hand-made chunk without Use16 still gets the form it needs.
	c = RWChunk{LBA: 0, Blocks: 70000}
	assert.Equal(t, byte(OpRead16), c.AppendReadCDB(nil, 0)[0])
	assert.Equal(t, byte(OpWrite16), c.AppendWriteCDB(nil, 0)[0])
}
