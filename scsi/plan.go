package scsi

// RWPlan splits a block transfer into commands. It is a value type: keep
// it on the stack and call Next until it returns false; nothing allocates.
type RWPlan struct {
	lba       uint64
	remaining uint64
	max       uint32
	done      uint64
}

// RWChunk is one command of a plan.
type RWChunk struct {
	LBA    uint64
	Blocks uint32
	// Offset is the position of the chunk in the whole transfer, in blocks.
	Offset uint64
	// Use16 is set when READ/WRITE(16) is needed: the LBA does not fit in
	// 32 bits or the count does not fit in 16.
	Use16 bool
}

// PlanRW plans a transfer of blocks blocks starting at lba, split so that no
// command moves more than maxTransferBlocks (the MAXIMUM TRANSFER LENGTH of
// VPD page 0xB0; 0 means no limit). Each chunk uses READ/WRITE(10) when its
// LBA fits in 32 bits and its count in 16 bits, else (16).
//
//	p := scsi.PlanRW(lba, n, limits.MaxTransferLength)
//	for c, ok := p.Next(); ok; c, ok = p.Next() {
//		cdb = c.AppendReadCDB(cdb[:0], 0)
//		...
//	}
func PlanRW(lba uint64, blocks uint32, maxTransferBlocks uint32) RWPlan {
	return RWPlan{lba: lba, remaining: uint64(blocks), max: maxTransferBlocks}
}

// Remaining returns the number of blocks not yet handed out.
func (p *RWPlan) Remaining() uint64 { return p.remaining }

// Next returns the next chunk, or false when the transfer is complete.
func (p *RWPlan) Next() (RWChunk, bool) {
	if p.remaining == 0 {
		return RWChunk{}, false
	}
	n := p.remaining
	if p.max != 0 && n > uint64(p.max) {
		n = uint64(p.max)
	}
	c := RWChunk{LBA: p.lba, Blocks: uint32(n), Offset: p.done}
	c.Use16 = c.LBA > 0xffffffff || c.Blocks > 0xffff
	p.lba += n
	p.remaining -= n
	p.done += n
	return c, true
}

// Chunks returns how many commands the plan needs in total from now.
func (p *RWPlan) Chunks() uint64 {
	if p.max == 0 {
		if p.remaining == 0 {
			return 0
		}
		return 1
	}
	return (p.remaining + uint64(p.max) - 1) / uint64(p.max)
}

// AppendReadCDB appends READ(10) or READ(16) for the chunk.
func (c RWChunk) AppendReadCDB(dst []byte, f RWFlags) []byte {
	if c.Use16 || c.LBA > 0xffffffff || c.Blocks > 0xffff {
		return Read16CDB(dst, c.LBA, c.Blocks, f)
	}
	return Read10CDB(dst, uint32(c.LBA), uint16(c.Blocks), f)
}

// AppendWriteCDB appends WRITE(10) or WRITE(16) for the chunk.
func (c RWChunk) AppendWriteCDB(dst []byte, f RWFlags) []byte {
	if c.Use16 || c.LBA > 0xffffffff || c.Blocks > 0xffff {
		return Write16CDB(dst, c.LBA, c.Blocks, f)
	}
	return Write10CDB(dst, uint32(c.LBA), uint16(c.Blocks), f)
}
