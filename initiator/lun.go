package initiator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/gosan/iscsi/scsi"
)

// LUN is a logical unit of a session, usable as an io.ReaderAt and
// io.WriterAt. Offsets and lengths must be multiples of BlockSize. A LUN is
// safe for concurrent use.
type LUN struct {
	s   *Session
	n   uint64 // LUN number
	raw uint64 // 8-byte SAM encoding

	mu        sync.Mutex
	inquiry   scsi.Inquiry
	capacity  scsi.Capacity
	limits    scsi.BlockLimits
	hasLimits bool
	blockSize uint32
	size      int64
	maxChunk  int // bytes per command for split transfers
}

func encodeLUN(n uint64) uint64 { return scsi.EncodeLUN(n) }

// LUN opens logical unit n (its LUN number, e.g. 1): it issues INQUIRY,
// READ CAPACITY(16) (falling back to (10)) and reads the Block Limits VPD
// page when the device has one.
func (s *Session) LUN(ctx context.Context, n uint64) (*LUN, error) {
	l := &LUN{s: s, n: n, raw: scsi.EncodeLUN(n)}
	buf := make([]byte, 255)
	var res Result
	if err := l.do(ctx, scsi.InquiryCDB(nil, uint16(len(buf))), buf, nil, &res); err != nil {
		return nil, fmt.Errorf("iscsi: LUN %d: INQUIRY: %w", n, err)
	}
	inq, err := scsi.ParseInquiry(buf[:res.Transferred])
	if err != nil {
		return nil, fmt.Errorf("iscsi: LUN %d: %w", n, err)
	}
	if inq.Qualifier != 0 {
		return nil, fmt.Errorf("iscsi: LUN %d: no logical unit there (peripheral qualifier %d)", n, inq.Qualifier)
	}
	l.inquiry = inq
	if _, err := l.ReadCapacity(ctx); err != nil {
		return nil, err
	}
	// Block limits, when VPD page 0xB0 is supported.
	if err := l.do(ctx, scsi.InquiryVPDCDB(nil, scsi.VPDSupportedPages, uint16(len(buf))), buf, nil, &res); err == nil {
		pages, perr := scsi.ParseVPDSupportedPages(buf[:res.Transferred])
		if perr == nil && slices.Contains(pages, scsi.VPDBlockLimits) {
			if err := l.do(ctx, scsi.InquiryVPDCDB(nil, scsi.VPDBlockLimits, 64), buf[:64], nil, &res); err == nil {
				if bl, err := scsi.ParseVPDBlockLimits(buf[:res.Transferred]); err == nil {
					l.limits, l.hasLimits = bl, true
				}
			}
		}
	}
	l.computeChunk()
	return l, nil
}

func (l *LUN) computeChunk() {
	chunk := int(l.s.Negotiated().MaxBurstLength)
	if chunk <= 0 {
		chunk = 256 << 10
	}
	bs := int(l.blockSize)
	if l.hasLimits && l.limits.MaxTransferLength > 0 {
		if m := int(min(uint64(l.limits.MaxTransferLength)*uint64(bs), 1<<30)); m < chunk {
			chunk = m
		}
	}
	chunk -= chunk % bs
	if chunk < bs {
		chunk = bs
	}
	l.maxChunk = chunk
}

// Number returns the LUN number.
func (l *LUN) Number() uint64 { return l.n }

// Inquiry returns the standard INQUIRY data read when the LUN was opened.
func (l *LUN) Inquiry() scsi.Inquiry { return l.inquiry }

// BlockLimits returns VPD page 0xB0 and whether the device reported it.
func (l *LUN) BlockLimits() (scsi.BlockLimits, bool) { return l.limits, l.hasLimits }

// BlockSize returns the logical block size in bytes.
func (l *LUN) BlockSize() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.blockSize)
}

