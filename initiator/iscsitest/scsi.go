package iscsitest

import (
	"encoding/binary"
	"sort"

	"github.com/gosan/iscsi/scsi"
)

// SCSI operation codes the server implements.
const (
	opTestUnitReady  = 0x00
	opRequestSense   = 0x03
	opRead6          = 0x08
	opWrite6         = 0x0a
	opInquiry        = 0x12
	opModeSense6     = 0x1a
	opStartStop      = 0x1b
	opPreventAllow   = 0x1e
	opReadCapacity10 = 0x25
	opRead10         = 0x28
	opWrite10        = 0x2a
	opSyncCache10    = 0x35
	opUnmap          = 0x42
	opModeSense10    = 0x5a
	opRead16         = 0x88
	opWrite16        = 0x8a
	opSyncCache16    = 0x91
	opWriteSame16    = 0x93
	opServiceIn16    = 0x9e
	opReportLUNs     = 0xa0
)

// cmdResult is the outcome of one SCSI command.
type cmdResult struct {
	status uint8
	sense  []byte // fixed-format sense data
	data   []byte // Data-In (may be longer than EDTL: overflow)
	// want is how many bytes of Data-Out the command consumes (for
	// write residuals).
	want int
}

// fixedSense builds 18 bytes of fixed-format sense data.
func fixedSense(key scsi.SenseKey, asc, ascq uint8) []byte {
	b := make([]byte, 18)
	b[0] = 0x70
	b[2] = byte(key) & 0x0f
	b[7] = 10
	b[12] = asc
	b[13] = ascq
	return b
}

func checkCondition(key scsi.SenseKey, asc, ascq uint8) cmdResult {
	return cmdResult{status: uint8(scsi.StatusCheckCondition), sense: fixedSense(key, asc, ascq)}
}

var (
	errInvalidOpcode = func() cmdResult { return checkCondition(scsi.SenseIllegalRequest, 0x20, 0x00) }
	errLBARange      = func() cmdResult { return checkCondition(scsi.SenseIllegalRequest, 0x21, 0x00) }
	errInvalidField  = func() cmdResult { return checkCondition(scsi.SenseIllegalRequest, 0x24, 0x00) }
	errParamList     = func() cmdResult { return checkCondition(scsi.SenseIllegalRequest, 0x26, 0x00) }
	errNoLUN         = func() cmdResult { return checkCondition(scsi.SenseIllegalRequest, 0x25, 0x00) }
	errWriteProtect  = func() cmdResult { return checkCondition(scsi.SenseDataProtect, 0x27, 0x00) }
)

// dataOutLength returns how many Data-Out bytes a CDB transfers, for
// commands that write; ok is false if the CDB is not a write or is bad.
func (l *memLUN) dataOutLength(cdb []byte) int {
	if len(cdb) < 6 {
		return 0
	}
	switch cdb[0] {
	case opWrite6:
		n := int(cdb[4])
		if n == 0 {
			n = 256
		}
		return n * l.bs
	case opWrite10:
		return int(binary.BigEndian.Uint16(cdb[7:9])) * l.bs
	case opWrite16:
		return int(binary.BigEndian.Uint32(cdb[10:14])) * l.bs
	case opWriteSame16:
		if cdb[1]&0x01 != 0 { // NDOB
			return 0
		}
		return l.bs
	case opUnmap:
		return int(binary.BigEndian.Uint16(cdb[7:9]))
	}
	return 0
}

// rwArgs decodes LBA and block count of a READ/WRITE CDB.
func rwArgs(cdb []byte) (lba uint64, blocks uint64, ok bool) {
	switch cdb[0] {
	case opRead6, opWrite6:
		lba = uint64(cdb[1]&0x1f)<<16 | uint64(cdb[2])<<8 | uint64(cdb[3])
		blocks = uint64(cdb[4])
		if blocks == 0 {
			blocks = 256
		}
		return lba, blocks, true
	case opRead10, opWrite10, opSyncCache10:
		return uint64(binary.BigEndian.Uint32(cdb[2:6])), uint64(binary.BigEndian.Uint16(cdb[7:9])), true
	case opRead16, opWrite16, opSyncCache16, opWriteSame16:
		return binary.BigEndian.Uint64(cdb[2:10]), uint64(binary.BigEndian.Uint32(cdb[10:14])), true
	}
	return 0, 0, false
}

