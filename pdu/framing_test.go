package pdu

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func framingMessages() []Message {
	big := bytes.Repeat([]byte{0x5a, 0xa5, 0x3c}, 3000) // 9000 bytes, padded
	return []Message{
		&NOPOut{ITT: 1, TTT: ReservedTag},
		&SCSICommand{Final: true, Read: true, ITT: 2, CDB: append(cdb16(), 1, 2, 3, 4), ExpectedDataTransferLength: 9000},
		&DataIn{Final: true, StatusPresent: true, ITT: 2, Data: big},
		&TextResponse{Final: true, Data: AppendText(nil, KV{"TargetName", "iqn.x:y"})},
		&DataOut{ITT: 3, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
	}
}

func TestWriterReaderDigests(t *testing.T) {
	for _, dig := range []struct{ h, d bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.SetDigests(dig.h, dig.d)
		msgs := framingMessages()
		want := 0
		for _, m := range msgs {
			w.QueueMessage(m)
			n := len(m.Encode(nil))
			if dig.h {
				n += 4
			}
			if dig.d && len(m.(DataSegmenter).DataSegment()) > 0 {
				n += 4
			}
			want += n
		}
		assert.Equal(t, want, w.Buffered())
		require.NoError(t, w.Flush())
		require.Equal(t, want, buf.Len(), "digests %+v", dig)
		assert.Zero(t, w.Buffered())

		r := NewReader(bytes.NewReader(buf.Bytes()), 4096) // smaller than the big PDU
		r.SetDigests(dig.h, dig.d)
		for i, m := range msgs {
			p, err := r.ReadPDU(nil)
			require.NoError(t, err, "PDU %d digests %+v", i, dig)
			got, err := Decode(p)
			require.NoError(t, err)
			assert.Equal(t, m.Encode(nil), got.Encode(nil), "PDU %d", i)
		}
		_, _, err := r.ReadHeader()
		assert.ErrorIs(t, err, io.EOF)

		// The same stream through ReadHeader/DecodeHeader/ReadData and DiscardData.
		r = NewReader(bytes.NewReader(buf.Bytes()), 0)
		r.SetDigests(dig.h, dig.d)
		for i, m := range msgs {
			h, ahs, err := r.ReadHeader()
			require.NoError(t, err)
			got, err := DecodeHeader(h, ahs)
			require.NoError(t, err)
			assert.Equal(t, m.Opcode(), got.Opcode())
			if i%2 == 0 {
				require.NoError(t, r.DiscardData())
				continue
			}
			data := make([]byte, h.DataSegmentLength()+10)
			require.NoError(t, r.ReadData(data))
			assert.True(t, bytes.Equal(m.(DataSegmenter).DataSegment(), data[:h.DataSegmentLength()]), "PDU %d data", i)
		}
	}
}

func TestWriterKnownBytes(t *testing.T) {
	// Header digest is CRC32C over BHS+AHS, data digest over data+padding,
	// both least significant byte first.
	m := &NOPOut{ITT: 9, TTT: ReservedTag, Data: []byte{1, 2, 3, 4, 5}}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.SetDigests(true, true)
	require.NoError(t, w.WriteMessage(m))
	hdr := m.AppendHeader(nil)
	want := AppendDigest(append([]byte{}, hdr...), CRC32C(hdr))
	want = append(want, 1, 2, 3, 4, 5, 0, 0, 0)
	want = AppendDigest(want, CRC32C([]byte{1, 2, 3, 4, 5, 0, 0, 0}))
	assert.Equal(t, want, buf.Bytes())

	// Queue with a raw header gives the same bytes, and the header buffer
	// may be reused right after Queue.
	buf.Reset()
	scratch := m.AppendHeader(nil)
	w.Queue(scratch, m.Data)
	for i := range scratch {
		scratch[i] = 0xff
	}
	require.NoError(t, w.Flush())
	assert.Equal(t, want, buf.Bytes())
}

// foreign implements Message without DataSegmenter.
type foreign struct{ NOPOut }

func (f *foreign) DataSegment() {} // shadows: not a DataSegmenter any more

func TestWriterForeignMessage(t *testing.T) {
	for _, dig := range []bool{false, true} {
		var a, b bytes.Buffer
		inner := NOPOut{ITT: 4, Data: []byte("abcdef")}
		wa, wb := NewWriter(&a), NewWriter(&b)
		wa.SetDigests(dig, dig)
		wb.SetDigests(dig, dig)
		require.NoError(t, wa.WriteMessage(&foreign{inner}))
		require.NoError(t, wb.WriteMessage(&inner))
		assert.Equal(t, b.Bytes(), a.Bytes())
	}
}

func TestWriterCoalescesIovecs(t *testing.T) {
	w := NewWriter(io.Discard)
	// Three data-less PDUs: one iovec.
	for i := 0; i < 3; i++ {
		w.QueueMessage(&NOPOut{ITT: uint32(i)})
	}
	assert.Len(t, w.gather(), 1)
	require.NoError(t, w.Flush())
	// Header, data, padding | next header merged with padding: 4 iovecs.
	w.QueueMessage(&DataOut{Data: []byte{1, 2, 3}})
	w.QueueMessage(&NOPOut{})
	w.QueueMessage(&DataOut{Data: make([]byte, 8)}) // no padding
	bufs := w.gather()
	require.Len(t, bufs, 4)
	assert.Len(t, bufs[0], BHSLen)
	assert.Len(t, bufs[1], 3)
	assert.Len(t, bufs[2], 1+2*BHSLen) // padding + NOP header + DataOut header
	assert.Len(t, bufs[3], 8)
	require.NoError(t, w.Flush())
}

func TestWriterOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		done <- b
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	w := NewWriter(c)
	w.SetDigests(true, true)
	var want []byte
	for _, m := range framingMessages() {
		w.QueueMessage(m)
	}
	require.NoError(t, w.Flush())
	require.NoError(t, c.Close())
	select {
	case want = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("peer did not receive")
	}
	r := NewReader(bytes.NewReader(want), 0)
	r.SetDigests(true, true)
	for _, m := range framingMessages() {
		p, err := r.ReadPDU(nil)
		require.NoError(t, err)
		assert.Equal(t, m.Encode(nil), appendPad(p, len(p)))
	}
}

