package pdu

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// DefaultReaderBufferSize is the bufio buffer size NewReader uses when
// given a size of 0 or less.
const DefaultReaderBufferSize = 256 << 10

// ErrNoHeader is returned by ReadData and DiscardData when no header has
// been read, or its data segment was already consumed.
var ErrNoHeader = errors.New("pdu: no PDU header pending")

// ErrShortBuffer is wrapped by the error ReadData returns when dst is
// shorter than the pending data segment.
var ErrShortBuffer = errors.New("pdu: destination shorter than data segment")

// Reader frames PDUs from a byte stream (one per connection). It is not
// safe for concurrent use.
//
// Use ReadHeader, then exactly one of ReadData or DiscardData for the data
// segment (ReadHeader discards an unread data segment itself). ReadPDU is a
// convenience that does both.
type Reader struct {
	br         *bufio.Reader
	hdr        BHS
	ahs        []byte // reused AHS buffer, at most MaxAHSLength
	digest     [DigestLen]byte
	pad        [3]byte
	headerDig  bool
	dataDig    bool
	maxData    int // 0 = MaxDataSegmentLength
	pending    bool
	pendingLen int
}

// NewReader returns a Reader with a bufio buffer of bufSize bytes
// (DefaultReaderBufferSize if bufSize <= 0). Large buffers let one read
// system call carry many small PDUs.
func NewReader(r io.Reader, bufSize int) *Reader {
	if bufSize <= 0 {
		bufSize = DefaultReaderBufferSize
	}
	return &Reader{br: bufio.NewReaderSize(r, bufSize)}
}

// SetDigests turns CRC32C verification of header and data digests on or
// off. Call it between PDUs (after login negotiated digests).
func (r *Reader) SetDigests(header, data bool) {
	r.headerDig, r.dataDig = header, data
}

// SetMaxDataSegmentLength sets the largest data segment accepted (our
// MaxRecvDataSegmentLength). A larger DataSegmentLength makes ReadHeader
// return *DataSegmentTooLargeError before anything is allocated or read
// for it. n <= 0 means the protocol maximum (2^24-1).
func (r *Reader) SetMaxDataSegmentLength(n int) {
	if n <= 0 || n > MaxDataSegmentLength {
		n = 0
	}
	r.maxData = n
}

// Buffered returns the number of bytes buffered but not yet consumed.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// NextBuffered reports whether the next PDU is buffered whole (header,
// AHS, digests, data segment and padding), so reading it does not wait for
// the stream. It reads nothing from the stream. Call it between PDUs.
func (r *Reader) NextBuffered() bool {
	if r.pending {
		return false
	}
	if r.br.Buffered() < BHSLen {
		return false // (Peek would read from the stream)
	}
	b, err := r.br.Peek(BHSLen)
	if err != nil {
		return false
	}
	h := (*BHS)(b)
	n := BHSLen + h.TotalAHSLength()
	if r.headerDig {
		n += DigestLen
	}
	if d := h.DataSegmentLength(); d > 0 {
		n += (d + 3) &^ 3
		if r.dataDig {
			n += DigestLen
		}
	}
	return r.br.Buffered() >= n
}

