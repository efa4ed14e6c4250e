package pdu

import (
	"io"
	"net"
)

// Writer gathers PDUs into one vectored write. Queue adds a PDU (header
// copied into an internal arena, data referenced, not copied); Flush writes
// everything queued with one net.Buffers.WriteTo, which is a single writev
// on a *net.TCPConn. Digests and padding are added as configured. After
// warm-up, Queue and Flush allocate nothing.
//
// A Writer is not safe for concurrent use; callers serialise with a mutex.
// Data passed to Queue must not be modified until Flush returns.
type Writer struct {
	w         io.Writer
	headerDig bool
	dataDig   bool
	arena     []byte   // headers, header digests, padding, data digests
	segs      []seg    // what to write, in order
	backing   [][]byte // reused backing array for bufs
	bufs      net.Buffers
}

// seg is a queued piece: either arena[off:off+n] (data == nil) or data.
type seg struct {
	off, n int
	data   []byte
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, arena: make([]byte, 0, 4096), segs: make([]seg, 0, 32), backing: make([][]byte, 0, 32)}
}

// SetDigests turns CRC32C header and data digests on or off for PDUs
// queued from now on.
func (w *Writer) SetDigests(header, data bool) {
	w.headerDig, w.dataDig = header, data
}

// Queue adds one PDU: header is its BHS and AHS (as AppendHeader returns,
// copied by Queue), data its data segment (not copied; may be nil). The
// header's DataSegmentLength must equal len(data).
func (w *Writer) Queue(header, data []byte) {
	off := len(w.arena)
	w.arena = append(w.arena, header...)
	w.finishHeader(off, data)
}

// QueueMessage queues m: its header is encoded straight into the arena and
// its data segment referenced without copying.
func (w *Writer) QueueMessage(m Message) {
	ds, ok := m.(DataSegmenter)
	if !ok {
		// Unknown implementation: encode all of it into the arena.
		off := len(w.arena)
		w.arena = m.Encode(w.arena)
		if w.headerDig || w.dataDig {
			// Re-split to apply digests correctly.
			h := (*BHS)(w.arena[off : off+BHSLen])
			hl := BHSLen + h.TotalAHSLength()
			data := w.arena[off+hl : off+hl+h.DataSegmentLength()]
			w.arena = w.arena[:off+hl]
			w.finishHeader(off, append([]byte(nil), data...))
			return
		}
		w.segs = append(w.segs, seg{off: off, n: len(w.arena) - off})
		return
	}
	off := len(w.arena)
	w.arena = m.AppendHeader(w.arena)
	w.finishHeader(off, ds.DataSegment())
}

// finishHeader records arena[off:] as a header, adds its digest, then the
// data, padding and data digest.
func (w *Writer) finishHeader(off int, data []byte) {
	if w.headerDig {
		w.arena = AppendDigest(w.arena, CRC32C(w.arena[off:]))
	}
	n := len(data)
	if n == 0 {
		w.segs = append(w.segs, seg{off: off, n: len(w.arena) - off})
		return
	}
	w.segs = append(w.segs, seg{off: off, n: len(w.arena) - off}, seg{data: data})
	tail := len(w.arena)
	w.arena = appendPad(w.arena, n)
	if w.dataDig {
		w.arena = AppendDigest(w.arena, UpdateCRC32C(CRC32C(data), w.arena[tail:]))
	}
	if len(w.arena) > tail {
		w.segs = append(w.segs, seg{off: tail, n: len(w.arena) - tail})
	}
}

// Buffered returns the number of bytes queued and not yet flushed.
func (w *Writer) Buffered() int {
	n := 0
	for _, s := range w.segs {
		if s.data != nil {
			n += len(s.data)
		} else {
			n += s.n
		}
	}
	return n
}

// BuffersWriter is a writer with its own vectored write: Flush hands it
// the whole batch at once (a net.Conn that is not one of package net's
// gets one write per piece from net.Buffers.WriteTo). It writes all of
// bufs or returns an error.
type BuffersWriter interface {
	WriteBuffers(bufs [][]byte) (int64, error)
}

// Flush writes everything queued in one gathered write and resets the
// queue, also on error (the connection is then unusable anyway).
func (w *Writer) Flush() error {
	if len(w.segs) == 0 {
		return nil
	}
	w.bufs = w.gather()
	var err error
	if bw, ok := w.w.(BuffersWriter); ok {
		_, err = bw.WriteBuffers(w.bufs)
	} else {
		_, err = w.bufs.WriteTo(w.w)
	}
	clear(w.backing) // drop references to caller data
	w.backing = w.backing[:0]
	w.bufs = nil
	clear(w.segs)
	w.segs = w.segs[:0]
	w.arena = w.arena[:0]
	return err
}

// gather builds the iovecs for everything queued in w.backing.
func (w *Writer) gather() [][]byte {
	b := w.backing[:0]
	prevArena := false
	for _, s := range w.segs {
		if s.data != nil {
			b = append(b, s.data)
			prevArena = false
			continue
		}
		if prevArena {
			// Adjacent arena pieces (a PDU without data followed by the
			// next header) share one iovec.
			k := len(b) - 1
			start := s.off - len(b[k])
			b[k] = w.arena[start : s.off+s.n : s.off+s.n]
			continue
		}
		b = append(b, w.arena[s.off:s.off+s.n:s.off+s.n])
		prevArena = true
	}
	w.backing = b
	return b
}

// WriteMessage queues m and flushes.
func (w *Writer) WriteMessage(m Message) error {
	w.QueueMessage(m)
	return w.Flush()
}