func TestReaderDigestErrors(t *testing.T) {
	m := &DataIn{ITT: 5, Data: []byte("0123456789")}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.SetDigests(true, true)
	require.NoError(t, w.WriteMessage(m))
	good := buf.Bytes()

	// Header digest.
	bad := append([]byte{}, good...)
	bad[BHSLen] ^= 1
	r := NewReader(bytes.NewReader(bad), 0)
	r.SetDigests(true, true)
	_, _, err := r.ReadHeader()
	var de *DigestError
	require.ErrorAs(t, err, &de)
	assert.True(t, de.Header)
	assert.Equal(t, CRC32C(good[:BHSLen]), de.Want)

	// Data digest, via ReadData and via DiscardData; and corrupt data.
	for _, off := range []int{len(good) - 1, BHSLen + 4 + 3} {
		for _, discard := range []bool{false, true} {
			bad = append([]byte{}, good...)
			bad[off] ^= 0x80
			r = NewReader(bytes.NewReader(bad), 0)
			r.SetDigests(true, true)
			_, _, err = r.ReadHeader()
			require.NoError(t, err)
			if discard {
				err = r.DiscardData()
			} else {
				err = r.ReadData(make([]byte, 10))
			}
			require.ErrorAs(t, err, &de, "offset %d discard %v", off, discard)
			assert.False(t, de.Header)
		}
	}
}