// ReadHeader reads the next BHS and AHS and verifies the header digest.
// The returned *BHS and AHS slice point into the Reader and are valid
// until the next ReadHeader or ReadPDU. If the previous PDU's data segment
// was not read it is discarded first.
//
// A data segment longer than the limit yields the header together with a
// *DataSegmentTooLargeError; the stream is then out of step and the
// connection should be dropped.
func (r *Reader) ReadHeader() (*BHS, []byte, error) {
	if r.pending {
		if err := r.DiscardData(); err != nil {
			return nil, nil, err
		}
	}
	if _, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		return nil, nil, err
	}
	var ahs []byte
	if n := r.hdr.TotalAHSLength(); n > 0 {
		if cap(r.ahs) < n {
			r.ahs = make([]byte, MaxAHSLength) // bounded: at most 1020 bytes, once
		}
		ahs = r.ahs[:n]
		if _, err := io.ReadFull(r.br, ahs); err != nil {
			return nil, nil, unexpectedEOF(err)
		}
	}
	if r.headerDig {
		if _, err := io.ReadFull(r.br, r.digest[:]); err != nil {
			return nil, nil, unexpectedEOF(err)
		}
		want := UpdateCRC32C(CRC32C(r.hdr[:]), ahs)
		if got := ParseDigest(r.digest[:]); got != want {
			return &r.hdr, ahs, &DigestError{Header: true, Got: got, Want: want}
		}
	}
	n := r.hdr.DataSegmentLength()
	max := r.maxData
	if max == 0 {
		max = MaxDataSegmentLength
	}
	if n > max {
		return &r.hdr, ahs, &DataSegmentTooLargeError{Opcode: r.hdr.Opcode(), Length: n, Max: max}
	}
	r.pending = true
	r.pendingLen = n
	return &r.hdr, ahs, nil
}

// ReadData reads the pending data segment (exactly DataSegmentLength bytes)
// into dst[:DataSegmentLength], skips the padding and verifies the data
// digest. A zero-length data segment needs no call (but one is harmless).
func (r *Reader) ReadData(dst []byte) error {
	if !r.pending {
		return ErrNoHeader
	}
	n := r.pendingLen
	if len(dst) < n {
		return fmt.Errorf("pdu: ReadData: %d-byte buffer for %d-byte data segment: %w", len(dst), n, ErrShortBuffer)
	}
	r.pending = false
	if n == 0 {
		return nil
	}
	dst = dst[:n]
	if _, err := io.ReadFull(r.br, dst); err != nil {
		return unexpectedEOF(err)
	}
	p := r.pad[:pad4(n)-n]
	if len(p) > 0 {
		if _, err := io.ReadFull(r.br, p); err != nil {
			return unexpectedEOF(err)
		}
	}
	if r.dataDig {
		return r.checkDataDigest(UpdateCRC32C(CRC32C(dst), p))
	}
	return nil
}

// DiscardData skips the pending data segment, padding and digest. With
// data digests on, the digest is still verified (without copying).
func (r *Reader) DiscardData() error {
	if !r.pending {
		return ErrNoHeader
	}
	r.pending = false
	n := r.pendingLen
	if n == 0 {
		return nil
	}
	total := pad4(n)
	if !r.dataDig {
		_, err := r.br.Discard(total)
		return unexpectedEOF(err)
	}
	var crc uint32
	for total > 0 {
		chunk := min(total, r.br.Size())
		b, err := r.br.Peek(chunk)
		if err != nil && len(b) == 0 {
			return unexpectedEOF(err)
		}
		crc = UpdateCRC32C(crc, b)
		if _, err := r.br.Discard(len(b)); err != nil {
			return unexpectedEOF(err)
		}
		total -= len(b)
	}
	return r.checkDataDigest(crc)
}

func (r *Reader) checkDataDigest(want uint32) error {
	if _, err := io.ReadFull(r.br, r.digest[:]); err != nil {
		return unexpectedEOF(err)
	}
	if got := ParseDigest(r.digest[:]); got != want {
		return &DigestError{Got: got, Want: want}
	}
	return nil
}

// ReadPDU reads one whole PDU and appends BHS, AHS and data segment (no
// padding, no digests) to dst, ready for Decode. Limits and digests apply
// as for ReadHeader/ReadData. Intended for non-hot paths (login, text).
func (r *Reader) ReadPDU(dst []byte) ([]byte, error) {
	h, ahs, err := r.ReadHeader()
	if err != nil {
		return dst, err
	}
	dst = append(dst, h[:]...)
	dst = append(dst, ahs...)
	n := h.DataSegmentLength()
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	if err := r.ReadData(dst[start:]); err != nil {
		return dst[:start], err
	}
	return dst, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