// Size returns the capacity in bytes (as of the last ReadCapacity).
func (l *LUN) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// ReadCapacity queries the capacity again (READ CAPACITY(16), falling back
// to READ CAPACITY(10)) and updates Size and BlockSize.
func (l *LUN) ReadCapacity(ctx context.Context) (scsi.Capacity, error) {
	buf := make([]byte, scsi.DefaultReadCapacity16Len)
	var res Result
	var capy scsi.Capacity
	err := l.do(ctx, scsi.ReadCapacity16CDB(nil, uint32(len(buf))), buf, nil, &res)
	if err == nil {
		capy, err = scsi.ParseReadCapacity16(buf[:res.Transferred])
	} else if errors.Is(err, scsi.ErrIllegalRequest) {
		err = l.do(ctx, scsi.ReadCapacity10CDB(nil), buf[:8], nil, &res)
		if err == nil {
			capy, err = scsi.ParseReadCapacity10(buf[:res.Transferred])
			if err == nil && capy.NeedsReadCapacity16() {
				err = errors.New("capacity needs READ CAPACITY(16), which the device rejects")
			}
		}
	}
	if err == nil && capy.BlockLength == 0 {
		err = errors.New("block length 0")
	}
	if err != nil {
		return scsi.Capacity{}, fmt.Errorf("iscsi: LUN %d: READ CAPACITY: %w", l.n, err)
	}
	l.mu.Lock()
	l.capacity = capy
	l.blockSize = capy.BlockLength
	b := capy.Bytes()
	if b > 1<<62 {
		b = 1 << 62
	}
	l.size = int64(b)
	l.mu.Unlock()
	return capy, nil
}

// do runs a command on the LUN (see Session.do).
func (l *LUN) do(ctx context.Context, cdb, in, out []byte, res *Result) error {
	return l.s.do(ctx, l.raw, cdb, in, out, res)
}

// Execute sends a raw CDB to the LUN, as Session.Execute does to any LUN.
func (l *LUN) Execute(ctx context.Context, cdb, dataIn, dataOut []byte) (Result, error) {
	var res Result
	err := l.s.execute(ctx, l.raw, cdb, dataIn, dataOut, &res)
	return res, err
}

func (l *LUN) check(off int64, n int) error {
	l.mu.Lock()
	bs, size := int64(l.blockSize), l.size
	l.mu.Unlock()
	if off < 0 || off%bs != 0 || int64(n)%bs != 0 || off+int64(n) > size {
		return &AlignmentError{Offset: off, Length: n, BlockSize: uint32(bs), Size: size}
	}
	return nil
}

// ReadAt reads len(p) bytes at byte offset off (io.ReaderAt). off and
// len(p) must be multiples of BlockSize.
func (l *LUN) ReadAt(p []byte, off int64) (int, error) {
	return l.ReadAtContext(context.Background(), p, off)
}

// WriteAt writes p at byte offset off (io.WriterAt). off and len(p) must be
// multiples of BlockSize.
func (l *LUN) WriteAt(p []byte, off int64) (int, error) {
	return l.WriteAtContext(context.Background(), p, off)
}

// ReadAtContext is ReadAt with a context. Cancelling it aborts the commands
// in flight (ABORT TASK) before returning, so p is not written afterwards.
func (l *LUN) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	return l.rw(ctx, p, off, false)
}

// WriteAtContext is WriteAt with a context.
func (l *LUN) WriteAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	return l.rw(ctx, p, off, true)
}

// maxSplit bounds the commands one ReadAt/WriteAt keeps in flight.
const maxSplit = 16

func (l *LUN) rw(ctx context.Context, p []byte, off int64, write bool) (int, error) {
	if err := l.check(off, len(p)); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	bs := int64(l.blockSize)
	plan := scsi.PlanRW(uint64(off/bs), uint32(int64(len(p))/bs), uint32(l.maxChunk/int(bs)))
	if plan.Chunks() == 1 {
		ch, _ := plan.Next()
		return l.rwChunk(ctx, ch, p, write)
	}
	return l.rwSplit(ctx, &plan, p, write)
}