func TestReaderLimitsAndStates(t *testing.T) {
	hdr := (&DataIn{}).AppendHeader(nil)
	(*BHS)(hdr).SetDataSegmentLength(MaxDataSegmentLength)

	// Too large: typed error before reading or allocating any data. The
	// stream holds only the header, so reading data would fail with EOF.
	r := NewReader(bytes.NewReader(hdr), 0)
	r.SetMaxDataSegmentLength(8192)
	h, _, err := r.ReadHeader()
	var tl *DataSegmentTooLargeError
	require.ErrorAs(t, err, &tl)
	assert.Equal(t, MaxDataSegmentLength, tl.Length)
	assert.Equal(t, 8192, tl.Max)
	assert.Equal(t, OpDataIn, tl.Opcode)
	require.NotNil(t, h)
	assert.ErrorIs(t, r.ReadData(nil), ErrNoHeader)

	// Allocation check: endlessly repeated oversized headers.
	rr := &repeatReader{b: hdr}
	r = NewReader(rr, 4096)
	r.SetMaxDataSegmentLength(8192)
	allocs := testing.AllocsPerRun(100, func() {
		_, _, err := r.ReadHeader()
		if !errors.As(err, &tl) {
			t.Fatal(err)
		}
	})
	assert.LessOrEqual(t, allocs, 1.0, "only the error value may be allocated")

	// ReadData states.
	m := &DataIn{Data: []byte{1, 2, 3, 4, 5}}
	two := append(m.Encode(nil), m.Encode(nil)...)
	r = NewReader(bytes.NewReader(two), 0)
	assert.ErrorIs(t, r.ReadData(make([]byte, 5)), ErrNoHeader)
	_, _, err = r.ReadHeader()
	require.NoError(t, err)
	assert.ErrorIs(t, r.ReadData(make([]byte, 4)), ErrShortBuffer)
	// ReadHeader skips the unread data segment.
	h, _, err = r.ReadHeader()
	require.NoError(t, err)
	assert.Equal(t, 5, h.DataSegmentLength())
	got := make([]byte, 5)
	require.NoError(t, r.ReadData(got))
	assert.Equal(t, m.Data, got)
	assert.ErrorIs(t, r.DiscardData(), ErrNoHeader)
	_, _, err = r.ReadHeader()
	assert.ErrorIs(t, err, io.EOF)

	// Truncation: mid-header and mid-data are unexpected EOFs.
	for _, n := range []int{10, BHSLen + 2} {
		r = NewReader(bytes.NewReader(two[:n]), 0)
		_, _, err = r.ReadHeader()
		if err == nil {
			err = r.ReadData(make([]byte, 5))
		}
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut at %d", n)
	}
	// ReadPDU returns the prefix on error.
	r = NewReader(bytes.NewReader(two[:BHSLen+2]), 0)
	p, err := r.ReadPDU([]byte{9})
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Equal(t, 1+BHSLen, len(p))
	assert.Equal(t, 0, r.Buffered())

	// Limit reset.
	r.SetMaxDataSegmentLength(0)
	assert.Zero(t, r.maxData)
}

// repeatReader returns b over and over.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

// chunkSource serves first in one Read, then fails every later Read (and
// counts it): NextBuffered must never read.
type chunkSource struct {
	first []byte
	reads int
}

func (s *chunkSource) Read(p []byte) (int, error) {
	s.reads++
	if s.reads == 1 {
		return copy(p, s.first), nil
	}
	return 0, errors.New("read past the first chunk")
}

func TestReaderNextBuffered(t *testing.T) {
	nextPDUs := []Message{
		&NOPOut{ITT: 1, TTT: ReservedTag},
		&NOPOut{ITT: 1, TTT: ReservedTag, Data: []byte{7}},                // 3 bytes of padding
		&NOPOut{ITT: 1, TTT: ReservedTag, AHS: make([]byte, 8)},           // an AHS
		&DataIn{Final: true, ITT: 2, Data: bytes.Repeat([]byte{9}, 4096)}, // a 4 KiB read's data
	}
	for _, dig := range []struct{ h, d bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		for i, next := range nextPDUs {
			var buf bytes.Buffer
			w := NewWriter(&buf)
			w.SetDigests(dig.h, dig.d)
			require.NoError(t, w.WriteMessage(&NOPOut{ITT: 9, TTT: ReservedTag, Data: []byte("first")}))
			firstLen := buf.Len()
			require.NoError(t, w.WriteMessage(next))
			nextLen := buf.Len() - firstLen
			for cut := 0; cut <= nextLen; cut++ {
				src := &chunkSource{first: buf.Bytes()[:firstLen+cut]}
				r := NewReader(src, 64<<10)
				r.SetDigests(dig.h, dig.d)
				_, err := r.ReadPDU(nil)
				require.NoError(t, err)
				require.Equal(t, cut == nextLen, r.NextBuffered(), "PDU %d digests %+v, %d of %d bytes buffered", i, dig, cut, nextLen)
				require.Equal(t, 1, src.reads, "NextBuffered read from the stream")
				if cut == nextLen {
					p, err := r.ReadPDU(nil)
					require.NoError(t, err)
					require.Equal(t, buf.Bytes()[firstLen:firstLen+BHSLen], p[:BHSLen])
					require.False(t, r.NextBuffered())
				}
			}
		}
	}
	// Between a header and its data segment there is no next PDU yet.
	var buf bytes.Buffer
	require.NoError(t, NewWriter(&buf).WriteMessage(&NOPOut{ITT: 1, TTT: ReservedTag, Data: []byte("abcd")}))
	r := NewReader(&chunkSource{first: append(bytes.Clone(buf.Bytes()), buf.Bytes()...)}, 4096)
	_, _, err := r.ReadHeader()
	require.NoError(t, err)
	require.False(t, r.NextBuffered())
}