func (l *memLUN) inRange(lba, blocks uint64) bool {
	return lba <= l.cfg.Blocks && blocks <= l.cfg.Blocks-lba
}

// execute runs one command against the LUN (nil: LUN not present).
func (s *Server) execute(t *target, l *memLUN, cdb []byte, out []byte) cmdResult {
	if len(cdb) == 0 {
		return errInvalidOpcode()
	}
	switch cdb[0] {
	case opInquiry:
		return s.inquiry(t, l, cdb)
	case opReportLUNs:
		return reportLUNs(t, cdb)
	case opRequestSense:
		alloc := int(cdb[4])
		return cmdResult{data: trim(fixedSense(scsi.SenseNoSense, 0, 0), alloc)}
	}
	if l == nil {
		return errNoLUN()
	}
	switch cdb[0] {
	case opTestUnitReady, opStartStop, opPreventAllow:
		return cmdResult{}
	case opReadCapacity10:
		b := make([]byte, 8)
		last := l.cfg.Blocks - 1
		if last > 0xffffffff {
			last = 0xffffffff
		}
		binary.BigEndian.PutUint32(b, uint32(last))
		binary.BigEndian.PutUint32(b[4:], uint32(l.bs))
		return cmdResult{data: b}
	case opServiceIn16:
		if cdb[1]&0x1f != 0x10 { // READ CAPACITY(16)
			return errInvalidField()
		}
		b := make([]byte, 32)
		binary.BigEndian.PutUint64(b, l.cfg.Blocks-1)
		binary.BigEndian.PutUint32(b[8:], uint32(l.bs))
		b[14] = 0x80 | 0x40 // LBPME, LBPRZ: unmapped blocks read as zeros
		return cmdResult{data: trim(b, int(binary.BigEndian.Uint32(cdb[10:14])))}
	case opRead6, opRead10, opRead16:
		lba, blocks, _ := rwArgs(cdb)
		if !l.inRange(lba, blocks) {
			return errLBARange()
		}
		if l.cfg.MaxTransferBlocks > 0 && blocks > uint64(l.cfg.MaxTransferBlocks) {
			return errInvalidField()
		}
		if blocks*uint64(l.bs) > maxPendingWrite {
			return errInvalidField()
		}
		b := make([]byte, blocks*uint64(l.bs))
		l.mu.RLock()
		copy(b, l.data[lba*uint64(l.bs):])
		l.mu.RUnlock()
		return cmdResult{data: b}
	case opWrite6, opWrite10, opWrite16:
		lba, blocks, _ := rwArgs(cdb)
		if !l.inRange(lba, blocks) {
			return errLBARange()
		}
		if l.cfg.MaxTransferBlocks > 0 && blocks > uint64(l.cfg.MaxTransferBlocks) {
			return errInvalidField()
		}
		if l.cfg.ReadOnly {
			return errWriteProtect()
		}
		n := int(blocks) * l.bs
		l.mu.Lock()
		copy(l.data[lba*uint64(l.bs):lba*uint64(l.bs)+uint64(n)], out)
		l.mu.Unlock()
		return cmdResult{want: n}
	case opSyncCache10, opSyncCache16:
		lba, blocks, _ := rwArgs(cdb)
		if blocks == 0 {
			blocks = l.cfg.Blocks - min(lba, l.cfg.Blocks)
		}
		if !l.inRange(lba, blocks) {
			return errLBARange()
		}
		return cmdResult{}
	case opWriteSame16:
		lba, blocks, _ := rwArgs(cdb)
		if blocks == 0 {
			blocks = l.cfg.Blocks - min(lba, l.cfg.Blocks)
		}
		if !l.inRange(lba, blocks) {
			return errLBARange()
		}
		if l.cfg.ReadOnly {
			return errWriteProtect()
		}
		ndob := cdb[1]&0x01 != 0
		unmap := cdb[1]&0x08 != 0
		pattern := make([]byte, l.bs)
		if !ndob {
			if len(out) < l.bs {
				return errInvalidField()
			}
			copy(pattern, out)
		}
		if unmap && !allZero(pattern) {
			unmap = false // an unmapped block would not read back as the pattern
		}
		l.mu.Lock()
		for i := uint64(0); i < blocks; i++ {
			copy(l.data[(lba+i)*uint64(l.bs):], pattern)
		}
		l.mu.Unlock()
		_ = unmap
		return cmdResult{want: len(pattern)}
	case opUnmap:
		if l.cfg.ReadOnly {
			return errWriteProtect()
		}
		if len(out) < 8 {
			if len(out) == 0 {
				return cmdResult{}
			}
			return errParamList()
		}
		dl := int(binary.BigEndian.Uint16(out[2:4]))
		if 8+dl > len(out) || dl%16 != 0 {
			return errParamList()
		}
		type rng struct{ lba, n uint64 }
		var rs []rng
		for d := out[8 : 8+dl]; len(d) >= 16; d = d[16:] {
			r := rng{binary.BigEndian.Uint64(d), uint64(binary.BigEndian.Uint32(d[8:12]))}
			if !l.inRange(r.lba, r.n) {
				return errLBARange()
			}
			rs = append(rs, r)
		}
		l.mu.Lock()
		for _, r := range rs {
			clear(l.data[r.lba*uint64(l.bs) : (r.lba+r.n)*uint64(l.bs)])
		}
		l.mu.Unlock()
		return cmdResult{want: len(out)}
	case opModeSense6, opModeSense10:
		return modeSense(l, cdb)
	}
	return errInvalidOpcode()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func trim(b []byte, alloc int) []byte {
	if alloc < len(b) {
		return b[:alloc]
	}
	return b
}

const (
	vendorID  = "GOSAN   "
	productID = "ISCSITEST DISK  "
	revision  = "0001"
)

func (s *Server) inquiry(t *target, l *memLUN, cdb []byte) cmdResult {
	alloc := int(binary.BigEndian.Uint16(cdb[3:5]))
	if cdb[1]&0x01 == 0 {
		if cdb[2] != 0 {
			return errInvalidField()
		}
		b := make([]byte, 36)
		if l == nil {
			b[0] = 0x7f // peripheral qualifier 011b: no LU here
		}
		b[2] = 0x06        // SPC-4
		b[3] = 0x02 | 0x10 // response format 2, HiSup
		b[4] = byte(len(b) - 5)
		b[7] = 0x02 // CmdQue
		copy(b[8:16], vendorID)
		copy(b[16:32], productID)
		copy(b[32:36], revision)
		return cmdResult{data: trim(b, alloc)}
	}
	if l == nil {
		return errNoLUN()
	}
	page := cdb[2]
	var body []byte
	switch page {
	case 0x00:
		body = []byte{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2}
	case 0x80:
		body = []byte(l.cfg.Serial)
	case 0x83:
		// NAA IEEE Registered Extended (6h) designator, binary, LU.
		naa := make([]byte, 16)
		naa[0] = 0x60 | 0x01
		binary.BigEndian.PutUint32(naa[4:], fnv32(t.cfg.Name))
		binary.BigEndian.PutUint64(naa[8:], l.cfg.Number)
		body = append(body, 0x01, 0x03, 0x00, byte(len(naa)))
		body = append(body, naa...)
		// T10 vendor ID designator, ASCII, LU.
		t10 := vendorID + l.cfg.Serial
		body = append(body, 0x02, 0x01, 0x00, byte(len(t10)))
		body = append(body, t10...)
	case 0xb0:
		body = make([]byte, 0x3c)
		// Offsets below are page offsets minus 4.
		binary.BigEndian.PutUint16(body[2:], 1) // optimal transfer granularity
		binary.BigEndian.PutUint32(body[4:], l.cfg.MaxTransferBlocks)
		binary.BigEndian.PutUint32(body[16:], 0xffffffff) // max unmap LBA count
		binary.BigEndian.PutUint32(body[20:], 256)        // max unmap descriptors
		binary.BigEndian.PutUint32(body[24:], 1)          // optimal unmap granularity
		binary.BigEndian.PutUint64(body[32:], l.cfg.Blocks)
	case 0xb1:
		body = make([]byte, 0x3c)
		binary.BigEndian.PutUint16(body[0:], 1) // non-rotating medium
	case 0xb2:
		body = []byte{0, 0x80 | 0x40 | 0x04, 0x02, 0} // LBPU, LBPWS, LBPRZ=1; thin provisioned
	default:
		return errInvalidField()
	}
	b := make([]byte, 4, 4+len(body))
	b[1] = page
	binary.BigEndian.PutUint16(b[2:], uint16(len(body)))
	b = append(b, body...)
	return cmdResult{data: trim(b, alloc)}
}

func reportLUNs(t *target, cdb []byte) cmdResult {
	if len(cdb) < 12 {
		return errInvalidField()
	}
	alloc := int(binary.BigEndian.Uint32(cdb[6:10]))
	if alloc < 16 {
		return errInvalidField()
	}
	ns := make([]uint64, 0, len(t.luns))
	for n := range t.luns {
		ns = append(ns, n)
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
	b := make([]byte, 8, 8+8*len(ns))
	binary.BigEndian.PutUint32(b, uint32(8*len(ns)))
	for _, n := range ns {
		b = binary.BigEndian.AppendUint64(b, scsi.EncodeLUN(n))
	}
	return cmdResult{data: trim(b, alloc)}
}

func modeSense(l *memLUN, cdb []byte) cmdResult {
	ten := cdb[0] == opModeSense10
	if ten && len(cdb) < 10 {
		return errInvalidField()
	}
	dbd := cdb[1]&0x08 != 0
	page := cdb[2] & 0x3f
	var alloc int
	if ten {
		alloc = int(binary.BigEndian.Uint16(cdb[7:9]))
	} else {
		alloc = int(cdb[4])
	}
	var pages []byte
	caching := []byte{0x08, 0x12, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // WCE
	control := []byte{0x0a, 0x0a, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	switch page {
	case 0x08:
		pages = caching
	case 0x0a:
		pages = control
	case 0x3f:
		pages = append(append(pages, caching...), control...)
	default:
		return errInvalidField()
	}
	var bd []byte
	if !dbd {
		bd = make([]byte, 8)
		blocks := l.cfg.Blocks
		if blocks > 0xffffffff {
			blocks = 0xffffffff
		}
		binary.BigEndian.PutUint32(bd, uint32(blocks))
		binary.BigEndian.PutUint32(bd[4:], uint32(l.bs)&0xffffff)
	}
	var wp byte
	if l.cfg.ReadOnly {
		wp = 0x80
	}
	var b []byte
	if ten {
		b = make([]byte, 8)
		b[3] = wp
		binary.BigEndian.PutUint16(b[6:], uint16(len(bd)))
		b = append(append(b, bd...), pages...)
		binary.BigEndian.PutUint16(b, uint16(len(b)-2))
	} else {
		b = []byte{0, 0, wp, byte(len(bd))}
		b = append(append(b, bd...), pages...)
		b[0] = byte(len(b) - 1)
	}
	return cmdResult{data: trim(b, alloc)}
}
