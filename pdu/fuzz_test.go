package pdu

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, m := range roundTripCases() {
		f.Add(m.Encode(nil))
	}
	f.Add(make([]byte, 47))
	f.Fuzz(func(t *testing.T, src []byte) {
		m, err := Decode(src)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not *FormatError: %v", err, err)
			}
			return
		}
		// Re-encoding must be stable: decode(encode(m)) == m and
		// encode(decode(encode(m))) == encode(m).
		wire := m.Encode(nil)
		m2, err := Decode(wire)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("unstable decode:\n%#v\n%#v", m, m2)
		}
		if !bytes.Equal(wire, m2.Encode(nil)) {
			t.Fatal("unstable encode")
		}
		// Header-only decode agrees with the full decode.
		h := (*BHS)(wire[:BHSLen])
		m3, err := DecodeHeader(h, wire[BHSLen:BHSLen+h.TotalAHSLength()])
		if err != nil {
			t.Fatalf("DecodeHeader: %v", err)
		}
		hdr := m3.AppendHeader(nil)
		(*BHS)(hdr[:BHSLen]).SetDataSegmentLength(h.DataSegmentLength()) // Data is nil after DecodeHeader
		if !bytes.Equal(hdr, m.AppendHeader(nil)) {
			t.Fatal("DecodeHeader differs from Decode")
		}
	})
}

func FuzzReader(f *testing.F) {
	for _, dig := range []bool{false, true} {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.SetDigests(dig, dig)
		for _, m := range roundTripCases() {
			w.QueueMessage(m)
		}
		if err := w.Flush(); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes(), dig, dig, uint16(8192))
	}
	f.Fuzz(func(t *testing.T, stream []byte, hd, dd bool, limit uint16) {
		// The source hands out at most chunk bytes per read, so PDUs are
		// often buffered in part.
		src := &countingReader{r: bytes.NewReader(stream), chunk: int(limit%97) + 1}
		r := NewReader(src, 512)
		r.SetDigests(hd, dd)
		r.SetMaxDataSegmentLength(int(limit))
		for i := 0; ; i++ {
			var p []byte
			var err error
			whole, reads := r.NextBuffered(), src.reads
			if i%2 == 0 {
				p, err = r.ReadPDU(nil)
			} else {
				var h *BHS
				var ahs []byte
				h, ahs, err = r.ReadHeader()
				if err == nil {
					if limit > 0 && h.DataSegmentLength() > int(limit) {
						t.Fatalf("data segment %d over limit %d accepted", h.DataSegmentLength(), limit)
					}
					p = append(append(append([]byte{}, h[:]...), ahs...), make([]byte, h.DataSegmentLength())...)
					err = r.ReadData(p[BHSLen+len(ahs):])
				}
			}
			// NextBuffered is exact: a PDU read whole from the buffer needed
			// no read from the stream, any other one did.
			if err == nil && whole != (src.reads == reads) {
				t.Fatalf("PDU %d: NextBuffered said %v, but the stream was read %d times for it", i, whole, src.reads-reads)
			}
			if err != nil {
				var de *DigestError
				var tl *DataSegmentTooLargeError
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.As(err, &de) && !errors.As(err, &tl) {
					t.Fatalf("unexpected error %T: %v", err, err)
				}
				return
			}
			if limit > 0 && len(p) > BHSLen+MaxAHSLength+int(limit) {
				t.Fatalf("PDU of %d bytes over limit", len(p))
			}
			_, _ = Decode(p) // must not panic
		}
	})
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte("InitiatorName=iqn.x\x00AuthMethod=CHAP,None\x00"))
	f.Add([]byte("A=\x00\x00\x00"))
	f.Add([]byte("=\x00"))
	f.Fuzz(func(t *testing.T, src []byte) {
		kvs, err := ParseText(src)
		if err != nil {
			var te *TextError
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not *TextError", err)
			}
			return
		}
		for _, kv := range kvs {
			if len(kv.Key) == 0 || len(kv.Key) > MaxKeyLength || len(kv.Value) > MaxValueLength {
				t.Fatalf("limits not enforced: %q", kv.Key)
			}
		}
		again, err := ParseText(AppendText(nil, kvs...))
		if err != nil || !reflect.DeepEqual(kvs, again) && len(kvs) > 0 {
			t.Fatalf("round trip: %v %q %q", err, kvs, again)
		}
	})
}

func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"0", "8192", "0x2000", "0bIAA=", "18446744073709551615", "0x", "0b", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNumber(s)
		if err != nil {
			var te *TextError
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not *TextError", err)
			}
			return
		}
		for _, enc := range []string{FormatNumber(n), FormatHex(be64bytes(n))} {
			got, err := ParseNumber(enc)
			if err != nil || got != n {
				t.Fatalf("%q -> %d -> %q -> %d, %v", s, n, enc, got, err)
			}
		}
	})
}

func FuzzParseBinary(f *testing.F) {
	for _, s := range []string{"0xdeadbeef", "0xabc", "0b3q2+7wAB", "0b", "0x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBinary(s)
		if err != nil {
			return
		}
		for _, enc := range []string{FormatHex(b), FormatBase64(b)} {
			got, err := ParseBinary(enc)
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("%q -> %x -> %q -> %x, %v", s, b, enc, got, err)
			}
		}
	})
}

func be64bytes(n uint64) []byte {
	b := make([]byte, 8)
	put64(b, n)
	return b
}

// countingReader reads at most chunk bytes at a time and counts its reads.
type countingReader struct {
	r     io.Reader
	chunk int
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p[:min(len(p), c.chunk)])
}