func (l *LUN) rwChunk(ctx context.Context, ch scsi.RWChunk, p []byte, write bool) (int, error) {
	var cdbBuf [16]byte
	var res Result
	var err error
	if write {
		err = l.do(ctx, ch.AppendWriteCDB(cdbBuf[:0], 0), nil, p, &res)
	} else {
		err = l.do(ctx, ch.AppendReadCDB(cdbBuf[:0], 0), p, nil, &res)
	}
	if err != nil {
		return 0, err
	}
	if n, short := shortTransfer(&res, len(p), write); short {
		return n, fmt.Errorf("iscsi: short transfer: %d of %d bytes", n, len(p))
	}
	return len(p), nil
}

// shortTransfer reports how many bytes of an n-byte chunk are valid when
// fewer than n were transferred. For reads it trusts only the Data-In
// bytes that arrived (the target's residual flags may claim more: an
// overflow flag, or an underflow with a residual too small), so bytes the
// target never sent are never reported as read.
func shortTransfer(res *Result, n int, write bool) (int, bool) {
	valid := n
	if res.Underflow && res.Residual > 0 {
		valid = max(n-res.Residual, 0)
	}
	if !write {
		valid = min(valid, res.Transferred)
	}
	return valid, valid < n
}

// rwSplit issues the chunks of a large transfer concurrently (up to
// maxSplit and the queue depth), without goroutines: it starts commands,
// then waits for the oldest and starts the next.
func (l *LUN) rwSplit(ctx context.Context, plan *scsi.RWPlan, p []byte, write bool) (int, error) {
	type inflight struct {
		sl  *slot
		ch  scsi.RWChunk
		buf []byte
	}
	var q [maxSplit]inflight
	head, n := 0, 0
	bs := int(l.blockSize)
	limit := min(maxSplit, cap(l.s.slots.free))
	var firstErr error
	done := 0
	var cdbBuf [16]byte
	for {
		for firstErr == nil && n < limit {
			ch, ok := plan.Next()
			if !ok {
				break
			}
			buf := p[int(ch.Offset)*bs : (int(ch.Offset)+int(ch.Blocks))*bs]
			var sl *slot
			var err error
			if write {
				sl, err = l.s.start(ctx, l.raw, ch.AppendWriteCDB(cdbBuf[:0], 0), nil, buf)
			} else {
				sl, err = l.s.start(ctx, l.raw, ch.AppendReadCDB(cdbBuf[:0], 0), buf, nil)
			}
			if err != nil {
				firstErr = err
				break
			}
			q[(head+n)%maxSplit] = inflight{sl, ch, buf}
			n++
		}
		if n == 0 {
			break
		}
		f := q[head]
		q[head] = inflight{}
		head = (head + 1) % maxSplit
		n--
		var res Result
		_, err := l.s.wait(ctx, f.sl, &res)
		if err == nil && res.Status != scsi.StatusGood {
			err = res.Err()
			if errors.Is(err, scsi.ErrUnitAttention) {
				_, err = l.rwChunk(ctx, f.ch, f.buf, write)
			}
		} else if v, short := shortTransfer(&res, len(f.buf), write); err == nil && short {
			err = fmt.Errorf("iscsi: short transfer: %d of %d bytes", v, len(f.buf))
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if firstErr == nil {
			done += len(f.buf)
		}
	}
	if firstErr != nil {
		return done, firstErr
	}
	return len(p), nil
}

// SynchronizeCache asks the device to write its cache for the whole LUN
// to the medium (SYNCHRONIZE CACHE(10), or (16) for large LUNs).
func (l *LUN) SynchronizeCache(ctx context.Context) error {
	var cdb []byte
	if l.Size()/int64(l.BlockSize()) > 0xffffffff {
		cdb = scsi.SynchronizeCache16CDB(nil, 0, 0, false)
	} else {
		cdb = scsi.SynchronizeCache10CDB(nil, 0, 0, false)
	}
	var res Result
	return l.do(ctx, cdb, nil, nil, &res)
}

// Unmap deallocates the byte range [off, off+n) (block-aligned).
func (l *LUN) Unmap(ctx context.Context, off, n int64) error {
	if err := l.checkRange(off, n); err != nil {
		return err
	}
	bs := int64(l.BlockSize())
	maxBlocks := uint64(0xffffffff)
	if l.hasLimits && l.limits.MaxUnmapLBACount > 0 {
		maxBlocks = uint64(l.limits.MaxUnmapLBACount)
	}
	lba, blocks := uint64(off/bs), uint64(n/bs)
	for blocks > 0 {
		c := min(blocks, maxBlocks)
		params := scsi.AppendUnmapParams(nil, []scsi.UnmapDescriptor{{LBA: lba, Blocks: uint32(c)}})
		var res Result
		if err := l.do(ctx, scsi.UnmapCDB(nil, false, uint16(len(params))), nil, params, &res); err != nil {
			return err
		}
		lba += c
		blocks -= c
	}
	return nil
}

// WriteSame writes block (exactly one logical block) to every block of
// [off, off+n); with block nil, it writes zeros. unmap sets the UNMAP bit
// (the device may deallocate instead of writing zeros).
func (l *LUN) WriteSame(ctx context.Context, off, n int64, block []byte, unmap bool) error {
	if err := l.checkRange(off, n); err != nil {
		return err
	}
	bs := int64(l.BlockSize())
	if block == nil {
		block = make([]byte, bs)
	}
	if int64(len(block)) != bs {
		return &AlignmentError{Offset: off, Length: len(block), BlockSize: uint32(bs), Size: l.Size()}
	}
	var f scsi.WriteSameFlags
	if unmap {
		f |= scsi.WriteSameUnmap
	}
	maxBlocks := uint64(0xffffffff)
	if l.hasLimits && l.limits.MaxWriteSameLength > 0 {
		maxBlocks = min(maxBlocks, l.limits.MaxWriteSameLength)
	}
	lba, blocks := uint64(off/bs), uint64(n/bs)
	for blocks > 0 {
		c := min(blocks, maxBlocks)
		var res Result
		if err := l.do(ctx, scsi.WriteSame16CDB(nil, lba, uint32(c), f), nil, block, &res); err != nil {
			return err
		}
		lba += c
		blocks -= c
	}
	return nil
}

func (l *LUN) checkRange(off, n int64) error {
	l.mu.Lock()
	bs, size := int64(l.blockSize), l.size
	l.mu.Unlock()
	if off < 0 || n < 0 || off%bs != 0 || n%bs != 0 || off+n > size {
		return &AlignmentError{Offset: off, Length: int(min(n, 1<<62)), BlockSize: uint32(bs), Size: size}
	}
	return nil
}

// ReportLUNs returns the LUN numbers the target reports (REPORT LUNS to LUN 0).
func (s *Session) ReportLUNs(ctx context.Context) ([]uint64, error) {
	l := &LUN{s: s, n: 0, raw: 0}
	size := 1024
	for range 3 {
		buf := make([]byte, size)
		var res Result
		if err := l.do(ctx, scsi.ReportLUNsCDB(nil, 0, uint32(size)), buf, nil, &res); err != nil {
			return nil, fmt.Errorf("iscsi: REPORT LUNS: %w", err)
		}
		need, err := scsi.ReportLUNsLength(buf[:res.Transferred])
		if err != nil {
			return nil, fmt.Errorf("iscsi: REPORT LUNS: %w", err)
		}
		if need > size {
			size = min(need, 1<<20)
			continue
		}
		luns, err := scsi.ParseReportLUNs(buf[:need])
		if err != nil {
			return nil, fmt.Errorf("iscsi: REPORT LUNS: %w", err)
		}
		return luns, nil
	}
	return nil, errors.New("iscsi: REPORT LUNS: list keeps growing")
}
